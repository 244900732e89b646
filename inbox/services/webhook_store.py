"""Durable storage of raw webhook requests, with group commit.

Each webhook request hands its row to one committer thread per process and waits; the thread writes every
row waiting at that moment in ONE transaction (one fsync) and wakes the requests. So concurrent webhooks
share a commit, and no request is answered before its event is durable.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert

from inbox.db import db, utcnow
from inbox.models import WebhookEvent

log = logging.getLogger(__name__)
MAX_BATCH = 500
STORE_TIMEOUT = 15.0  # Meta gives up after 20 s; answer 503 before that so it retries


class StoreUnavailable(Exception):
    """The database did not take the event: the platform must retry (answer 5xx)."""


@dataclass
class _Pending:
    values: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    event_id: int | None = None
    error: BaseException | None = None


class GroupCommitter:
    def __init__(self) -> None:
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="relais-webhook-commit", daemon=True)
                    self._thread.start()

    def store(self, values: dict[str, Any]) -> int:
        self._ensure_thread()
        pending = _Pending(values)
        self._queue.put(pending)
        if not pending.done.wait(STORE_TIMEOUT):
            raise StoreUnavailable("timed out waiting for the database")
        if pending.error is not None:
            raise StoreUnavailable(str(pending.error)) from pending.error
        assert pending.event_id is not None
        return pending.event_id

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                assert db.engine is not None
                with db.engine.begin() as conn:
                    ids = conn.execute(insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True),
                                       [p.values for p in batch]).scalars().all()
                for pending, event_id in zip(batch, ids, strict=True):
                    pending.event_id = event_id
            except Exception as exc:  # the database is down or refused: every waiter answers 5xx
                log.error("could not store %d webhook event(s): %s", len(batch), exc)
                for pending in batch:
                    pending.error = exc
            finally:
                for pending in batch:
                    pending.done.set()


_committer = GroupCommitter()


def store_webhook_event(*, source: str, body: bytes, headers: dict[str, str], verification: str,
                        status: str, detail: str | None = None, channel_id: int | None = None,
                        remote_addr: str | None = None, error: str | None = None) -> int:
    """Durably writes one WebhookEvent (group-committed) and returns its id; StoreUnavailable if the DB fails."""
    return _committer.store({
        "source": source, "channel_id": channel_id, "received_at": utcnow(), "remote_addr": remote_addr,
        "headers": headers, "body": body, "verification": verification, "verification_detail": detail,
        "status": status, "attempts": 0, "next_attempt_at": None, "error": error, "processed_at": None,
        "stats": {},
    })
