"""Read and delivery receipts applied whatever the order of the receipt and the outbound message it covers.

A Messenger receipt carries a watermark: everything the page sent up to that time is read (or delivered). The
drain keeps the latest watermark of each kind on the conversation, so an outbound message stored after the
receipt (its echo, or our own send whose echo comes later) is marked at once. Across worker processes the
receipt and the echo may be applied by two drains at the same time: both take the conversation's row lock
first, so whichever commits second sees the other (the PostgreSQL test below holds one drain open to prove it).
Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from sqlalchemy import select, text, update

from inbox.background import BACKGROUND_LOCK
from inbox.db import db, utcnow
from inbox.demo.fake_meta import (
    messaging_delivery,
    messaging_echo,
    messaging_read,
    messenger_message_payload,
    page_entry,
    page_payload,
)
from inbox.models import Conversation, Message, WebhookEvent
from inbox.services import ingest
from tests.factories import PAGE_ID
from tests.helpers import store_verified, two_drains_first_held

PSID = "psid-receipts"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    """A millisecond timestamp as the Meta adapter reads it."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _messaging(item: dict[str, Any]) -> dict[str, Any]:
    return page_payload(page_entry(PAGE_ID, messaging=[item]))


@pytest.fixture
def drains(app: Any, world: Any) -> Callable[[dict[str, Any]], str]:
    """drain(payload) -> the raw event's status: stores one webhook and applies it in a drain of its own.
    The periodic reconciler is held off meanwhile, so each drain takes exactly the events stored before it."""
    def drain(payload: dict[str, Any]) -> str:
        event_id = store_verified(payload)
        with app.app_context():
            ingest.drain_webhook_events(linger=0)
            status = db.session.get(WebhookEvent, event_id).status
            db.session.remove()
            return status
    with BACKGROUND_LOCK:
        yield drain


def _message(app: Any, **where: Any) -> Message:
    with app.app_context():
        message = db.session.execute(select(Message).filter_by(**where)).scalar_one()
        db.session.expunge(message)
        db.session.remove()
        return message


def _conversation_id(app: Any) -> int:
    with app.app_context():
        conversation_id = db.session.execute(select(Conversation.id).where(
            Conversation.thread_key.endswith(PSID))).scalar_one()
        db.session.remove()
        return conversation_id


def test_read_receipt_applied_before_the_echo_it_covers(app: Any, drains: Any) -> None:
    """The order two worker processes can produce: the receipt's drain commits before the echo's."""
    t0 = utcnow() - timedelta(seconds=30)
    assert drains(messenger_message_payload(PAGE_ID, PSID, "Bonjour", mid="m_customer", ts_ms=_ms(t0))) \
        == "processed"
    watermark = t0 + timedelta(seconds=20)
    assert drains(_messaging(messaging_read(PAGE_ID, PSID, _ms(watermark)))) == "processed"
    assert drains(_messaging(messaging_echo(PAGE_ID, PSID, "Answered natively", mid="m_echo",
                                            ts_ms=_ms(t0 + timedelta(seconds=10))))) == "processed"
    echo = _message(app, external_id="m_echo")
    assert echo.direction == "out" and echo.delivery_status == "read"
    assert echo.read_at == _from_ms(_ms(watermark))
    # a later echo (after the watermark) is only sent
    assert drains(_messaging(messaging_echo(PAGE_ID, PSID, "Encore une chose", mid="m_echo_2",
                                            ts_ms=_ms(t0 + timedelta(seconds=25))))) == "processed"
    assert _message(app, external_id="m_echo_2").delivery_status == "sent"


def test_delivery_receipt_applied_before_the_echo_it_covers(app: Any, drains: Any) -> None:
    t0 = utcnow() - timedelta(seconds=30)
    drains(messenger_message_payload(PAGE_ID, PSID, "Bonjour", mid="m_customer", ts_ms=_ms(t0)))
    # the receipt lists the mid too: the watermark is what covers a message not stored yet
    assert drains(_messaging(messaging_delivery(PAGE_ID, PSID, ["m_echo"], _ms(t0 + timedelta(seconds=20))))) \
        == "processed"
    drains(_messaging(messaging_echo(PAGE_ID, PSID, "Answered", mid="m_echo", ts_ms=_ms(t0 + timedelta(seconds=10)))))
    echo = _message(app, external_id="m_echo")
    assert echo.delivery_status == "delivered" and echo.delivered_at is not None and echo.read_at is None
    # then the read receipt, as usual, on the stored message
    drains(_messaging(messaging_read(PAGE_ID, PSID, _ms(t0 + timedelta(seconds=21)))))
    assert _message(app, external_id="m_echo").delivery_status == "read"


def test_our_own_send_recorded_after_the_read_receipt(app: Any, drains: Any) -> None:
    """Our reply was still `sending` when the read receipt was applied; its echo (matched by the idempotency
    key) records it as sent, and the receipt kept on the conversation makes it read."""
    t0 = utcnow() - timedelta(seconds=30)
    drains(messenger_message_payload(PAGE_ID, PSID, "Bonjour", mid="m_customer", ts_ms=_ms(t0)))
    conversation_id = _conversation_id(app)
    with app.app_context():
        ours = Message(conversation_id=conversation_id, channel_id=db.session.get(Conversation, conversation_id)
                       .channel_id, direction="out", kind="message", reply_type="reply", author_type="agent",
                       author_name="Agent", text="On s'en occupe", platform_time=t0 + timedelta(seconds=5),
                       received_at=t0 + timedelta(seconds=5), delivery_status="sending", idempotency_key="key-ours",
                       attachments=[], edit_history=[], extra={})
        db.session.add(ours)
        db.session.commit()
        db.session.remove()
    assert drains(_messaging(messaging_read(PAGE_ID, PSID, _ms(t0 + timedelta(seconds=20))))) == "processed"
    assert _message(app, idempotency_key="key-ours").delivery_status == "sending"  # not sent as far as we know
    drains(_messaging(messaging_echo(PAGE_ID, PSID, "On s'en occupe", mid="m_ours", metadata="key-ours",
                                     ts_ms=_ms(t0 + timedelta(seconds=6)))))
    ours = _message(app, idempotency_key="key-ours")
    assert (ours.external_id, ours.delivery_status) == ("m_ours", "read")
    assert ours.sent_at is not None and ours.delivered_at is not None


def test_an_older_receipt_never_lowers_the_kept_watermark(app: Any, drains: Any) -> None:
    t0 = utcnow() - timedelta(seconds=30)
    drains(messenger_message_payload(PAGE_ID, PSID, "Bonjour", mid="m_customer", ts_ms=_ms(t0)))
    drains(_messaging(messaging_read(PAGE_ID, PSID, _ms(t0 + timedelta(seconds=20)))))
    drains(_messaging(messaging_read(PAGE_ID, PSID, _ms(t0 + timedelta(seconds=5)))))  # late, out of order
    drains(_messaging(messaging_echo(PAGE_ID, PSID, "Réponse", mid="m_echo", ts_ms=_ms(t0 + timedelta(seconds=10)))))
    assert _message(app, external_id="m_echo").delivery_status == "read"


def test_receipt_for_a_thread_not_opened_yet_waits_for_its_echo(app: Any, drains: Any) -> None:
    """The page wrote first (natively): its echo opens the conversation. A read receipt applied before that
    echo has no conversation to keep its watermark on, so it is retried a little later (twice at most)."""
    t0 = utcnow() - timedelta(seconds=30)
    receipt = store_verified(_messaging(messaging_read(PAGE_ID, PSID, _ms(t0 + timedelta(seconds=20)))))
    with app.app_context():
        ingest.drain_webhook_events(linger=0)
        event = db.session.get(WebhookEvent, receipt)
        assert (event.status, event.attempts) == ("failed", 1) and "RetryLater" in event.error
        db.session.remove()
    drains(_messaging(messaging_echo(PAGE_ID, PSID, "Bonjour de la marque", mid="m_first",
                                     ts_ms=_ms(t0 + timedelta(seconds=10)))))
    assert _message(app, external_id="m_first").delivery_status == "sent"
    with app.app_context():  # the retry comes due
        db.session.execute(update(WebhookEvent).where(WebhookEvent.id == receipt).values(next_attempt_at=utcnow()))
        db.session.commit()
        ingest.drain_webhook_events(linger=0)
        assert db.session.get(WebhookEvent, receipt).status == "processed"
        db.session.remove()
    assert _message(app, external_id="m_first").delivery_status == "read"


def test_receipt_for_a_thread_that_never_opens_is_dropped_after_its_retries(app: Any, drains: Any) -> None:
    receipt = store_verified(_messaging(messaging_read(PAGE_ID, PSID, _ms(utcnow()))))
    with app.app_context():
        for _attempt in range(ingest.RECEIPT_RETRIES + 1):
            db.session.execute(update(WebhookEvent).where(WebhookEvent.id == receipt)
                               .values(next_attempt_at=utcnow()))
            db.session.commit()
            ingest.drain_webhook_events(linger=0)
        event = db.session.get(WebhookEvent, receipt)
        assert (event.status, event.attempts) == ("processed", ingest.RECEIPT_RETRIES)
        assert event.stats.get("ignored:receipt_without_thread") == 1
        db.session.remove()


# ---------------------------------------------------------------- two drains at once (two worker processes)
def _wait_for_lock_wait(app: Any, timeout: float = 10.0) -> None:
    """Until some session of this database waits on a row lock (the second drain, on the conversation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            waiting = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND wait_event_type = 'Lock'")).scalar()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second drain never waited for the conversation's lock")


@pytest.mark.parametrize("first", ["echo", "receipt"])
def test_receipt_and_echo_drained_concurrently(app: Any, drains: Any, monkeypatch: pytest.MonkeyPatch,
                                               first: str) -> None:
    """Two drains as two worker processes run them (the per-process drain lock bypassed): the first one is
    held just before its commit; the second must wait for the conversation's lock, then see what the first
    wrote. Without the lock and the kept watermark, the echo stays `sent` in both orders."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its drains never overlap")
    t0 = utcnow() - timedelta(seconds=30)
    drains(messenger_message_payload(PAGE_ID, PSID, "Bonjour", mid="m_customer", ts_ms=_ms(t0)))
    echo = _messaging(messaging_echo(PAGE_ID, PSID, "Réponse", mid="m_echo", ts_ms=_ms(t0 + timedelta(seconds=10))))
    receipt = _messaging(messaging_read(PAGE_ID, PSID, _ms(t0 + timedelta(seconds=20))))
    for payload in ((echo, receipt) if first == "echo" else (receipt, echo)):
        store_verified(payload)  # ids in that order: the first drain claims the first one (batches of one)

    with two_drains_first_held(app, monkeypatch) as errors, app.app_context():
        _wait_for_lock_wait(app)
    assert not errors, errors
    message = _message(app, external_id="m_echo")
    assert message.delivery_status == "read"
    with app.app_context():
        statuses = db.session.execute(select(WebhookEvent.status)).scalars().all()
        conversation = db.session.execute(select(Conversation).where(Conversation.thread_key.endswith(PSID))) \
            .scalar_one()
        assert statuses == ["processed"] * 3
        assert conversation.read_watermark == _from_ms(_ms(t0 + timedelta(seconds=20)))
        db.session.remove()
