"""Conversations without a last message (last_message_at NULL) in the queue's pages, on SQLite and PostgreSQL
alike: "newest" (and the "others" run of "waiting") puts them first, by id descending, then the others by
last_message_at and id descending; keyset pages of any size bring every conversation exactly once in that order,
whether a cursor stops on a NULL row or not. None exist today (a conversation gets its first message in the
transaction that opens it), so the order must not depend on which database happens to sort NULLs where.

Run on PostgreSQL with RELAIS_TEST_DB=postgresql (see tests/conftest.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from inbox.db import db
from inbox.models import Agent, Contact, Conversation
from inbox.services import conversations as service
from tests.helpers import bearer

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=timezone.utc)

# (name, minutes after T0 of the last message or None, minutes after T0 the customer started waiting or None),
# in creation (id) order: NULL rows before, between and after the others, two pairs of equal times (ties broken
# by id), and waiting customers among both kinds.
ROWS = [
    ("null-a", None, None),
    ("t10-a", 10, None),
    ("t30", 30, None),
    ("null-b", None, None),
    ("t10-b", 10, None),
    ("wait-5", 40, 5),
    ("null-c", None, None),
    ("t20", 20, None),
    ("wait-2", None, 2),
    ("t30-b", 30, None),
    ("null-d", None, None),
    ("wait-5b", 15, 5),
]


def _world(world: Any) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i, (name, minutes, waiting) in enumerate(ROWS):
        contact = Contact(name=f"Nulla {name}", handle=None)
        db.session.add(contact)
        db.session.flush()
        at = None if minutes is None else T0 + timedelta(minutes=minutes)
        conversation = Conversation(
            kind="dm", status="open", brand_id=world.brand_id, channel_id=world.page_channel_id,
            contact_id=contact.id, thread_key=f"nulls-{i}", first_inbound_at=at, last_inbound_at=at,
            last_message_at=at, waiting_since=None if waiting is None else T0 + timedelta(minutes=waiting),
            last_message_preview=None if at is None else "…", last_message_direction=None if at is None else "in",
            priority=1, extra={}, created_at=T0, updated_at=T0)
        db.session.add(conversation)
        db.session.flush()
        ids[name] = conversation.id
    db.session.commit()
    return ids


def _newest_order(ids: dict[str, int], names: list[str]) -> list[str]:
    """`names` in the order the console sorts "newest": last_message_at descending, NULLs first, then id
    descending (frontend/src/stores/conversationView.ts, byNewest)."""
    minutes = {name: m for name, m, _ in ROWS}
    nulls = sorted((n for n in names if minutes[n] is None), key=lambda n: -ids[n])
    others = sorted((n for n in names if minutes[n] is not None), key=lambda n: (-minutes[n], -ids[n]))
    return nulls + others


def _waiting_order(ids: dict[str, int]) -> list[str]:
    waiting = {name: w for name, _, w in ROWS}
    first = sorted((n for n in ids if waiting[n] is not None), key=lambda n: (waiting[n], ids[n]))
    return first + _newest_order(ids, [n for n in ids if waiting[n] is None])


def _all_pages(client: Any, token: str, **params: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    for _ in range(100):
        response = client.get("/api/v1/conversations",
                              query_string={**params, **({"cursor": cursor} if cursor else {})}, headers=bearer(token))
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("the pages never ended")


@pytest.fixture(autouse=True)
def _no_remembered_probes():
    service._failed_probes.clear()
    yield
    service._failed_probes.clear()


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_newest_puts_conversations_without_a_message_first_and_pages_through_each_once(app, client, world,
                                                                                       token_for, limit):
    with app.app_context():
        ids = _world(world)
    names = {cid: name for name, cid in ids.items()}
    items = _all_pages(client, token_for(world.agent), sort="newest", status="open", limit=limit)
    assert [names[item["id"]] for item in items] == _newest_order(ids, list(ids))


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_waiting_then_the_others_newest_first_with_nulls_first(app, client, world, token_for, limit):
    with app.app_context():
        ids = _world(world)
    names = {cid: name for name, cid in ids.items()}
    items = _all_pages(client, token_for(world.agent), sort="waiting", status="open", limit=limit)
    assert [names[item["id"]] for item in items] == _waiting_order(ids)


def test_a_cursor_on_a_conversation_without_a_message(app, world):
    """A cursor stopped on a NULL row goes on with the NULL rows of lower id, then every dated one; a cursor on a
    dated row never brings a NULL row back."""
    with app.app_context():
        ids = _world(world)
        names = {cid: name for name, cid in ids.items()}
        order = _newest_order(ids, list(ids))
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        for at, name in ((None, "null-b"), (T0 + timedelta(minutes=30), "t30-b")):
            cursor = service.encode_cursor([at, ids[name]])
            page = service.list_conversations(db.session, agent, {"sort": "newest", "status": "open", "limit": 50,
                                                                  "cursor": cursor})
            assert [names[item["id"]] for item in page["items"]] == order[order.index(name) + 1:], name
            db.session.rollback()


@pytest.mark.parametrize("mode", ["probe", "slices"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_search_pages_among_conversations_without_a_message(app, client, world, token_for, monkeypatch, mode,
                                                            limit):
    """A text search pages on (last_message_at, id) and leaves the NULL rows out (services/conversations.py,
    _search_page): the dated matches come once each, newest first, on both databases, whichever way the pages
    are built."""
    with app.app_context():
        ids = _world(world)
    if mode == "slices":
        monkeypatch.setattr(service, "SEARCH_CANDIDATES", 0)
        monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
    names = {cid: name for name, cid in ids.items()}
    items = _all_pages(client, token_for(world.agent), q="nulla", status="open", limit=limit)
    minutes = {name: m for name, m, _ in ROWS}
    assert [names[item["id"]] for item in items] == _newest_order(ids, [n for n in ids if minutes[n] is not None])
