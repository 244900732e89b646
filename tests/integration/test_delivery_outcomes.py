"""A send's outcome is recorded without losing what the platform reported while the send was under way.

While the platform call runs, a drain (in this process or another worker) may apply the echo of that very send
and its read receipt. Recording the outcome takes the conversation's row lock (as those drains do), reads the
message fresh, and only moves its status forward: a read message stays read, a receipt kept on the conversation
applies at once, and a send the platform proved is never queued again. Runs on SQLite, and on PostgreSQL with
RELAIS_TEST_DB=postgresql (the interleaving test holds the drain inside the recording transaction).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from sqlalchemy import select, text

from adapters.base import PlatformError, SendResult
from inbox.background import BACKGROUND_LOCK
from inbox.db import db, utcnow
from inbox.demo.fake_meta import (messaging_echo, messaging_read, messenger_message_payload, meta_json, page_entry,
                                  page_payload)
from inbox.models import Conversation, Message
from inbox.services import delivery, ingest
from inbox.services.webhook_store import store_webhook_event
from inbox.webhooks import app_secret_fingerprint
from tests.factories import APP_SECRET, PAGE_ID

PSID = "psid-delivery"
KEY = "key-delivery"
MID = "m_ours"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _store(payload: dict[str, Any]) -> int:
    """Stores a verified Messenger webhook as the ack path does, without nudging a drain."""
    return store_webhook_event(source="meta", body=meta_json(payload), headers={}, verification="valid",
                               status="pending", detail=app_secret_fingerprint(APP_SECRET))


def _messaging(item: dict[str, Any]) -> dict[str, Any]:
    return page_payload(page_entry(PAGE_ID, messaging=[item]))


def _drain(app: Any, *payloads: dict[str, Any]) -> None:
    for payload in payloads:
        _store(payload)
    with app.app_context():
        ingest.drain_webhook_events(linger=0)
        db.session.remove()


@pytest.fixture
def reply(app: Any, world: Any) -> Any:
    """A customer's DM (30 s ago) and our queued reply to it (25 s ago); the periodic reconciler is held off.
    Yields (message id, the time of our reply)."""
    t0 = utcnow() - timedelta(seconds=30)
    with BACKGROUND_LOCK:
        _drain(app, messenger_message_payload(PAGE_ID, PSID, "Bonjour", mid="m_customer", ts_ms=_ms(t0)))
        with app.app_context():
            conversation = db.session.execute(select(Conversation).where(
                Conversation.thread_key.endswith(PSID))).scalar_one()
            at = t0 + timedelta(seconds=5)
            ours = Message(conversation_id=conversation.id, channel_id=conversation.channel_id, direction="out",
                           kind="message", reply_type="reply", author_type="agent", author_name="Agent",
                           text="On s'en occupe", platform_time=at, received_at=at, delivery_status="queued",
                           idempotency_key=KEY, attachments=[], edit_history=[], extra={})
            db.session.add(ours)
            db.session.commit()
            message_id = ours.id
            db.session.remove()
        yield message_id, at


def _stored(app: Any, message_id: int) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id)
        db.session.expunge(message)
        db.session.remove()
        return message


def _deliver(app: Any, message_id: int) -> str | None:
    with app.app_context():
        return delivery.deliver_message(message_id)


def _send_with(monkeypatch: pytest.MonkeyPatch, during: Callable[[], None], outcome: Any) -> None:
    """The platform call runs `during` (what drains apply meanwhile), then answers `outcome` (or raises it)."""
    def send(_request: Any) -> SendResult:
        during()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    monkeypatch.setattr(delivery, "_send", send)


def test_a_read_receipt_applied_during_the_send_makes_it_read_at_once(app: Any, reply: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The receipt came while our reply was `sending` (not sent as far as we knew): it is kept on the
    conversation, and recording the send applies it, as applying the echo would."""
    message_id, at = reply
    watermark = at + timedelta(seconds=10)
    _send_with(monkeypatch, lambda: _drain(app, _messaging(messaging_read(PAGE_ID, PSID, _ms(watermark)))),
               SendResult(external_id=MID))
    assert _deliver(app, message_id) == "read"
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id) == ("read", MID)
    assert message.read_at == datetime.fromtimestamp(_ms(watermark) / 1000, timezone.utc)
    assert message.sent_at is not None and message.delivered_at is not None


def test_a_send_its_echo_proved_is_never_queued_again(app: Any, reply: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform took the message (its echo is applied meanwhile) but answered with a transient error: the
    message stays sent, and no retry is enqueued (it would send it twice)."""
    message_id, at = reply
    echo = _messaging(messaging_echo(PAGE_ID, PSID, "On s'en occupe", mid=MID, metadata=KEY, ts_ms=_ms(at)))
    _send_with(monkeypatch, lambda: _drain(app, echo),
               PlatformError("(#2) Service temporarily unavailable", code=2, retryable=True))
    enqueued: list[Any] = []
    monkeypatch.setattr("inbox.jobs.enqueue", lambda *args, **kwargs: enqueued.append(args))
    assert _deliver(app, message_id) == "sent"
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id, message.delivery_error) == ("sent", MID, None)
    assert enqueued == []


def _lock_wait_or_done(thread: threading.Thread, timeout: float = 10.0) -> bool:
    """Until `thread` ends (False) or some session of this database waits on a lock (True)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return False
        with db.engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar():
                return True
        time.sleep(0.02)
    raise AssertionError("the concurrent drain neither finished nor waited for a lock")


def test_echo_and_read_receipt_committed_while_the_send_is_recorded(app: Any, reply: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker applies the echo and the read receipt just as this one records the platform's answer. The
    recording transaction has read the message when the drain runs: the drain must wait for it (the
    conversation's lock), then mark it read. Without the lock, the drain commits `read` and the recording
    writes `sent` over it."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the drain cannot run inside the recording transaction")
    message_id, at = reply
    _send_with(monkeypatch, lambda: None, SendResult(external_id=MID))
    errors: list[BaseException] = []

    def other_worker() -> None:
        try:
            with app.app_context():
                ingest._drain_one_batch(10)  # as another process would (this process's drain lock bypassed)
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    drain = threading.Thread(target=other_worker, name="other-worker")
    waited: list[bool] = []
    original = delivery._take_external_id

    def take_external_id(session: Any, message: Message, external_id: str) -> None:
        if not drain.is_alive() and not waited:  # inside the recording transaction, once
            _store(_messaging(messaging_echo(PAGE_ID, PSID, "On s'en occupe", mid=MID, metadata=KEY,
                                             ts_ms=_ms(at))))
            _store(_messaging(messaging_read(PAGE_ID, PSID, _ms(at + timedelta(seconds=10)))))
            drain.start()
            waited.append(_lock_wait_or_done(drain))
        original(session, message, external_id)

    monkeypatch.setattr(delivery, "_take_external_id", take_external_id)
    _deliver(app, message_id)
    drain.join(20)
    assert not errors, errors
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id) == ("read", MID)
    assert waited == [True]  # the drain waited for the recording to commit
