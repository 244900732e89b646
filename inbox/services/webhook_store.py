"""Durable storage of raw webhook requests, with group commit.

Each webhook request hands its row to one committer thread per process and waits; the thread writes every
row waiting at that moment in ONE transaction (one fsync) and wakes the requests. So concurrent webhooks
share a commit, and no request is answered before its event is durable.

On PostgreSQL the committer keeps one autocommit connection of its own and writes a group as ONE
`INSERT ... RETURNING id` statement: one round trip per group. Through the pool it took four (the checkout
ping, BEGIN, INSERT, COMMIT) plus SQLAlchemy's per-execution work, all of it on every webhook's ack path.
The statement is `db.json_document_insert`'s: the group's rows as ONE JSON document (`json_populate_recordset`),
the same text and one parameter whatever the group's size, so psycopg converts it once and the server runs it
prepared. A multi-row VALUES list was a new text per group size with 14 parameters per row, which psycopg
re-parses in Python above 50 parameters: 12% of the web process's CPU at 700 single-entry webhooks/s (py-spy);
one array per column (`db.unnest_insert`) had the same text whatever the size, but psycopg dumps each array's
elements one by one in Python: 13% of the web's time holding the GIL at 500 webhooks/s.
Other databases (the embedded SQLite) keep the plain pooled transaction.

A request may also hand a callback to run once its group is durable (the drain nudge): the committer runs
each distinct callback once per group, before waking the requests, so a burst of webhooks nudges the drain
once per commit instead of once per request, and the nudge is sent before any of them is answered.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from inbox.concurrency import ProcessThread, with_queued
from inbox.db import db, json_document_insert, utcnow
from inbox.models import WebhookEvent

log = logging.getLogger(__name__)
MAX_BATCH = 500
STORE_TIMEOUT = 15.0  # Meta gives up after 20 s; answer 503 before that so it retries


class StoreUnavailable(Exception):
    """The database did not take the event: the platform must retry (answer 5xx)."""


@dataclass
class _Pending:
    values: dict[str, Any]
    on_durable: Callable[[], None] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    event_id: int | None = None
    error: BaseException | None = None


class _PostgresWriter:
    """The committer's own autocommit connection: made by the engine (its connect settings apply), then
    detached from the pool, so closing it (or losing it to garbage collection) really closes it and no
    pooled connection is ever handed out in autocommit."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._fairy: Any = None  # the pool's connection proxy, detached
        self._driver: Any = None  # its psycopg connection

    def insert(self, engine: Engine, rows: list[dict[str, Any]]) -> list[int]:
        """Writes `rows` in one statement (atomic, one fsync) and returns their ids in order. The rows go as one
        JSON document (`db.json_document_insert`): psycopg's per-element array dumping was 13% of the web
        process's time holding the GIL at 500 webhooks/s (py-spy), on the ack's path."""
        conn = self._connection(engine)
        sql, params = json_document_insert(engine.dialect, WebhookEvent.__table__, rows, returning=("id",))
        try:
            ids = [r[0] for r in conn.execute(sql, params).fetchall()]
        except Exception:
            self.discard()  # a broken or unknown-state connection: a fresh one for the next group
            raise
        if len(ids) != len(rows):
            raise RuntimeError(f"stored {len(ids)} webhook event(s) for {len(rows)} row(s)")
        return sorted(ids) if len(ids) > 1 else ids

    def _connection(self, engine: Engine) -> Any:
        if self._engine is not engine:  # the app re-initialised the database (tests swap engines)
            self.discard()
        if self._fairy is None:
            fairy = engine.raw_connection()
            try:
                driver = fairy.driver_connection  # read before detaching, which drops the pool record
                fairy.detach()
                driver.autocommit = True
            except Exception:
                fairy.invalidate()
                raise
            self._engine, self._fairy, self._driver = engine, fairy, driver
        return self._driver

    def discard(self) -> None:
        """Closes the connection (the next group opens a new one)."""
        fairy, self._fairy, self._engine, self._driver = self._fairy, None, None, None
        if fairy is not None:
            try:
                fairy.close()  # detached: really closed
            except Exception:  # noqa: BLE001 - already broken: nothing more to release
                log.debug("closing the webhook committer's connection failed", exc_info=True)


class GroupCommitter:
    def __init__(self) -> None:
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._pg = _PostgresWriter()
        self._thread = ProcessThread(self._run, "relais-webhook-commit")  # one per process, forked ones too

    def store(self, values: dict[str, Any], on_durable: Callable[[], None] | None = None) -> int:
        self._thread.ensure()
        pending = _Pending(values, on_durable)
        self._queue.put(pending)
        if not pending.done.wait(STORE_TIMEOUT):
            raise StoreUnavailable("timed out waiting for the database")
        if pending.error is not None:
            raise StoreUnavailable(str(pending.error)) from pending.error
        assert pending.event_id is not None
        return pending.event_id

    def _run(self) -> None:
        while True:  # never returns (_commit answers every error); if it did, the next webhook starts a new thread
            batch = with_queued(self._queue.get(), self._queue, MAX_BATCH)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        """Writes one group, runs its callbacks once it is durable, then wakes every waiter (always)."""
        try:
            ids = self._insert([p.values for p in batch])
            for pending, event_id in zip(batch, ids, strict=True):
                pending.event_id = event_id
        except Exception as exc:  # the database is down or refused: every waiter answers 5xx
            log.error("could not store %d webhook event(s): %s", len(batch), exc)
            for pending in batch:
                pending.error = exc
        else:
            _run_callbacks(batch)
        finally:
            for pending in batch:
                pending.done.set()

    def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        engine = db.engine
        assert engine is not None
        if engine.dialect.name == "postgresql":
            return self._pg.insert(engine, rows)
        with engine.begin() as conn:
            return list(conn.execute(insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True),
                                     rows).scalars().all())


def _run_callbacks(batch: list[_Pending]) -> None:
    """Each distinct callback of the group once; a failing one is logged (the events are durable anyway)."""
    seen: set[Callable[[], None]] = set()
    for pending in batch:
        callback = pending.on_durable
        if callback is None or callback in seen:
            continue
        seen.add(callback)
        try:
            callback()
        except Exception:  # noqa: BLE001 - the reconciler picks stored events up even without the nudge
            log.exception("after-store callback %r failed", callback)


_committer = GroupCommitter()


def store_webhook_event(*, source: str, body: bytes, headers: dict[str, str], verification: str,
                        status: str, detail: str | None = None, channel_id: int | None = None,
                        remote_addr: str | None = None, error: str | None = None,
                        on_durable: Callable[[], None] | None = None) -> int:
    """Durably writes one WebhookEvent (group-committed) and returns its id; StoreUnavailable if the DB fails.

    `on_durable` (e.g. the drain nudge) runs in the committer once the event's group is committed, at most
    once per group, before this returns."""
    return _committer.store({
        "source": source, "channel_id": channel_id, "received_at": utcnow(), "remote_addr": remote_addr,
        "headers": headers, "body": body, "verification": verification, "verification_detail": detail,
        "status": status, "attempts": 0, "next_attempt_at": None, "error": error, "processed_at": None,
        "stats": {},
    }, on_durable)
