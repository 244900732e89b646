"""List pages build their JSON from rows (services.conversations.conversation_items, schemas.message_item_json)
instead of dumping ORM objects through marshmallow. Every item must be exactly what ConversationSchema /
MessageSchema dump for the same conversation or message, key order and nested objects included, for every shape
the JSON takes; and the page and single-conversation reads keep a constant, small number of statements."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

from inbox.api.conversations import ConversationPageSchema, MessagePageSchema
from inbox.api.schemas import ConversationSchema, MessageSchema, RenderedConversation, RenderedMessage
from inbox.db import db
from inbox.models import (Agent, Calendar, Contact, Conversation, ConversationLabel, Message, SlaClock, SlaPolicy)
from inbox.models.assignment import ConversationLink
from inbox.models.conversation import Post
from inbox.services import conversations as service
from inbox.services import sla
from tests.helpers import bearer, selects

NOW = datetime(2026, 3, 11, 15, 20, 7, 654321, tzinfo=timezone.utc)  # a Wednesday, office hours in Paris
OFFICE_HOURS = [{"weekday": day, "start": "09:00", "end": "18:00"} for day in range(5)]


@pytest.fixture(autouse=True)
def _fresh_policies() -> None:
    """Policies are cached per process for a few seconds: never reuse those of a previous test's database."""
    sla.invalidate_policy_cache()


@pytest.fixture(autouse=True, scope="module")
def _no_policies_left_cached() -> Iterator[None]:
    yield  # after the last test's tables were emptied: the next module must not see this one's policies
    sla.invalidate_policy_cache()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """One `now` for both paths: reply windows and SLA time left depend on it."""
    for module in ("inbox.services.conversations", "inbox.services.sla", "inbox.services.windows"):
        monkeypatch.setattr(f"{module}.utcnow", lambda: NOW)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # key order of every nested object compared too


def _same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    differing = {key: (got.get(key), expected.get(key))
                 for key in {*got, *expected} if got.get(key) != expected.get(key)}
    assert _dumps(got) == _dumps(expected), (got.get("id"), differing or "key order")


def _shapes(world: Any) -> list[int]:
    """Conversations covering every shape of the JSON: DMs on the page whose reply window is standard, human_agent
    and closed, a DM never written by the customer, an API-channel DM, comments under posts (with and without
    permalink), assigned or not, without team or language, snoozed and resolved ones; labels whose database order
    is not their insertion order; links; SLA clocks running under a business-hours policy, under a calendar-time
    policy and without policy, breached, paused, met, and a clock that is not current."""
    session = db.session
    calendar = Calendar(name="Paris office", timezone="Europe/Paris", intervals=OFFICE_HOURS, holidays=["2026-03-13"])
    session.add(calendar)
    session.flush()
    office = SlaPolicy(name="Office", position=0, calendar_id=calendar.id, first_response_seconds=3600,
                       next_response_seconds=3600, resolution_seconds=86400, pause_on=["pending"], conditions={})
    anytime = SlaPolicy(name="Anytime", position=1, first_response_seconds=600, pause_on=[], conditions={})
    session.add_all([office, anytime])
    session.flush()
    agent_id = world.agent_ids[world.agent]
    plans = [
        # (channel, inbound age, post, assignee, team, status, labels, language, handle)
        ("page", timedelta(hours=2), False, agent_id, world.team_id, "open", ["vip", "Livraison", "a-b"], "fr", "zoe"),
        ("page", timedelta(days=2), False, None, world.team_id, "pending", [], None, None),
        ("page", timedelta(days=9), False, agent_id, None, "snoozed", ["zz"], "en", "x"),
        ("page", None, False, None, world.team_id, "open", [], None, "nobody"),
        ("api", timedelta(minutes=5), False, None, world.team_id, "resolved", ["éclair", "Eclair"], "de", None),
        ("page", timedelta(hours=30), True, agent_id, world.team_id, "open", ["vip"], None, "c1"),
        ("page", timedelta(days=20), True, None, None, "open", [], "fr", None),
    ]
    ids: list[int] = []
    for i, (channel, age, with_post, assignee, team, status, labels, language, handle) in enumerate(plans):
        contact = Contact(name=None if i == 3 else f"Client {i}", handle=handle,
                          avatar_url=f"https://cdn.test/{i}.png" if i % 2 else None)
        session.add(contact)
        session.flush()
        post = None
        if with_post:
            post = Post(channel_id=world.page_channel_id, external_id=f"{i}_post", text=f"Post {i}" if i % 2 else None,
                        permalink=f"https://fb.test/{i}" if i == 5 else None)
            session.add(post)
            session.flush()
        inbound = NOW - age if age is not None else None
        last = inbound or NOW - timedelta(hours=1)
        conversation = Conversation(
            kind="comment" if post else "dm", status=status, brand_id=world.brand_id,
            channel_id=world.api_channel_id if channel == "api" else world.page_channel_id, contact_id=contact.id,
            team_id=team, assignee_id=assignee, assigned_at=NOW if assignee else None, thread_key=f"shape-{i}",
            post_id=post.id if post else None, first_inbound_at=inbound, last_inbound_at=inbound,
            last_outbound_at=NOW - timedelta(minutes=i) if i % 2 else None, last_message_at=last,
            waiting_since=inbound if status == "open" else None, last_message_preview=None if i == 6 else f"hello {i}",
            last_message_direction="in", priority=i % 4, language=language, extra={},
            # in the real future: the embedded reconciler wakes snoozed conversations by the wall clock
            snoozed_until=datetime.now(timezone.utc) + timedelta(days=30) if status == "snoozed" else None,
            resolved_at=NOW - timedelta(minutes=1) if status == "resolved" else None,
            created_at=last - timedelta(days=1), updated_at=last)
        session.add(conversation)
        session.flush()
        conversation.label_rows = [ConversationLabel(label=label) for label in labels]
        ids.append(conversation.id)
    running = dict(cycle=1, turn=1, is_current=True, started_at=NOW - timedelta(hours=1), evaluated_at=NOW)
    session.add_all([
        # business hours: due tomorrow morning, so the time left skips the night
        SlaClock(conversation_id=ids[0], policy_id=office.id, metric="first_response", state="running",
                 target_seconds=3600.0, due_at=NOW + timedelta(hours=18), warning_at=NOW + timedelta(hours=17),
                 **running),
        SlaClock(conversation_id=ids[0], policy_id=office.id, metric="resolution", state="paused",
                 target_seconds=86400.0, elapsed_seconds=1234.5, **running),
        SlaClock(conversation_id=ids[0], policy_id=office.id, metric="next_response", state="met",
                 target_seconds=3600.0, cycle=1, turn=0, is_current=False, started_at=NOW - timedelta(days=1),
                 stopped_at=NOW - timedelta(hours=20), evaluated_at=NOW),
        SlaClock(conversation_id=ids[1], policy_id=anytime.id, metric="first_response", state="breached",
                 target_seconds=600.0, due_at=NOW - timedelta(minutes=3), warning_at=NOW - timedelta(minutes=5),
                 **running),
        SlaClock(conversation_id=ids[2], policy_id=None, metric="first_response", state="warning",
                 target_seconds=600.0, due_at=NOW + timedelta(seconds=30), **running),
        SlaClock(conversation_id=ids[5], policy_id=office.id, metric="first_response", state="met",
                 target_seconds=3600.0, due_at=NOW + timedelta(hours=1), stopped_at=NOW - timedelta(minutes=9),
                 **running),
        SlaClock(conversation_id=ids[5], policy_id=office.id, metric="next_response", state="running", cycle=1,
                 turn=2, is_current=True, target_seconds=3600.0, started_at=NOW - timedelta(days=3),
                 due_at=NOW - timedelta(days=2), evaluated_at=NOW),  # overdue by business and calendar time
    ])
    for a, b in ((ids[0], ids[1]), (ids[0], ids[5]), (ids[3], ids[2])):
        session.add_all([ConversationLink(conversation_id=a, linked_id=b, created_at=NOW),
                         ConversationLink(conversation_id=b, linked_id=a, created_at=NOW)])
    session.commit()
    return ids


def _expected(ids: list[int]) -> dict[int, dict[str, Any]]:
    """What marshmallow dumps for each conversation (the reference), from freshly loaded ORM objects."""
    db.session.expire_all()
    schema = ConversationSchema()
    return {cid: schema.dump(db.session.get(Conversation, cid)) for cid in ids}


def test_page_items_are_the_schema_dump(app, world, frozen):
    with app.app_context():
        ids = _shapes(world)
        expected = _expected(ids)
        assert expected[ids[0]]["sla"][0]["business_seconds_left"] not in (None, expected[ids[0]]["sla"][0][
            "calendar_seconds_left"])  # the business-hours calendar is in play
        admin = db.session.get(Agent, world.agent_ids[world.admin])
        seen: dict[int, Any] = {}
        for params in ({"sort": "newest"}, {"sort": "waiting"}, {"sort": "sla_due"}):
            cursor = None
            while True:
                page = service.list_conversations(db.session, admin, {**params, "limit": 3, "counts": False,
                                                                      **({"cursor": cursor} if cursor else {})})
                for item in page["items"]:
                    assert type(item) is RenderedConversation
                    seen[item["id"]] = item
                    _same(item, expected[item["id"]])
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert set(seen) == set(ids)
        for cid in ids:  # GET /conversations/<id> is built the same way
            _same(service.read_conversation(db.session, admin, cid), expected[cid])


def test_page_schema_passes_rendered_items_on(app, world, frozen):
    """The page schemas (the API's and the benchmark's dump) keep rendered items as they are and the page's key
    order; model objects still go through marshmallow."""
    with app.app_context():
        ids = _shapes(world)
        expected = _expected(ids)
        admin = db.session.get(Agent, world.agent_ids[world.admin])
        page = service.list_conversations(db.session, admin, {"sort": "newest", "limit": 50})
        dumped = ConversationPageSchema().dump(page)
        assert list(dumped) == ["items", "next_cursor", "counts"]
        assert dumped["items"] is page["items"] and dumped["counts"] == {"all": 7, "mine": 0, "unassigned": 4}
        orm = [db.session.get(Conversation, cid) for cid in ids[:2]]
        assert _dumps(ConversationPageSchema().dump({"items": orm, "next_cursor": None})["items"]) == \
            _dumps([expected[cid] for cid in ids[:2]])


def test_message_page_items_are_the_schema_dump(app, world):
    with app.app_context():
        conversation_id = _shapes(world)[0]
        agent_id = world.agent_ids[world.agent]
        rows = [
            Message(direction="in", kind="message", author_type="contact", author_contact_id=None, author_name=None,
                    text="Bonjour 👋", attachments=[{"type": "image", "url": "https://x/1.png", "size": 3},
                                                    {"type": "file"}], extra={"quick_reply_payload": "A", "x": 1}),
            Message(direction="out", kind="message", reply_type="reply", author_type="agent",
                    author_agent_id=agent_id, author_name="Agent", text="Hello", external_id="m_2",
                    delivery_status="failed", delivery_error="rate limited", attachments=[],
                    edited_at=NOW, edit_history=[{"text": "Helo"}], extra={"tag": "HUMAN_AGENT"}),
            Message(direction="in", kind="comment", author_type="contact", author_name="Client", text=None,
                    deleted_at=NOW, hidden=True, liked=True, attachments=None, extra=None),
            Message(direction="out", kind="note", author_type="agent", author_agent_id=agent_id, text="note",
                    attachments=[], extra={"activity": {"type": "status"}, "postback_payload": "P"}),
            Message(direction="out", kind="activity", author_type="system", text="claimed", attachments=[],
                    extra={"activity": {"type": "claimed", "agent_id": agent_id}}),
        ]
        for k, message in enumerate(rows):
            message.conversation_id = conversation_id
            message.channel_id = world.page_channel_id
            message.platform_time = NOW - timedelta(minutes=k)
            message.received_at = NOW - timedelta(minutes=k, seconds=-1)
            db.session.add(message)
        db.session.flush()
        rows[1].reply_to_id = rows[0].id
        db.session.commit()
        db.session.expire_all()
        agent = db.session.get(Agent, agent_id)
        page = service.list_messages(db.session, agent, conversation_id, 50, None)
        schema = MessageSchema()
        expected = [schema.dump(db.session.get(Message, m.id)) for m in rows]
        assert all(type(item) is RenderedMessage for item in page["items"])
        assert _dumps(page["items"]) == _dumps(expected)
        assert MessagePageSchema().dump(page) == {"items": page["items"], "next_cursor": None}


def test_reads_cost_a_few_statements(app, client, world, token_for, statements):
    """A queue page: the token, its agent, the agent's brands, the page (with labels and links) and the SLA
    clocks (the waiting sort adds one when a page spans both its runs). One conversation: the same after the
    access check. Messages: the access check and the page."""
    with app.app_context():
        ids = _shapes(world)
    token = token_for(world.agent)
    for url, most in (("/api/v1/conversations?counts=false&sort=newest", 5), (f"/api/v1/conversations/{ids[0]}", 6),
                      (f"/api/v1/conversations/{ids[0]}/messages", 5)):
        fewest = None
        for _ in range(3):  # a per-process cache expiring in between (SLA policies) may add one to one request
            statements.clear()
            assert client.get(url, headers=bearer(token)).status_code == 200
            fewest = min(selects(statements), fewest or 99)
        assert fewest <= most, (url, fewest, [" ".join(s.split())[:120] for s in statements])
