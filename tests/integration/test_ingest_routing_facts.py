"""What the drain no longer asks the database for, and why the answers stay the same.

The drain reads what routing needs (the brand's default team, the team's policy) and the linked ids with the
statement that locks its conversations, guesses languages from the batch's own messages where it opened the
conversation (else with one query after the messages' INSERT), and builds its live events' JSON from the loaded
rows instead of marshmallow. Each test compares with what the database says once committed: the language of
the first three customer texts, and ConversationSchema / MessageSchema dumped from freshly loaded rows (key
order included). Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from sqlalchemy import event, select

from inbox import realtime
from inbox.api.schemas import ConversationSchema, MessageSchema
from inbox.db import db
from inbox.demo.fake_meta import (
    feed_comment_change,
    feed_comment_payload,
    messaging_echo,
    messaging_edit,
    messaging_message,
    messenger_message_payload,
    page_entry,
    page_payload,
)
from inbox.models import (
    BrandRouting,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Message,
    RealtimeEvent,
    SlaPolicy,
)
from inbox.models.assignment import ConversationLink
from inbox.services import assignment, ingest, sla
from tests.factories import PAGE_ID
from tests.helpers import poison_drain, store_verified

NOW = datetime.now(timezone.utc).replace(microsecond=0)
T0 = int((NOW - timedelta(minutes=30)).timestamp() * 1000)  # customers' messages: platform times before NOW


@pytest.fixture
def held(background_held: None, world: Any) -> Iterator[Any]:
    """The periodic reconciler held off (each test drains exactly what it stored), SLA policies not cached from
    another test."""
    sla.invalidate_policy_cache()
    yield world
    sla.invalidate_policy_cache()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """One `now` for the drain and for the reference dumps: reply windows and SLA time left depend on it."""
    for module in ("inbox.services.ingest", "inbox.services.sla", "inbox.services.windows"):
        monkeypatch.setattr(f"{module}.utcnow", lambda: NOW)


def _drain(app: Any, *payloads: dict[str, Any]) -> int:
    """Stores the payloads, drains them in one batch; returns the id of the last live event before the drain."""
    with app.app_context():
        before = db.session.execute(select(RealtimeEvent.id).order_by(RealtimeEvent.id.desc()).limit(1)).scalar()
        db.session.remove()  # SQLite: no transaction left open while the webhooks are stored
        for payload in payloads:
            store_verified(payload)
        assert ingest.drain_webhook_events(linger=0) == len(payloads)
        db.session.remove()
        return before or 0


def _dm(psid: str, text: str | None, mid: str, seconds: int = 0) -> dict[str, Any]:
    return messenger_message_payload(PAGE_ID, psid, text, mid=mid, ts_ms=T0 + seconds * 1000)


def _conversation(thread_key: str) -> Conversation:
    return db.session.execute(select(Conversation).where(Conversation.thread_key == thread_key)).scalar_one()


def _first_texts_guess(conversation_id: int) -> str | None:
    return assignment.first_texts_languages(db.session, [conversation_id])[conversation_id]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _customer(psid: str, name: str) -> None:
    """A Messenger customer known by name: no profile lookup runs in the background to rename them meanwhile."""
    contact = Contact(name=name)
    db.session.add(contact)
    db.session.flush()
    db.session.add(ContactIdentity(contact_id=contact.id, channel_kind="facebook_page", external_id=psid, name=name))


def test_languages_are_guessed_as_from_the_first_three_texts(app: Any, held: Any) -> None:
    """Opened in the batch (guessed from its own messages, in platform-time order, not arrival order), known
    with an unset language (guessed by one query after the INSERT), a text edited or added by the one-by-one pass
    after the set-based one (guessed again by routing): each ends with the guess from its first three texts."""
    _drain(app, _dm("known", "ok", "k1", 1), _dm("known", "?", "k2", 2), _dm("known", "!", "k3", 3))
    _drain(app,
           # a new thread whose first three texts by platform time say French, by arrival order nothing
           _dm("opened", "hello the", "o1", 50), _dm("opened", "bonjour", "o2", 10), _dm("opened", "merci", "o3", 20),
           _dm("opened", "oui", "o4", 30),
           # a known thread, language unset: an older text arrives late and becomes one of the first three
           _dm("known", "bonjour merci", "k0", 0),
           # opened, then its only text edited by the one-by-one pass of the same batch
           _dm("edited", "ok", "e1", 5),
           page_payload(page_entry(PAGE_ID, messaging=[messaging_edit(PAGE_ID, "edited", "e1", "hello the world",
                                                                      ts_ms=T0 + 6000)])),
           # a comment thread: a top-level comment (set-based), then a second comment of the same author that
           # arrives as the edit of a comment never seen (one-by-one: kept as the comment itself)
           feed_comment_payload(PAGE_ID, "p1", "p1_c1", "commenter", "Zoé", "ok"),
           page_payload(page_entry(PAGE_ID, changes=[feed_comment_change(
               PAGE_ID, "p1", "p1_c2", "commenter", "Zoé", "the order is late, thanks", verb="edited")])))
    with app.app_context():
        expected = {"dm:opened": "fr", "dm:known": "fr", "dm:edited": "en", "comment:p1:commenter": "en"}
        for thread_key, language in expected.items():
            conversation = _conversation(thread_key)
            assert conversation.language == _first_texts_guess(conversation.id) == language, thread_key
        db.session.remove()


def test_the_first_texts_read_skip_replies_and_empty_texts_and_stop_at_three(app: Any, held: Any) -> None:
    """`first_texts_languages` (a LATERAL LIMIT per conversation on PostgreSQL, a window on SQLite) reads each
    conversation's first three customer texts by platform time: not the page's replies, not a message without
    text, not the later texts; a conversation without any tells nothing."""
    echo = messaging_echo(PAGE_ID, "long", "hello the thanks, your order", mid="l3", ts_ms=T0 + 3000)
    _drain(app, _dm("long", "ok", "l1", 1), _dm("long", None, "l2", 2), page_payload(page_entry(PAGE_ID,
           messaging=[echo])), _dm("long", "bonjour", "l4", 4), _dm("long", "merci", "l5", 5),
           *[_dm("long", "hello the order, thanks please", f"l{n}", n) for n in range(6, 10)],
           _dm("short", "hello the", "s1", 1), _dm("silent", "ok", "q1", 1))
    with app.app_context():
        ids = {key: _conversation(f"dm:{key}").id for key in ("long", "short", "silent")}
        assert db.session.execute(select(Message.text).where(Message.external_id == "l3")).scalar() is not None
        guesses = assignment.first_texts_languages(db.session, sorted(ids.values()) + [10 ** 9])
        assert guesses == {ids["long"]: "fr", ids["short"]: "en", ids["silent"]: None, 10 ** 9: None}
        db.session.remove()


def test_routing_facts_read_with_the_lock_route_as_before(app: Any, held: Any) -> None:
    """A brand routing set after the conversations opened: the next message puts each team-less conversation in
    the default team, read with its lock, in the same UPDATE as the message's changes (no UPDATE of its own), and
    the live event shows it."""
    with app.app_context():
        _customer("a", "Anne")
        _customer("b", "Bea")
        db.session.commit()
    _drain(app, _dm("a", "bonjour", "a1"), _dm("b", "hello", "b1"))
    with app.app_context():
        assert _conversation("dm:a").team_id is None
        db.session.add(BrandRouting(brand_id=held.brand_id, default_team_id=held.team_id))
        db.session.commit()
    seen: list[str] = []
    me = threading.get_ident()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == me:
            seen.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        before = _drain(app, _dm("a", "encore", "a2", 10), _dm("b", "again", "b2", 10))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not any(s.startswith(("SAVEPOINT", "SELECT brand_routings", "SELECT assignment_policies",
                                 "SELECT conversation_links")) for s in seen), seen
    updates = [s for s in seen if s.startswith("UPDATE conversations")]
    assert updates and all("last_message_preview" in s and "team_id" in s for s in updates), updates
    with app.app_context():
        for thread_key in ("dm:a", "dm:b"):
            assert _conversation(thread_key).team_id == held.team_id
        updated = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.id > before,
                                                                 RealtimeEvent.name == "conversation.updated")
                                     ).scalars().all()
        assert sorted(e.payload["team_id"] for e in updated) == [held.team_id, held.team_id]
        db.session.remove()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """(name, payload) of every live event this thread publishes, as published (JSONB keeps no key order)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    me, real = threading.get_ident(), realtime.publish

    def publish(session: Any, name: str, data: dict[str, Any], rooms: list[str]) -> Any:
        if threading.get_ident() == me:
            seen.append((name, data))
        return real(session, name, data, rooms)

    monkeypatch.setattr(realtime, "publish", publish)
    return seen


def test_live_events_are_the_schema_dumps_of_what_was_committed(app: Any, held: Any, frozen: None,
                                                                published: list[tuple[str, dict[str, Any]]]) -> None:
    """Every conversation.* and message.* the drain publishes is exactly what ConversationSchema / MessageSchema
    dump for the committed rows, key order included: conversations opened in the batch (DM, comment under a
    post), known ones with an assignee, labels, links, SLA clocks, a brand routing, and the echo of our own send
    (one by one)."""
    with app.app_context():
        db.session.add(SlaPolicy(name="Anytime", position=0, first_response_seconds=3600, pause_on=[],
                                 conditions={}))
        for psid, name in (("a", "Anne"), ("b", "Bea"), ("c", "Céline")):
            _customer(psid, name)
        db.session.commit()
    sla.invalidate_policy_cache()
    _drain(app, _dm("a", "bonjour", "a1"), _dm("b", "ok", "b1"))
    with app.app_context():
        a, b = _conversation("dm:a"), _conversation("dm:b")
        agent_id = held.agent_ids[held.agent]
        a.assignee_id, a.assigned_at, a.team_id = agent_id, NOW, held.team_id
        a.label_rows = [ConversationLabel(label="vip"), ConversationLabel(label="Livraison")]
        db.session.add_all([ConversationLink(conversation_id=a.id, linked_id=b.id, created_at=NOW),
                            ConversationLink(conversation_id=b.id, linked_id=a.id, created_at=NOW),
                            BrandRouting(brand_id=held.brand_id, default_team_id=held.team_id)])
        db.session.add(Message(conversation_id=a.id, channel_id=held.page_channel_id, direction="out",
                               kind="message", reply_type="reply", author_type="agent", author_agent_id=agent_id,
                               author_name="Agent", text="Nous regardons", platform_time=NOW, received_at=NOW,
                               delivery_status="sending", idempotency_key="send-1", attachments=[],
                               edit_history=[], extra={}))
        db.session.commit()
        db.session.remove()
    published.clear()
    _drain(app,
           _dm("a", "où est mon colis ?", "a2", 60), _dm("b", "merci", "b2", 61),
           _dm("c", "hello, the order", "c1", 62),
           page_payload(page_entry(PAGE_ID, messaging=[messaging_message(
               PAGE_ID, "c", None, mid="c2", ts_ms=T0 + 63000,
               attachments=[{"type": "image", "payload": {"url": "https://cdn.test/c.png"}}])])),
           feed_comment_payload(PAGE_ID, "p9", "p9_c1", "fan", "Fan", "Trop beau", post_message="Nouvelle collection"))
    names = [name for name, _data in published]
    assert names.count("conversation.updated") == 2 and names.count("conversation.created") == 2, names
    assert names.count("message.created") == 5, names
    _drain(app, page_payload(page_entry(PAGE_ID, messaging=[messaging_echo(
        PAGE_ID, "a", "Nous regardons", mid="echo-1", metadata="send-1", ts_ms=T0 + 120000)])))
    assert [name for name, _data in published[len(names):]] == ["message.updated", "conversation.updated"]
    with app.app_context():
        conversations, messages = ConversationSchema(), MessageSchema()
        last_of: dict[int, dict[str, Any]] = {}
        for name, data in published:
            if name.startswith("message."):
                expected = messages.dump(db.session.get(Message, data["id"]))
                assert _dumps(data) == _dumps(expected), name
            elif name.startswith("conversation."):
                last_of[data["id"]] = data  # the echo's conversation.updated comes after the first drain's
        for conversation_id, data in last_of.items():
            assert _dumps(data) == _dumps(conversations.dump(db.session.get(Conversation, conversation_id)))
        a, b, c = _conversation("dm:a"), _conversation("dm:b"), _conversation("dm:c")
        comment = _conversation("comment:p9:fan")
        assert last_of[a.id]["assignee"] == {"id": held.agent_ids[held.agent], "name": "Agent"}
        assert last_of[a.id]["labels"] == ["Livraison", "vip"] and last_of[a.id]["linked_conversation_ids"] == [b.id]
        assert last_of[a.id]["sla"] and last_of[a.id]["last_message"]["direction"] == "out"
        assert last_of[b.id]["team_id"] == held.team_id and last_of[b.id]["language"] == "fr"
        assert last_of[b.id]["contact"]["name"] == "Bea" and last_of[c.id]["contact"]["name"] == "Céline"
        assert last_of[c.id]["language"] == "en" and last_of[c.id]["last_message"]["text"] == "[image]"
        assert last_of[comment.id]["post"]["text"] == "Nouvelle collection"
        db.session.remove()


def test_a_conversation_opened_by_a_failed_event_is_not_published(app: Any, held: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One by one, an event that fails after opening its conversation rolls it back: no conversation.created
    goes out for it (one did, with a null contact), the others are published as usual."""
    poison_drain(monkeypatch)
    _drain(app, _dm("one", "first", "m1"), _dm("two", "poison", "m2"), _dm("three", "third", "m3"))
    with app.app_context():
        existing = set(db.session.execute(select(Conversation.id)).scalars())
        created = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name == "conversation.created")
                                     ).scalars().all()
        assert len(existing) == 2 and {e.payload["id"] for e in created} == existing and len(created) == 2
        assert all(e.payload["contact"] is not None for e in created)
        db.session.remove()


def test_an_identity_another_worker_created_meanwhile_keeps_its_contact(app: Any, held: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The identities created by the batch come back from their INSERT; one created by another worker between
    the lookup and the INSERT is read then, our spare contact deleted, and the message is theirs."""
    _drain(app, _dm("twice", "bonjour", "t1"))
    with app.app_context():
        theirs = _conversation("dm:twice").contact_id
        contacts = db.session.execute(select(Contact.id)).scalars().all()
        db.session.remove()
    real_identities = ingest._identities
    calls = []

    def unseen_first(session: Any, keys: Any) -> Any:
        calls.append(keys)
        return ({}, {}) if len(calls) == 1 else real_identities(session, keys)  # as if created after the lookup

    monkeypatch.setattr(ingest, "_identities", unseen_first)
    _drain(app, _dm("twice", "encore", "t2"), _dm("fresh", "hello", "f1"))
    with app.app_context():
        assert len(calls) == 2 and calls[1] == [("facebook_page", "twice")]
        assert db.session.execute(select(Message.author_contact_id).where(Message.external_id == "t2")
                                  ).scalar_one() == theirs
        now_contacts = db.session.execute(select(Contact.id)).scalars().all()
        assert len(now_contacts) == len(contacts) + 1  # the new customer's only
        assert _conversation("dm:fresh").contact_id in now_contacts
        db.session.remove()
