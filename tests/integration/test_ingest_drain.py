"""The drain's fixed cost and the guarantees it keeps while cutting it: statements per drain independent of the
batch size, the set-based pass retried one event at a time after a failure (without a savepoint, by rolling
the whole transaction back), channels cached per process but never stale after a change, the Meta app checked
per event, live events published once, the linger before a small drain. Runs on SQLite, and on PostgreSQL
with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest
from sqlalchemy import event, select, text

from inbox.db import db
from inbox.demo.fake_meta import (messaging_echo, messaging_message, messenger_message_payload, page_entry,
                                  page_payload)
from inbox.models import Agent, Channel, Conversation, Message, RealtimeEvent, WebhookEvent
from inbox.services import admin, ingest
from inbox.webhooks import app_secret_fingerprint
from tests.factories import PAGE_ID
from tests.helpers import poison_drain, store_verified, two_drains_first_held


@pytest.fixture
def held(background_held: None, world: Any) -> Any:
    """The periodic reconciler held off: each test drains exactly what it stored, when it says so."""
    return world


@pytest.fixture
def statements(app: Any) -> Any:
    """statements() -> a list that collects the SQL statements this thread sends from then on (the embedded job
    threads, e.g. profile lookups, are not counted)."""
    collected: list[list[str]] = []
    me = threading.get_ident()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == me:
            for target in collected:
                target.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)

    def start() -> list[str]:
        target: list[str] = []
        collected.append(target)
        return target
    yield start
    event.remove(db.engine, "before_cursor_execute", record)


def _drain(app: Any, **kwargs: Any) -> int:
    with app.app_context():
        kwargs.setdefault("linger", 0)
        done = ingest.drain_webhook_events(**kwargs)
        db.session.remove()
        return done


def _messages(n: int, start: int = 0, psids: int = 5) -> list[dict[str, Any]]:
    return [messenger_message_payload(PAGE_ID, f"psid-{k % psids}", f"message {k}", mid=f"m_{k}")
            for k in range(start, start + n)]


def test_a_drains_statements_do_not_grow_with_its_size(app: Any, held: Any, statements: Callable[[], list[str]],
                                                       caches_held: None) -> None:
    """Customers and conversations known (the steady state): draining 1 or 10 single-message webhooks sends
    the same statements. Before this work a drain sent 22 on PostgreSQL whatever its size (then 13); what is
    left is the claim, contacts, conversations (locked, with what their JSON shows, routing needs and their
    links), messages, the language guess (these texts tell none yet: read again until three are in), the
    conversation updates, the live events and the raw events' outcome. (SQLite inserts live events one row at a
    time: those are left out of its count.) The per-process channel, credential and SLA policy caches are kept
    for the whole test (`caches_held`): on a slow, busy box (a clean-clone CI run) more than their few seconds
    passed between two drains and one drain read the channel (another time the policies) again, one statement
    more that has nothing to do with the batch's size."""
    for payload in _messages(5):
        store_verified(payload)
    _drain(app)
    counts, seen = [], []
    for size, start in ((1, 5), (10, 6), (1, 16)):
        for payload in _messages(size, start):
            store_verified(payload)
        sent = statements()
        assert _drain(app) == size
        if db.dialect == "sqlite":
            sent = [s for s in sent if not s.startswith("INSERT INTO realtime_events")]
        counts.append(len(sent))
        seen.append([s.split(" WHERE ")[0][:120] for s in sent])
    # the last drain's conversation (psid-1) has its first three texts in by then, and they tell no language: that
    # is stored (assignment.NO_LANGUAGE), and its first texts are not read again
    assert counts[0] == counts[1] == counts[2] + 1, (counts, seen)
    assert counts[0] <= 9, counts


def test_a_failed_set_based_pass_is_rolled_back_and_applied_one_event_at_a_time(app: Any, held: Any,
                                                                                monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    """No savepoint around the set-based pass: when it fails, the whole transaction is rolled back (its
    messages, conversation changes and live events with it) and the batch is applied one event at a time;
    only the bad event fails (to be retried), nothing is doubled, each live event is published once."""
    poison_drain(monkeypatch)
    ids = [store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", text, mid=f"m_{k}"))
           for k, text in enumerate(("first", "poison", "third"))]
    assert _drain(app) == 3
    with app.app_context():
        events = {e.id: e for e in db.session.execute(select(WebhookEvent)).scalars()}
        assert [events[i].status for i in ids] == ["processed", "failed", "processed"]
        assert events[ids[1]].attempts == 1 and "cannot apply this one" in events[ids[1]].error
        assert events[ids[1]].next_attempt_at is not None
        assert sorted(db.session.execute(select(Message.external_id)).scalars()) == ["m_0", "m_2"]
        created = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name == "message.created")
                                     .order_by(RealtimeEvent.id)).scalars().all()
        assert [e.payload["external_id"] for e in created] == ["m_0", "m_2"]
        db.session.remove()


def test_a_drain_publishes_its_live_events_once_in_order(app: Any, held: Any) -> None:
    """A batch's message.created events (recorded by the set-based pass, published after the routing) come
    before the conversation events, once each, with increasing seq."""
    for payload in _messages(4, psids=2):
        store_verified(payload)
    assert _drain(app) == 4
    with app.app_context():
        rows = db.session.execute(select(RealtimeEvent).order_by(RealtimeEvent.id)).scalars().all()
        names = [r.name for r in rows]
        assert names == ["message.created"] * 4 + ["conversation.created"] * 2, names
        assert [r.payload["external_id"] for r in rows[:4]] == ["m_0", "m_1", "m_2", "m_3"]
        conversation_ids = {r.payload["id"] for r in rows[4:]}
        assert all(r.rooms == [f"conversation:{r.payload['conversation_id']}"] for r in rows[:4])
        assert {r.payload["conversation_id"] for r in rows[:4]} == conversation_ids
        db.session.remove()


def test_each_event_is_checked_against_its_pages_app(app: Any, held: Any) -> None:
    """The page's channel is looked up once per batch (and cached), but the app that signed each event is
    compared for each event: one signed by another Meta app is not routed, even after a valid one."""
    valid = store_verified(messenger_message_payload(PAGE_ID, "psid-a", "valid", mid="m_valid"))
    foreign = store_verified(messenger_message_payload(PAGE_ID, "psid-b", "foreign", mid="m_foreign"),
                     fingerprint=app_secret_fingerprint("another-app-secret"))
    assert _drain(app) == 2
    with app.app_context():
        assert db.session.get(WebhookEvent, valid).status == "processed"
        assert db.session.get(WebhookEvent, foreign).status == "unroutable"
        assert db.session.execute(select(Message.external_id)).scalars().all() == ["m_valid"]
        db.session.remove()


def _echo_author(app: Any, mid: str) -> str | None:
    store_verified(page_payload(page_entry(PAGE_ID, messaging=[messaging_echo(PAGE_ID, "psid-echo", "Réponse", mid=mid)])))
    _drain(app)
    with app.app_context():
        name = db.session.execute(select(Message.author_name).where(Message.external_id == mid)) \
            .scalar_one_or_none()
        db.session.remove()
        return name


def test_a_channel_changed_in_this_process_is_seen_at_once(app: Any, held: Any) -> None:
    assert _echo_author(app, "m_echo_1") == "Maison Lune FB"  # cached now
    with app.app_context():
        actor = db.session.execute(select(Agent).where(Agent.email == held.admin)).scalar_one()
        admin.update_channel(db.session, actor, held.page_channel_id, name="Maison Lune Messenger",
                             config={"app_secret": "a-rotated-app-secret"})
        db.session.commit()
        db.session.remove()
    assert _echo_author(app, "m_echo_2") is None  # signed with the old secret: not routed any more
    store_verified(page_payload(page_entry(PAGE_ID, messaging=[messaging_echo(PAGE_ID, "psid-echo", "Réponse",
                                                                      mid="m_echo_3")])),
           fingerprint=app_secret_fingerprint("a-rotated-app-secret"))
    _drain(app)
    with app.app_context():
        assert db.session.execute(select(Message.author_name).where(Message.external_id == "m_echo_3")) \
            .scalar_one() == "Maison Lune Messenger"
        db.session.remove()


def test_a_channel_changed_by_another_process_is_seen_within_the_ttl(app: Any, held: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest._channels, "ttl", 3600.0)
    assert _echo_author(app, "m_echo_1") == "Maison Lune FB"
    with app.app_context():  # what another process's change looks like here: the row changes, no invalidation
        db.session.execute(text("UPDATE channels SET name = 'Renamed elsewhere' WHERE id = :id"),
                           {"id": held.page_channel_id})
        db.session.commit()
        db.session.remove()
    assert _echo_author(app, "m_echo_2") == "Maison Lune FB"  # cached
    monkeypatch.setattr(ingest._channels, "ttl", 0.0)  # the entry's time is up
    assert _echo_author(app, "m_echo_3") == "Renamed elsewhere"


def test_the_drain_lingers_before_a_small_batch_only_while_webhooks_keep_coming(app: Any, held: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A small drain lingers only when the previous drain of the process that found work ended less than
    LINGER_AFTER lingers ago (more webhooks are on their way); after a quiet spell, or after a drain that left a
    backlog, it claims at once. The linger is 50 ms here (time.sleep is replaced, nothing waits) so that the
    window, 200 ms, holds on a slow box."""
    slept: list[float] = []
    monkeypatch.setattr(ingest.time, "sleep", slept.append)
    monkeypatch.setattr(ingest, "_backlog", False)
    monkeypatch.setattr(ingest, "_last_end", None)
    linger = 0.05
    with app.app_context():
        store_verified(_messages(1)[0])
        assert ingest.drain_webhook_events(linger=linger) == 1  # the process's first drain: nothing came before
        assert slept == []
        store_verified(_messages(1, start=1)[0])
        assert ingest.drain_webhook_events(linger=linger) == 1  # just after one: more may be on their way
        assert slept == [linger]
        monkeypatch.setattr(ingest, "_last_end", time.monotonic() - ingest.LINGER_AFTER * linger - 0.01)
        assert ingest.drain_webhook_events(linger=0) == 0 and slept == [linger]  # found nothing: not a mark
        store_verified(_messages(1, start=2)[0])
        assert ingest.drain_webhook_events(linger=linger) == 1  # after a quiet spell: at once
        assert slept == [linger]
        for payload in _messages(3, start=3):
            store_verified(payload)
        assert ingest.drain_webhook_events(linger=linger, batch_size=2, time_budget=0) == 2  # stopped with a backlog
        assert slept == [linger, linger]
        assert ingest.drain_webhook_events(linger=linger, batch_size=2) == 1  # at once: events were waiting
        assert slept == [linger, linger]
        monkeypatch.setattr(ingest, "_last_end", time.monotonic())
        assert ingest.drain_webhook_events() == 0  # the default comes from INGEST_LINGER_MS
        assert slept == [linger, linger, app.extensions["relais.settings"].ingest_linger_ms / 1000]
        db.session.remove()
    with app.app_context():
        assert len(db.session.execute(select(Message.id)).all()) == 6  # every message in, of 5 customers
        db.session.remove()


def test_channels_cache_merges_without_a_query(app: Any, held: Any, statements: Callable[[], list[str]]) -> None:
    """A cached channel joins the batch's session without a SELECT, and conversation dumps find it there."""
    store_verified(_messages(1)[0])
    _drain(app)
    store_verified(_messages(1, start=1)[0])
    sent = statements()
    _drain(app)
    assert not [s for s in sent if "FROM channels" in s], sent
    with app.app_context():
        created = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name.like("conversation.%"))
                                     .order_by(RealtimeEvent.id.desc())).scalars().first()
        assert created.payload["channel"] == {"id": held.page_channel_id, "name": "Maison Lune FB",
                                              "kind": "facebook_page"}
        assert db.session.get(Channel, held.page_channel_id) is not None
        db.session.remove()


def test_the_nudge_is_cleared_after_the_linger_before_the_claim(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook stored during the linger is in this drain: its nudge must not queue another run (the job clears
    its nudge only once the linger is over, just before claiming)."""
    steps: list[str] = []
    # time.sleep and the claim are patched for the whole process: only this thread's calls are this drain's (the
    # embedded reconciler and SLA timer threads sleep and drain too)
    me, real_sleep = threading.get_ident(), time.sleep
    monkeypatch.setattr(ingest.time, "sleep",
                        lambda s: steps.append("linger") if threading.get_ident() == me else real_sleep(s))
    monkeypatch.setattr(ingest, "_backlog", False)
    monkeypatch.setattr(ingest, "_last_end", time.monotonic())  # a drain just ended: webhooks keep coming
    claim = ingest._drain_one_batch
    monkeypatch.setattr(ingest, "_drain_one_batch",
                        lambda size: (steps.append("claim") if threading.get_ident() == me else None) or claim(size))
    with app.app_context():
        ingest.drain_webhook_events(linger=0.05, before_claim=lambda: steps.append("clear nudge"))
        db.session.remove()
    assert steps == ["linger", "clear nudge", "claim"]


def test_routing_a_known_conversation_costs_no_statement_of_its_own(app: Any, held: Any,
                                                                    statements: Callable[[], list[str]]) -> None:
    """A one-message drain to a known conversation: the claim, the contacts, the conversations' ids, the message,
    the conversations (locked, read with what routing needs and their links), the conversation's changes, the live
    events and the raw event's outcome. No savepoint and no routing query (they were a third of a one-message
    drain); the language guess adds one query only while the conversation's first texts have not told its
    language."""
    for k, body in enumerate(("bonjour, où est ma commande ?", "ok")):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", body, mid=f"w_{k}"))
    _drain(app)
    counts = []
    for psid, mid in (("psid-0", "m_0"), ("psid-1", "m_1")):
        store_verified(messenger_message_payload(PAGE_ID, psid, "merci", mid=mid))
        sent = statements()
        assert _drain(app) == 1
        # (the per-process caches of channels and SLA policies may expire in between: their reloads not counted)
        sent = [s for s in sent if not s.startswith(("BEGIN", "INSERT INTO realtime_events", "SELECT channels",
                                                     "SELECT sla_policies"))]
        assert not any(s.startswith(("SAVEPOINT", "SELECT brand_routings", "SELECT assignment_policies",
                                     "SELECT conversation_links")) for s in sent), sent
        counts.append(len(sent))
    assert counts == [7, 8], counts  # + the live events' INSERT: one per drain on PostgreSQL


def test_the_batchs_conversation_changes_are_one_update_and_what_it_wrote_is_stored(
        app: Any, held: Any, statements: Callable[[], list[str]]) -> None:
    """Known conversations changed differently by one drain (one answered, so its waiting clock restarts; one
    still waiting): ONE `UPDATE conversations` (`ingest._write_conversations`, where the unit of work sent one
    per group of conversations with the same changed columns), nothing of them left for the flush, and the
    rows read back hold what the live events showed, with `updated_at` moved as the column's onupdate moves it."""
    from datetime import timedelta

    from sqlalchemy import update

    from inbox.db import utcnow

    for k in range(2):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", f"first {k}", mid=f"f_{k}"))
    _drain(app)
    with app.app_context():
        ids = {c.thread_key: c.id for c in db.session.execute(select(Conversation)).scalars()}
        answered = next(i for key, i in ids.items() if key.endswith("psid-0"))
        before = utcnow() - timedelta(minutes=5)
        db.session.execute(update(Conversation).values(updated_at=before))
        db.session.execute(update(Conversation).where(Conversation.id == answered)
                           .values(waiting_since=None, last_outbound_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        db.session.remove()
    for k in range(2):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", f"again {k}", mid=f"a_{k}"))
    sent = statements()
    assert _drain(app) == 2
    updates = [s for s in sent if s.startswith("UPDATE conversations")]
    assert len(updates) == 1, updates
    with app.app_context():
        live = {e.payload["id"]: e.payload for e in db.session.execute(
            select(RealtimeEvent).where(RealtimeEvent.name == "conversation.updated")
            .order_by(RealtimeEvent.id)).scalars()}
        for conversation in db.session.execute(select(Conversation)).scalars():
            shown = live[conversation.id]
            assert conversation.updated_at > before
            assert conversation.last_message_preview == shown["last_message"]["text"]
            assert conversation.last_message_at.isoformat() == shown["last_message_at"]
            assert conversation.last_inbound_at.isoformat() == shown["last_inbound_at"]
            assert conversation.waiting_since is not None
            assert conversation.waiting_since.isoformat() == shown["waiting_since"]
            assert conversation.language == shown.get("language")
        assert db.session.get(Conversation, answered).waiting_since == \
            db.session.get(Conversation, answered).last_inbound_at  # waiting again since the new message


def test_a_one_message_drain_makes_eight_round_trips_on_postgresql(app: Any, held: Any, caches_held: None,
                                                                   tmp_path: Any) -> None:
    """Each round trip to PostgreSQL costs both processes a wake-up, and on a busy box a wait for a core. A
    one-message drain to a known conversation whose language is known made ten: a ping, the BEGIN, the claim, the
    contacts, the conversations, the message, the conversation's changes, the outcomes, the live events, the
    COMMIT. Now the outcomes and the live events go with the COMMIT (`db.pipelined`), and a connection used less
    than a second ago is not pinged: seven, counted in libpq's protocol trace. (psycopg waits for the BEGIN's
    answer before it sends anything else, even in pipeline mode, so the BEGIN keeps a round trip of its own.)
    The eighth reads the conversations' ids before the message goes in, so that the conversations are locked
    only after it (concurrent drains then write their messages at once: see the test below)."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL's round trips (RELAIS_TEST_DB=postgresql)")
    from tests.helpers import protocol_trace, round_trips

    store_verified(messenger_message_payload(PAGE_ID, "psid-0", "bonjour, où est ma commande ?", mid="w_0"))
    _drain(app)
    store_verified(messenger_message_payload(PAGE_ID, "psid-0", "merci", mid="m_0"))
    with protocol_trace(db.engine, tmp_path) as traces:
        assert _drain(app) == 1
    assert len(traces) == 1, traces  # one transaction, one connection
    trips = round_trips(traces[0])
    assert len(trips) == 8, trips
    assert trips[0] == ["BEGIN"], trips
    assert trips[-1][-1] == "COMMIT" and len(trips[-1]) == 3, trips  # after the outcomes and the live events
    with app.app_context():
        assert db.session.execute(select(WebhookEvent.status).order_by(WebhookEvent.id)).scalars().all() == \
            ["processed", "processed"]
        assert db.session.execute(select(RealtimeEvent.name).order_by(RealtimeEvent.id)).scalars().all()[-2:] == \
            ["message.created", "conversation.updated"]
        db.session.remove()


def test_a_text_that_tells_no_language_leaves_nothing_for_the_commits_flush(app: Any, held: Any) -> None:
    """A conversation whose first texts tell no language ("ok", an emoji: common) keeps `language` unset. Routing
    set it again to None after the batch's UPDATE had written the conversation, which left every such conversation
    dirty: the commit's flush then compared all their attributes for nothing (15% of a drain of new customers)."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import Session

    dirty: list[tuple[str, ...]] = []

    def before_flush(session: Any, _context: Any, _instances: Any) -> None:
        dirty.extend(tuple(sa_inspect(o).committed_state) for o in session.dirty if isinstance(o, Conversation))

    for k in range(3):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", "ok", mid=f"n_{k}"))  # new conversations
    event.listen(Session, "before_flush", before_flush)
    try:
        assert _drain(app) == 3
        for k in range(3):
            store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", "👍", mid=f"k_{k}"))  # known ones
        assert _drain(app) == 3
    finally:
        event.remove(Session, "before_flush", before_flush)
    assert dirty == [], dirty
    with app.app_context():
        assert db.session.execute(select(Conversation.language)).scalars().all() == [None] * 3
        db.session.remove()


def test_first_texts_that_tell_no_language_are_read_until_the_third_then_never_again(
        app: Any, held: Any, statements: Callable[[], list[str]]) -> None:
    """The language guess reads a conversation's first three customer texts. While they tell none and fewer than
    three are in, every drain that touches the conversation reads them again (a later text may tell). Once the
    third is in, "none" is stored (`assignment.NO_LANGUAGE`) and no drain reads them again; the API and the live
    events show null. A conversation whose second text tells its language gets it; one whose first webhook brings
    three such texts at once is settled by that drain."""
    from inbox.api.schemas import ConversationSchema
    from inbox.services.assignment import NO_LANGUAGE

    def reads_first_texts(sent: list[str]) -> bool:
        return any(s.startswith("SELECT") and "messages.text" in s for s in sent)

    reads = []
    for k, body in enumerate(("ok", "👍", "12345", "ok")):
        store_verified(messenger_message_payload(PAGE_ID, "psid-none", body, mid=f"none_{k}"))
        sent = statements()
        assert _drain(app) == 1
        reads.append(reads_first_texts(sent))
    # the first drain opened the conversation (its texts are the batch's own); the second and third read them
    assert reads == [False, True, True, False], reads
    for k, body in enumerate(("ok", "bonjour, où est ma commande ?")):
        store_verified(messenger_message_payload(PAGE_ID, "psid-fr", body, mid=f"fr_{k}"))
        assert _drain(app) == 1
    store_verified(page_payload(page_entry(PAGE_ID, messaging=[
        messaging_message(PAGE_ID, "psid-three", body, mid=f"three_{k}", ts_ms=1_700_000_000_000 + k)
        for k, body in enumerate(("ok", "👍", "12345"))])))
    assert _drain(app) == 1
    with app.app_context():
        by_key = {c.thread_key: c for c in db.session.execute(select(Conversation)).scalars()}
        assert by_key["dm:psid-none"].language == NO_LANGUAGE
        assert by_key["dm:psid-fr"].language == "fr"
        assert by_key["dm:psid-three"].language == NO_LANGUAGE
        assert ConversationSchema().dump(by_key["dm:psid-none"])["language"] is None
        live = db.session.execute(select(RealtimeEvent.payload).where(
            RealtimeEvent.name.in_(("conversation.created", "conversation.updated")))
            .order_by(RealtimeEvent.id)).scalars().all()
        assert all(p.get("language") in (None, "fr") for p in live), live
        db.session.remove()


def test_a_drain_waiting_for_anothers_conversation_has_written_its_messages_meanwhile(
        app: Any, held: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two drains as two worker processes run them (the per-process drain lock bypassed), both with a message for
    the same conversation. The first is held just before its commit, holding the conversation's lock. The second
    finds the conversation's id and writes its message without waiting (the lock is FOR NO KEY UPDATE, which the
    message's foreign key check does not wait for), and waits only to lock the conversation, to update its state.
    Once the first commits, the second applies its message on top of what the first wrote."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its drains never overlap")
    store_verified(messenger_message_payload(PAGE_ID, "psid-0", "bonjour", mid="m_0"))
    assert _drain(app) == 1
    for k in (1, 2):  # ids in that order: the first drain claims m_1 (batches of one)
        store_verified(messenger_message_payload(PAGE_ID, "psid-0", f"message {k}", mid=f"m_{k}"))

    with two_drains_first_held(app, monkeypatch) as errors:
        waiting: list[str] = []
        deadline = time.monotonic() + 10
        while not waiting and time.monotonic() < deadline:
            with db.engine.connect() as conn:
                waiting = list(conn.execute(text(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalars())
            time.sleep(0.02)
        assert len(waiting) == 1, waiting
        # what it waits for is the conversations' locking read (pg_stat_activity shows its first 1 kB), so its
        # message's INSERT is behind it
        assert waiting[0].startswith("SELECT conversations.id, conversations.kind, conversations.status"), waiting
        with db.engine.connect() as conn:
            inserts = conn.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE a.wait_event_type = 'Lock' AND l.relation = 'messages'::regclass "
                "AND l.mode = 'RowExclusiveLock' AND l.granted")).scalar()
        assert inserts == 1  # the waiting drain has written to messages
    assert not errors, errors
    with app.app_context():
        conversation = db.session.execute(select(Conversation)).scalar_one()
        texts = db.session.execute(select(Message.text).where(Message.conversation_id == conversation.id)
                                   .order_by(Message.id)).scalars().all()
        assert texts == ["bonjour", "message 1", "message 2"]
        assert conversation.last_message_preview == "message 2"
        assert db.session.execute(select(WebhookEvent.status)).scalars().all() == ["processed"] * 3
        db.session.remove()


def test_a_backlog_is_drained_by_two_lanes_at_once_on_postgresql(app: Any, held: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A drain that finds a full batch starts a second lane (INGEST_DRAIN_LANES, 2 by default) that claims the
    next batches beside it (SKIP LOCKED), on PostgreSQL; on SQLite (one writer) it drains alone. Either way every
    message goes in once, every conversation ends on its latest message whatever order the batches committed
    in, and each message is announced once."""
    base_ms = int(time.time() * 1000) - 60_000
    for k in range(60):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k % 7}", f"message {k}", mid=f"m_{k}",
                                                 ts_ms=base_ms + k * 10))
    seen: list[str] = []
    original = ingest._drain_one_batch

    def spy(batch_size: int) -> int:
        seen.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread():
            time.sleep(0.02)  # the lane claims its first batch meanwhile
        return original(batch_size)

    monkeypatch.setattr(ingest, "_drain_one_batch", spy)
    assert _drain(app, batch_size=10) == 60
    if db.dialect == "postgresql":
        assert set(seen) == {threading.main_thread().name, "relais-drain-lane"}, seen
    else:
        assert set(seen) == {threading.main_thread().name}, seen
    with app.app_context():
        assert db.session.execute(select(WebhookEvent.status)).scalars().all() == ["processed"] * 60
        rows = db.session.execute(select(Message.external_id, Message.text, Conversation.thread_key,
                                         Conversation.last_message_preview)
                                  .join(Conversation, Conversation.id == Message.conversation_id)).all()
        assert sorted(r.external_id for r in rows) == sorted(f"m_{k}" for k in range(60))
        latest = {f"dm:psid-{p}": f"message {max(k for k in range(60) if k % 7 == p)}" for p in range(7)}
        assert {r.thread_key: r.last_message_preview for r in rows} == latest
        created = db.session.execute(select(RealtimeEvent.payload).where(RealtimeEvent.name == "message.created")
                                     ).scalars().all()
        assert sorted(p["external_id"] for p in created) == sorted(f"m_{k}" for k in range(60))
        db.session.remove()


def test_a_drains_batch_is_the_setting_on_postgresql_and_at_most_200_on_sqlite(
        app: Any, held: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A drain claims INGEST_DRAIN_BATCH raw webhooks (400 by default) per transaction on PostgreSQL; SQLite,
    whose drain holds the write lock the acks wait for, at most 200."""
    sizes: list[int] = []
    original = ingest._drain_one_batch

    def spy(batch_size: int) -> int:
        sizes.append(batch_size)
        return original(batch_size)

    monkeypatch.setattr(ingest, "_drain_one_batch", spy)
    store_verified(messenger_message_payload(PAGE_ID, "psid-0", "bonjour", mid="b_0"))
    assert _drain(app) == 1
    from dataclasses import replace

    monkeypatch.setitem(app.extensions, "relais.settings", replace(app.extensions["relais.settings"],
                                                                   ingest_drain_batch=3))
    for k in range(4):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k}", "encore", mid=f"b_{k + 1}"))
    assert _drain(app, lanes=1) == 4
    assert sizes == ([400, 3, 3] if db.dialect == "postgresql" else [200, 3, 3]), sizes


def test_a_failed_lane_leaves_its_batch_to_the_next_drain(app: Any, held: Any, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A lane whose batch fails (here: at its commit, after it claimed and applied it) logs it and stops; its
    transaction is rolled back, so its raw events are pending again and it announced nothing. The drain that
    started it finishes its own batches, and the next drain takes what is left: each message in once."""
    if db.dialect != "postgresql":
        pytest.skip("lanes drain on PostgreSQL only")
    for k in range(40):
        store_verified(messenger_message_payload(PAGE_ID, f"psid-{k % 3}", f"message {k}", mid=f"m_{k}"))
    original = ingest._commit_with_outcomes
    failed: list[int] = []

    def failing_lane(session: Any, events: Any) -> None:
        if threading.current_thread().name == "relais-drain-lane" and not failed:
            failed.append(len(events))
            raise RuntimeError("lane down")
        original(session, events)

    monkeypatch.setattr(ingest, "_commit_with_outcomes", failing_lane)
    first = _drain(app, batch_size=10)
    assert failed == [10] and "a drain lane failed" in caplog.text
    assert first + _drain(app, batch_size=10, lanes=1) == 40
    with app.app_context():
        assert db.session.execute(select(WebhookEvent.status)).scalars().all() == ["processed"] * 40
        assert sorted(db.session.execute(select(Message.external_id)).scalars()) == sorted(f"m_{k}" for k in range(40))
        created = db.session.execute(select(RealtimeEvent.payload).where(RealtimeEvent.name == "message.created")
                                     ).scalars().all()
        assert sorted(p["external_id"] for p in created) == sorted(f"m_{k}" for k in range(40))
        db.session.remove()
