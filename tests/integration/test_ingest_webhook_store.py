"""The webhook ack path: group commit (each request gets its own event id, one statement per group on
PostgreSQL), the drain nudge sent once per group and only after the event is durable. Runs on SQLite, and on
PostgreSQL with RELAIS_TEST_DB=postgresql (where the committer's own autocommit connection is used)."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from inbox.db import db, utcnow
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import WebhookEvent
from inbox.services import webhook_store
from inbox.services.webhook_store import GroupCommitter, StoreUnavailable, _Pending, store_webhook_event
from tests.factories import PAGE_ID
from tests.helpers import signed_meta


def _row(n: int, **overrides: Any) -> dict[str, Any]:
    values = {"source": "meta", "channel_id": None, "received_at": utcnow(), "remote_addr": f"10.0.0.{n}",
              "headers": {"X-Test": str(n)}, "body": f"body-{n}".encode(), "verification": "valid",
              "verification_detail": None, "status": "rejected", "attempts": 0, "next_attempt_at": None,
              "error": None if n % 2 else f"error {n}", "processed_at": None, "stats": {}}
    values.update(overrides)
    return values


def test_a_group_of_rows_gets_each_row_its_own_id(app: Any, world: Any) -> None:
    """Several waiting requests written in one statement: every waiter gets the id of ITS row."""
    committer = GroupCommitter()
    batch = [_Pending(_row(n)) for n in range(7)]
    with app.app_context():
        committer._commit(batch)
        assert all(p.error is None and p.done.is_set() for p in batch)
        ids = [p.event_id for p in batch]
        assert len(set(ids)) == 7
        stored = {e.id: e for e in db.session.execute(select(WebhookEvent).where(WebhookEvent.id.in_(ids))).scalars()}
        for n, event_id in enumerate(ids):
            event = stored[event_id]
            assert (event.body, event.remote_addr) == (f"body-{n}".encode(), f"10.0.0.{n}")
            assert event.headers == {"X-Test": str(n)}
            assert event.error == (None if n % 2 else f"error {n}")
            assert (event.status, event.attempts, event.stats, event.processed_at) == ("rejected", 0, {}, None)
        db.session.remove()


def test_the_nudge_runs_once_per_group_and_only_once_it_is_durable(app: Any, world: Any) -> None:
    committer = GroupCommitter()
    seen: list[int] = []

    def nudge() -> None:  # what a worker would see when the nudge arrives
        session = db.new_session()
        try:
            seen.append(len(session.execute(select(WebhookEvent.id).where(WebhookEvent.id.in_(
                [p.event_id for p in batch]))).all()))
        finally:
            session.close()

    batch = [_Pending(_row(n), nudge) for n in range(3)] + [_Pending(_row(3))]
    with app.app_context():
        committer._commit(batch)
    assert seen == [4]  # once for the group, every row already committed and visible


def test_no_nudge_and_a_503_when_the_group_cannot_be_stored(app: Any, world: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    committer = GroupCommitter()
    calls: list[str] = []

    def broken(rows: list[dict[str, Any]]) -> list[int]:
        raise RuntimeError("database down")

    monkeypatch.setattr(committer, "_insert", broken)
    batch = [_Pending(_row(n), lambda: calls.append("nudged")) for n in range(2)]
    committer._commit(batch)
    assert calls == [] and all(isinstance(p.error, RuntimeError) and p.done.is_set() for p in batch)
    monkeypatch.setattr(webhook_store, "_committer", committer)
    with pytest.raises(StoreUnavailable):
        store_webhook_event(source="meta", body=b"{}", headers={}, verification="valid", status="pending",
                            on_durable=lambda: calls.append("nudged"))
    assert calls == []


def test_a_failing_nudge_does_not_fail_the_stored_events(app: Any, world: Any) -> None:
    committer = GroupCommitter()

    def nudge() -> None:
        raise ConnectionError("redis down")

    batch = [_Pending(_row(n), nudge) for n in range(2)]
    with app.app_context():
        committer._commit(batch)
    assert all(p.error is None and p.event_id for p in batch)


def test_a_webhook_is_answered_after_its_nudge_which_finds_it_stored(app: Any, client: Any, world: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import inbox.jobs

    nudges: list[tuple[str, str, int]] = []

    def enqueue(func: Any, *args: Any, queue: str = "default", delay: float = 0.0) -> None:
        session = db.new_session()
        try:
            stored = len(session.execute(select(WebhookEvent.id)).all())  # (the reconciler may drain it already)
        finally:
            session.close()
        nudges.append((func.__name__, queue, stored))

    monkeypatch.setattr(inbox.jobs, "enqueue", enqueue)
    raw, headers = signed_meta(messenger_message_payload(PAGE_ID, "psid-nudge", "nudge me", mid="m_nudge"))
    response = client.post("/webhooks/meta", data=raw, headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "EVENT_RECEIVED" and isinstance(body["event_id"], int)
    assert response.mimetype == "application/json"
    drain_nudges = [n for n in nudges if n[0] == "drain_webhook_events"]  # (the reconciler may enqueue others)
    assert drain_nudges == [("drain_webhook_events", "ingest", 1)]
    forged = client.post("/webhooks/meta", data=raw, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert forged.status_code == 403  # a rejected event is not for the drain:
    assert [n for n in nudges if n[0] == "drain_webhook_events"] == drain_nudges


def test_every_group_size_runs_one_prepared_statement_on_postgresql(app: Any, world: Any) -> None:
    """The group INSERT has one text whatever the group's size (one array per column), so psycopg converts it
    once and the server prepares it: a VALUES list per size was re-parsed in Python on every group."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("prepared statements: PostgreSQL's committer connection only")
        committer = GroupCommitter()
        for size in range(1, 9):
            batch = [_Pending(_row(n, headers={"size": size, "quote": 'a "b" \\ c'})) for n in range(size)]
            committer._commit(batch)
            assert all(p.error is None for p in batch)
        driver = committer._pg._driver
        prepared = driver.execute("SELECT count(*) FROM pg_prepared_statements "
                                  "WHERE statement LIKE 'INSERT INTO webhook_events%'").fetchone()[0]
        assert prepared == 1
        stored = db.session.execute(select(WebhookEvent.headers).where(WebhookEvent.remote_addr == "10.0.0.0")
                                    .order_by(WebhookEvent.id.desc()).limit(1)).scalar_one()
        assert stored == {"size": 8, "quote": 'a "b" \\ c'}
        committer._pg.discard()
        db.session.remove()


def test_the_committer_thread_is_started_once_and_again_after_a_fork_or_its_end(app: Any, world: Any) -> None:
    """The thread check on every webhook is a flag (`concurrency.ProcessThread`), not Thread.is_alive() (a lock
    under gevent): one thread for every store of a process, a new one in a forked child (the flag holds its
    parent's pid) and after the thread ended (the flag is cleared as it ends), so no webhook ever waits for a
    thread that is not there."""
    import os

    committer = GroupCommitter()

    def store(n: int) -> int:
        committer._thread.ensure()
        pending = _Pending(_row(n))
        committer._queue.put(pending)
        assert pending.done.wait(10) and pending.error is None
        assert pending.event_id is not None
        return pending.event_id

    with app.app_context():
        first_ids = [store(n) for n in range(3)]
        first = committer._thread.thread
        assert first is not None and first.is_alive() and committer._thread._running_in == os.getpid()
        assert len(set(first_ids)) == 3

        committer._thread._running_in = os.getpid() + 1  # what a child forked from this process sees
        store(4)
        assert committer._thread.thread is not first and committer._thread.thread.is_alive()
        second = committer._thread.thread

        def end(batch: list[_Pending]) -> None:  # a thread ending despite _commit answering every error
            for p in batch:
                p.error = RuntimeError("ended")
                p.done.set()
            raise SystemExit

        committer._commit = end  # type: ignore[method-assign]
        committer._thread.ensure()
        ended = _Pending(_row(5))
        committer._queue.put(ended)
        assert ended.done.wait(10)
        second.join(10)
        assert not second.is_alive() and committer._thread._running_in is None
        del committer._commit  # the class's own again
        store(6)
        assert committer._thread.thread is not second and committer._thread.thread.is_alive()
        db.session.remove()
