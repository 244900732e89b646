"""The queue's text search `q`: at least 3 characters, newest first, the same conversations as a plain
ILIKE '%q%' on the contact's name and handle and on every message text, found once each over the pages, whether
a page comes from the trigram probe (a rare text) or from examining a bounded slice of the view (a common text,
or a probe that took too long: then a page may be short and still have a next_cursor), and when the pages of one
search switch from one way to the other."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from inbox.db import db
from inbox.models import Agent, Contact, Conversation, Message
from inbox.services import conversations as service
from tests.helpers import bearer, prepared_at_each_request

T0 = datetime(2026, 2, 2, 8, 0, tzinfo=timezone.utc)


def _conversation(world: Any, i: int, name: str | None, handle: str | None, texts: list[str], *,
                  brand: str = "mine", status: str = "open", note: bool = False) -> int:
    contact = Contact(name=name, handle=handle)
    db.session.add(contact)
    db.session.flush()
    channel_id = world.page_channel_id if brand == "mine" else world.other_page_channel_id
    at = T0 + timedelta(minutes=i * 7 % 60, hours=i)  # newest-first order differs from id order
    conversation = Conversation(
        kind="dm", status=status, brand_id=world.brand_id if brand == "mine" else world.other_brand_id,
        channel_id=channel_id, contact_id=contact.id, thread_key=f"search-{i}", first_inbound_at=at,
        last_inbound_at=at, last_message_at=at, waiting_since=at if i % 2 else None, last_message_preview="…",
        last_message_direction="in", priority=1, extra={}, created_at=at, updated_at=at)
    db.session.add(conversation)
    db.session.flush()
    for k, body in enumerate(texts):
        db.session.add(Message(conversation_id=conversation.id, channel_id=channel_id, direction="in",
                               kind="note" if note else "message", author_type="agent" if note else "contact",
                               text=body, platform_time=at - timedelta(minutes=k), received_at=at,
                               attachments=[], extra={}))
    return conversation.id


def _world(world: Any) -> dict[str, int]:
    """Named conversations: which ones `q` should find is stated in the tests."""
    ids = {
        "name": _conversation(world, 1, "Zoé Lambert", None, ["bonjour"]),
        "handle": _conversation(world, 2, "Paul", "zoe.lambert", ["hello"]),
        "text": _conversation(world, 3, "Ana", None, ["ok", "Ma commande LAMBERT-42 est où ?"]),
        "note": _conversation(world, 4, "Ivo", None, ["rien"], note=True),
        "percent": _conversation(world, 5, "Lou", None, ["remise de 100% svp"]),
        "thousand": _conversation(world, 6, "Max", None, ["remise de 1000 svp"]),
        "other_brand": _conversation(world, 7, "Zoé Lambert", None, ["bonjour"], brand="other"),
        "resolved": _conversation(world, 8, "Zoe Lambert", None, ["bonjour"], status="resolved"),
        "none": _conversation(world, 9, None, None, ["nothing to see"]),
    }
    notes = db.session.execute(select(Message).where(Message.conversation_id == ids["note"])).scalar_one()
    notes.text = "rappeler Mme lambert demain"
    for i in range(10, 22):  # filler, so a slice of the view holds few matches
        ids[f"filler{i}"] = _conversation(world, i, f"Filler {i}", f"f{i}", [f"message {i}"])
    db.session.commit()
    return ids


@pytest.fixture(autouse=True)
def _no_remembered_probes():
    """The texts whose probe failed are remembered per process: each test starts and ends without any."""
    service._failed_probes.clear()
    yield
    service._failed_probes.clear()


def _probes(statements: list[str]) -> int:
    return sum(1 for s in statements if "probe_contacts" in s)


def _all_pages(client: Any, token: str, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    items, pages, cursor = [], [], None
    for _ in range(100):
        response = client.get("/api/v1/conversations",
                              query_string={**params, **({"cursor": cursor} if cursor else {})}, headers=bearer(token))
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        pages.append(page)
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items, pages
    raise AssertionError("the pages never ended")


def _newest_first(items: list[dict[str, Any]]) -> bool:
    keys = [(item["last_message_at"], item["id"]) for item in items]
    return keys == sorted(keys, reverse=True)


@pytest.mark.parametrize(("q", "message"), [("ab", "between 3 and 200 characters"),
                                             ("é", "between 3 and 200 characters"),
                                             ("  ab  ", "at least 3 characters besides spaces"),
                                             ("x" * 201, "between 3 and 200 characters")])
def test_a_search_needs_three_characters(client, world, token_for, q, message):
    token = token_for(world.agent)
    response = client.get("/api/v1/conversations", query_string={"q": q}, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"q": [message]}
    assert client.get("/api/v1/conversations", query_string={"q": "abc"}, headers=bearer(token)).status_code == 200


EXPECTED = {
    "lambert": {"name", "handle", "text", "note"},     # name, handle, a message, an internal note; not other brand
    "LAMBERT-42": {"text"},                             # case-insensitive
    "100%": {"percent"},                                # LIKE wildcards are plain text
    "zoe": {"handle"},                                  # "Zoé" is not "zoe"
    "nobody at all": set(),
}


@pytest.mark.parametrize("mode", ["probe", "slices", "one_candidate"])
def test_search_finds_every_match_once_newest_first(app, client, world, token_for, monkeypatch, mode):
    with app.app_context():
        ids = _world(world)
    if mode == "slices":  # every probe "finds too many": each page examines 3 conversations of the view
        monkeypatch.setattr(service, "SEARCH_CANDIDATES", 0)
        monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
    if mode == "one_candidate":  # "lambert" names 4 contacts: too many, so its messages are not even probed
        monkeypatch.setattr(service, "SEARCH_CANDIDATES", 1)  # but "LAMBERT-42" or "zoe" fit: a mix of both ways
        monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
    token = token_for(world.agent)
    names = {cid: name for name, cid in ids.items()}
    for q, expected in EXPECTED.items():
        for sort in ("waiting", "newest", "sla_due"):  # newest first whatever the sort
            items, pages = _all_pages(client, token, q=q, status="open", limit=2, sort=sort)
            assert [names[item["id"]] for item in items if names[item["id"]] not in expected] == [], q
            assert sorted(names[item["id"]] for item in items) == sorted(expected), (q, mode)
            assert _newest_first(items), q
            assert all("counts" not in page for page in pages)  # a search counts nothing
            if mode == "probe":  # complete candidate lists: full pages until the last one
                assert all(len(page["items"]) == 2 for page in pages[:-1]), q
    if mode != "probe":
        _, pages = _all_pages(client, token, q="lambert", status="open", limit=2)
        assert any(len(page["items"]) < 2 and page["next_cursor"] for page in pages)  # short pages go on
    with app.app_context():  # the counts of the views themselves still count a `q` (COUNT fallback)
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        assert service.view_counts(db.session, agent, {"q": "lambert", "status": "open"})["all"] == 4


def test_a_slow_probe_falls_back_to_slices(app, world, monkeypatch, statements):
    """PostgreSQL: a probe over SEARCH_PROBE_MS is cancelled, the page is built by examining a slice instead, and
    the request's transaction goes on with the usual statement timeout. The timeout is paid by two pages (one might
    be a busy moment), not by every page."""
    with app.app_context():
        if db.session.get_bind().dialect.name != "postgresql":
            pytest.skip("the probe's timeout is a PostgreSQL matter")
        ids = _world(world)
        monkeypatch.setattr(service, "SEARCH_PROBE_MS", 50)
        monkeypatch.setattr(service, "_probe_statement",
                            lambda: text("SELECT 1 AS found, 0 AS id FROM pg_sleep(0.5)"))
        monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        before = db.session.execute(text("SHOW statement_timeout")).scalar()
        items, cursor = [], None
        while True:
            page = service.list_conversations(db.session, agent, {"q": "lambert", "status": "open", "limit": 50,
                                                                  **({"cursor": cursor} if cursor else {})})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert {item["id"] for item in items} == {ids[k] for k in EXPECTED["lambert"]}
        assert sum(1 for s in statements if "pg_sleep" in s) == 2  # the next pages knew the probe fails
        assert db.session.execute(text("SHOW statement_timeout")).scalar() == before
        assert agent.name  # the session's objects are still usable
        db.session.rollback()


def test_one_slow_probe_is_not_held_against_a_text(app, world, monkeypatch):
    """PostgreSQL: a probe cancelled once (a busy moment) gives one page built by slices; the next page probes
    again, and so does the next search of the same text."""
    with app.app_context():
        if db.session.get_bind().dialect.name != "postgresql":
            pytest.skip("the probe's timeout is a PostgreSQL matter")
        ids = _world(world)
        monkeypatch.setattr(service, "SEARCH_PROBE_MS", 50)
        monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
        real, slow = service._probe_statement, [text("SELECT 1 AS found, 0 AS id FROM pg_sleep(0.5)")]
        monkeypatch.setattr(service, "_probe_statement", lambda: slow.pop() if slow else real())
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        names = {cid: name for name, cid in ids.items()}

        def page(**params: Any) -> dict[str, Any]:
            found = service.list_conversations(db.session, agent, {"q": "lambert", "status": "open", "limit": 2,
                                                                   **params})
            db.session.rollback()
            return found
        first = page()
        assert len(first["items"]) < 2 and service.decode_cursor(first["next_cursor"], 3)[0] == "p"
        items, cursor = list(first["items"]), first["next_cursor"]
        while cursor:
            found = page(cursor=cursor)
            assert len(found["items"]) == 2 or not found["next_cursor"]  # probed: full pages
            items, cursor = items + found["items"], found["next_cursor"]
        assert sorted(names[item["id"]] for item in items) == sorted(EXPECTED["lambert"])
        again = page()
        assert len(again["items"]) == 2 and service.decode_cursor(again["next_cursor"], 3)[0] == "p"


def test_pages_switching_from_the_probe_to_slices_miss_nothing_and_repeat_nothing(app, client, world, token_for,
                                                                                  monkeypatch, statements):
    """The first page comes from the probe; then the text becomes too common to probe (as when a word spreads):
    the next page's probe fails and slices go on from the probe's cursor. Once a cursor says slices, later pages
    skip the probe even in a process that does not remember the failure (another web process)."""
    with app.app_context():
        ids = _world(world)
        for i in range(-1, -9, -1):  # older than the whole world: slices have more than one window to go through
            ids[f"older{-i}"] = _conversation(world, i, "Lou Lambert" if i == -6 else f"Older {-i}", None, ["salut"])
        db.session.commit()
    names = {cid: name for name, cid in ids.items()}
    token = token_for(world.agent)

    def get(**query: Any) -> dict[str, Any]:
        return client.get("/api/v1/conversations", query_string=query, headers=bearer(token)).get_json()

    first = get(q="lambert", status="open", limit=2)
    assert len(first["items"]) == 2 and _probes(statements) == 1
    monkeypatch.setattr(service, "SEARCH_CANDIDATES", 0)
    monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
    statements.clear()
    second = get(q="lambert", status="open", limit=2, cursor=first["next_cursor"])
    assert _probes(statements) == 1  # tried, failed
    items, cursor = first["items"] + second["items"], second["next_cursor"]
    monkeypatch.setattr(service, "SEARCH_CANDIDATES", 1000)  # a probe would succeed again
    statements.clear()
    while cursor:
        service._failed_probes.clear()
        page = get(q="lambert", status="open", limit=2, cursor=cursor)
        items, cursor = items + page["items"], page["next_cursor"]
    assert _probes(statements) == 0
    assert sorted(names[item["id"]] for item in items) == sorted(EXPECTED["lambert"] | {"older6"})  # each once
    assert _newest_first(items)


def test_a_failed_probe_is_remembered_for_a_while(app, client, world, token_for, monkeypatch, statements):
    """Once a text's probe found too many candidates (or timed out twice in a row), this process builds its pages
    by slices for SEARCH_MEMO_SECONDS without probing again, whatever the text's case; other texts still probe."""
    with app.app_context():
        ids = _world(world)
    names = {cid: name for name, cid in ids.items()}
    token = token_for(world.agent)
    monkeypatch.setattr(service, "SEARCH_CANDIDATES", 0)
    monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
    items, _ = _all_pages(client, token, q="lambert", status="open", limit=2)
    assert _probes(statements) == 1  # the first page only: its cursor says slices
    monkeypatch.setattr(service, "SEARCH_CANDIDATES", 1000)
    statements.clear()
    again, pages = _all_pages(client, token, q="LAMBERT", status="open", limit=2)
    assert _probes(statements) == 0 and [item["id"] for item in again] == [item["id"] for item in items]
    assert sorted(names[item["id"]] for item in again) == sorted(EXPECTED["lambert"])
    assert any(len(page["items"]) < 2 and page["next_cursor"] for page in pages)  # slices: short pages
    statements.clear()
    assert [names[item["id"]] for item in _all_pages(client, token, q="LAMBERT-42", status="open")[0]] == ["text"]
    assert _probes(statements) == 1
    monkeypatch.setattr(service, "SEARCH_MEMO_SECONDS", 0)  # forgotten: probed again, full pages
    statements.clear()
    items, pages = _all_pages(client, token, q="lambert", status="open", limit=2)
    assert _probes(statements) == len(pages) and all(len(page["items"]) == 2 for page in pages[:-1])
    assert sorted(names[item["id"]] for item in items) == sorted(EXPECTED["lambert"])


def test_a_cursor_of_the_previous_release_still_pages(app, client, world, token_for):
    """Search cursors were [last_message_at, id] before they said how their page was built: one handed out
    before an upgrade continues as a probe page would; a cursor of another kind is refused."""
    with app.app_context():
        _world(world)
    token = token_for(world.agent)
    get = lambda **q: client.get("/api/v1/conversations", query_string=q, headers=bearer(token))  # noqa: E731
    first = get(q="lambert", status="open", limit=2).get_json()
    mode, at, last_id = service.decode_cursor(first["next_cursor"], 3)
    assert mode == "p"
    old, new = (get(q="lambert", status="open", limit=2, cursor=cursor).get_json()
                for cursor in (service.encode_cursor([at, last_id]), first["next_cursor"]))
    assert [item["id"] for item in old["items"]] == [item["id"] for item in new["items"]] != []
    refused = get(q="lambert", status="open", cursor=service.encode_cursor(["x", at, last_id]))
    assert refused.status_code == 422 and "cursor" in refused.get_json()["error"]["fields"]


@pytest.mark.parametrize("slow", [True, False], ids=["cancelled", "answered"])
def test_a_probe_keeps_the_connections_prepared_statements(app, world, monkeypatch, slow):
    """PostgreSQL: psycopg forgets and deallocates every prepared statement of a connection when a command answers
    with the tag ROLLBACK, as the ROLLBACK TO SAVEPOINT that ends the probe's savepoint does. A probe, cancelled by
    its timeout or not, leaves the statements prepared before it prepared (on the server and in psycopg's cache),
    and the request's transaction usable with its usual timeout."""
    with app.app_context():
        if db.session.get_bind().dialect.name != "postgresql":
            pytest.skip("prepared statements and the probe's timeout are a PostgreSQL matter")
        from psycopg.pq import TransactionStatus

        ids = _world(world)
        if slow:
            monkeypatch.setattr(service, "SEARCH_PROBE_MS", 50)
            monkeypatch.setattr(service, "_probe_statement",
                                lambda: text("SELECT 1 AS found, 0 AS id FROM pg_sleep(0.5)"))
        monkeypatch.setattr(service, "SEARCH_WINDOW", 3)
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        raw = db.session.connection().connection.dbapi_connection
        canary = "SELECT 'canary' AS canary"
        raw.execute(canary, prepare=True)

        def prepared() -> set[tuple[str, str]]:
            return {(row.name, row.statement) for row in
                    db.session.execute(text("SELECT name, statement FROM pg_prepared_statements"))}
        before = {entry for entry in prepared() if entry[1] == canary}
        assert len(before) == 1
        timeout = db.session.execute(text("SHOW statement_timeout")).scalar()
        page = service.list_conversations(db.session, agent, {"q": "lambert", "status": "open", "limit": 2})
        assert (service._failed_probes != {}) is slow  # the probe was cancelled (or not)
        assert {entry for entry in prepared() if entry[1] == canary} == before
        raw.execute(canary, prepare=True)  # psycopg still knows it: nothing is prepared again
        assert {entry for entry in prepared() if entry[1] == canary} == before
        assert raw.info.transaction_status == TransactionStatus.INTRANS
        assert db.session.execute(text("SHOW statement_timeout")).scalar() == timeout
        names = {cid: name for name, cid in ids.items()}
        assert {names[item["id"]] for item in page["items"]} <= EXPECTED["lambert"] and page["next_cursor"]
        db.session.rollback()


def test_searches_whose_probe_is_cancelled_keep_the_pages_prepared(app, client, world, token_for, monkeypatch):
    """PostgreSQL, request after request on the same pooled connection: a search whose probe is cancelled drops
    none of the connection's prepared statements (as pg_prepared_statements shows at the start of each request),
    and its own statements get prepared like those of any repeated page."""
    if db.dialect != "postgresql":
        pytest.skip("prepared statements and the probe's timeout are a PostgreSQL matter")
    with app.app_context():
        _world(world)
        engine = db.engine
    monkeypatch.setattr(service, "SEARCH_PROBE_MS", 20)
    monkeypatch.setattr(service, "_probe_statement",
                        lambda: text("SELECT 1 AS found, 0 AS id FROM pg_sleep(0.2)"))
    token = token_for(world.agent)

    def request() -> None:
        service._failed_probes.clear()  # probe every time (two failures would skip it)
        response = client.get("/api/v1/conversations", query_string={"q": "lambert", "status": "open"},
                              headers=bearer(token))
        assert response.status_code == 200
        assert service._failed_probes  # cancelled

    requests = prepared_at_each_request(engine, request, tries=60)
    for before, after in zip(requests, requests[1:]):
        assert before <= after, before - after  # nothing prepared is dropped between requests
    assert any("FROM conversations" in statement for statement in requests[-1]), requests[-1]
