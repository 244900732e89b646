"""The safety net: what a lost job, a killed worker or a crash left behind is picked up again.

Runs every RECONCILE_INTERVAL_SECONDS: on a thread of the web process in the embedded default, in every
worker process with Redis (running it in several processes at once is safe: each step is idempotent and
claims with SKIP LOCKED / conditional updates, or under the message's locks).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import ColumnElement, delete, func, select

from inbox.background import BACKGROUND_LOCK
from inbox.db import db, utcnow
from inbox.models import Message, RealtimeEvent
from inbox.services.locking import locked_message

log = logging.getLogger(__name__)
STUCK_SENDING_AFTER = timedelta(minutes=2)
LOST_SEND_AFTER = timedelta(seconds=30)
KEEP_REALTIME_EVENTS = timedelta(hours=24)


def reconcile_once() -> dict[str, int]:
    """Drain pending webhook events, re-enqueue due sends, flag interrupted sends, wake snoozed conversations,
    prune old live events, compact the view counters. Returns counts of what it did."""
    from inbox.jobs import SEND, enqueue
    from inbox.jobs.tasks import send_message
    from inbox.services.conversations import wake_snoozed
    from inbox.services.ingest import drain_webhook_events

    report = {"events": drain_webhook_events()}
    now = utcnow()
    with db.transaction() as session:
        due = session.execute(select(Message.id).where(
            Message.delivery_status == "queued",
            ((Message.next_attempt_at.is_(None)) & (Message.platform_time < now - LOST_SEND_AFTER))
            | (Message.next_attempt_at < now - timedelta(seconds=5))).limit(500)).scalars().all()
    for message_id in due:
        enqueue(send_message, message_id, queue=SEND)
    report["sends_requeued"] = len(due)
    claimed_before = now - STUCK_SENDING_AFTER
    with db.transaction() as session:
        stuck = session.execute(select(Message.id, Message.conversation_id).where(
            Message.delivery_status == "sending", _claimed_at() < claimed_before).limit(500)).all()
    report["sends_interrupted"] = sum(_mark_interrupted(message_id, conversation_id, claimed_before)
                                      for message_id, conversation_id in stuck)
    with db.transaction() as session:
        report["snoozes_ended"] = wake_snoozed(session, now)
    from inbox.services.assignment import reconcile_assignment
    report.update(reconcile_assignment(now))
    with db.transaction() as session:
        session.execute(delete(RealtimeEvent).where(RealtimeEvent.created_at < now - KEEP_REALTIME_EVENTS))
    from inbox.services.view_counts import compact
    with db.transaction() as session:  # fold the view counters' deltas into their base rows
        report["view_counts_compacted"] = compact(session)
    return report


def _claimed_at() -> ColumnElement[datetime]:
    """When the send now `sending` was claimed: sending_since, set by the claim. Not platform_time (when the
    message was written): a retry after a backoff, or a send queued for a while, is claimed minutes after it and
    would be called interrupted while it runs. Rows claimed before sending_since was recorded have it NULL:
    their writing time is all there is."""
    return func.coalesce(Message.sending_since, Message.platform_time)


def _mark_interrupted(message_id: int, conversation_id: int, claimed_before: datetime) -> bool:
    """Marks a send stuck in `sending` (claimed before `claimed_before`) as `unknown`; returns whether it did.
    Under the locks a send's outcome, an echo and a receipt take (`locked_message`), and only if, once they are
    held, it is still `sending` from that same old claim: the send job finishing at this moment, or its echo,
    has committed meanwhile and is not overwritten; nor is a retry that claimed it again since it was selected
    (its outcome put it back in the queue). One transaction per message, so no transaction holds two
    conversations' locks."""
    from inbox.services.delivery import apply_outcome

    with db.transaction() as session:
        message, _conversation = locked_message(session, message_id, conversation_id)
        if message.delivery_status != "sending" or (message.sending_since or message.platform_time) >= claimed_before:
            return False
        apply_outcome(session, message, "unknown", "sending was interrupted: the platform may have received this "
                                                   "message; check it before sending again")
        return True


def run_forever(app: Flask, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        with BACKGROUND_LOCK, app.app_context():
            try:
                reconcile_once()
            except Exception:  # keep the safety net alive through a database outage
                log.exception("reconcile failed; will try again in %.1fs", interval)
            finally:
                db.session.remove()


def start_reconciler_thread(app: Flask) -> threading.Event:
    stop = threading.Event()
    interval = app.extensions["relais.settings"].reconcile_interval_seconds
    threading.Thread(target=run_forever, args=(app, stop, interval), name="relais-reconciler", daemon=True).start()
    return stop


def start_embedded_reconciler(app: Flask) -> None:
    settings = app.extensions["relais.settings"]
    if settings.embedded and settings.embedded_worker:
        app.extensions["relais.reconciler_stop"] = start_reconciler_thread(app)
