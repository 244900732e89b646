"""The SLA timer: sleeps until the earliest `sla_clocks.next_deadline_at`, then re-evaluates the conversations
whose deadline has come, which pushes sla.warning / sla.breached (services.sla.refresh_conversation).

No scan: one indexed MIN() to know when to wake, one indexed range to know what is due. A deadline created by
this process wakes the timer early (after its commit); one created by another process is seen within
`max_sleep` (short in Redis mode, where web processes change statuses while workers run the timer).
Claims are conversation row locks taken with FOR UPDATE SKIP LOCKED on PostgreSQL, so several workers never
push twice; the pushed warning / breach is recorded on the clock row in the same transaction as the push, so
a breach that fell due while everything was down is pushed once on start, and never again.

Runs on a thread of the web process in the embedded mode (`start_embedded_sla_timer`), next to the
reconciler in every worker process with Redis (`start_sla_timer`).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inbox.background import BACKGROUND_LOCK
from inbox.db import db, utcnow
from inbox.models import Conversation, SlaClock

log = logging.getLogger(__name__)
BATCH = 100
EMBEDDED_MAX_SLEEP = 60.0   # one process: every new deadline wakes the timer itself
SHARED_MAX_SLEEP = 1.0      # several processes: an index-only MIN() a second catches the others' deadlines
RETRY_AFTER_ERROR = timedelta(seconds=30)
_WAKE_AT = "relais.sla_wake_at"
_timers: set["SlaTimer"] = set()
_timers_lock = threading.Lock()


def fire_due(now: datetime | None = None) -> int:
    """Re-evaluate the conversations with a deadline at or before `now`, in batches; returns how many."""
    from inbox.services.sla import refresh_conversation

    done = 0
    while True:
        now_ = now or utcnow()
        with db.transaction() as session:
            # the earliest due clocks first, read from the next_deadline_at index: a large backlog (after an
            # outage) costs one index range per batch, not a sort of every due clock
            due = list(session.execute(select(SlaClock.conversation_id).where(SlaClock.next_deadline_at <= now_)
                                       .order_by(SlaClock.next_deadline_at).limit(BATCH)).scalars())
            query = select(Conversation).where(Conversation.id.in_(set(due))).order_by(Conversation.id)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=Conversation)
            conversations = list(session.execute(query).scalars())
            for conversation in conversations:
                try:
                    with session.begin_nested():
                        refresh_conversation(session, conversation, "timer")
                except Exception:  # one broken conversation must not hold back the others' alerts
                    log.exception("SLA refresh of conversation %s failed", conversation.id)
                # a deadline the refresh could not move (failed evaluation) is retried later, not in a loop
                session.execute(update(SlaClock).where(SlaClock.conversation_id == conversation.id,
                                                       SlaClock.next_deadline_at <= now_)
                                .values(next_deadline_at=now_ + RETRY_AFTER_ERROR)
                                .execution_options(synchronize_session=False))
        done += len(conversations)
        if len(due) < BATCH or not conversations:
            return done


def earliest_deadline() -> datetime | None:
    with db.transaction() as session:
        return session.execute(select(func.min(SlaClock.next_deadline_at))).scalar()


class SlaTimer:
    """A thread that fires SLA deadlines on time. `stop()` returns once the thread has ended."""

    def __init__(self, app: Flask, max_sleep: float) -> None:
        self.app = app
        self.max_sleep = max_sleep
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._planned: datetime | None = None
        self._thread = threading.Thread(target=self._run, name="relais-sla-timer", daemon=True)

    def start(self) -> "SlaTimer":
        with _timers_lock:
            _timers.add(self)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with _timers_lock:
            _timers.discard(self)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def notify(self, at: datetime) -> None:
        planned = self._planned
        if planned is None or at < planned:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            wait = self.max_sleep
            with BACKGROUND_LOCK, self.app.app_context():
                try:
                    fire_due()
                    earliest = earliest_deadline()
                    if earliest is not None:
                        wait = min(wait, max(0.01, (earliest - utcnow()).total_seconds()))
                except Exception:  # keep the alerts alive through a database outage
                    log.exception("SLA timer failed; trying again in %.0fs", RETRY_AFTER_ERROR.total_seconds())
                    wait = min(self.max_sleep, RETRY_AFTER_ERROR.total_seconds())
                finally:
                    db.session.remove()
            self._planned = utcnow() + timedelta(seconds=wait)
            self._wake.wait(wait)
            self._planned = None


def wake_after_commit(session: Session, at: datetime) -> None:
    """Once `session` commits, wake this process' timers if `at` is earlier than they planned to wake."""
    current = session.info.get(_WAKE_AT)
    if current is None or at < current:
        session.info[_WAKE_AT] = at


@sa_event.listens_for(Session, "after_commit")
def _wake_timers(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint committed: the real commit is still to come
        return
    at = session.info.pop(_WAKE_AT, None)
    if at is None:
        return
    with _timers_lock:
        timers = list(_timers)
    for timer in timers:
        timer.notify(at)


@sa_event.listens_for(Session, "after_rollback")
def _forget_wake(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_WAKE_AT, None)


def start_sla_timer(app: Flask, max_sleep: float = SHARED_MAX_SLEEP) -> SlaTimer:
    """Start the timer thread (worker processes: `python -m inbox.jobs.worker`)."""
    timer = SlaTimer(app, max_sleep).start()
    app.extensions["relais.sla_timer"] = timer
    return timer


def start_embedded_sla_timer(app: Flask) -> None:
    """In the embedded mode, the web process runs the timer (like the reconciler)."""
    settings = app.extensions["relais.settings"]
    if settings.embedded and settings.embedded_worker:
        start_sla_timer(app, EMBEDDED_MAX_SLEEP)
