"""A send's outcome is recorded without losing what the platform reported while the send was under way.

While the platform call runs, a drain (in this process or another worker) may apply the echo of that very send
and its read receipt. Recording the outcome takes the conversation's row lock (as those drains do), reads the
message fresh, and only moves its status forward: a read message stays read, a receipt kept on the conversation
applies at once, and a send the platform proved is never queued again. The echo and the reconciler's verdict
on a send stuck in `sending` take the same locks in the same order and decide from the status committed once
they hold them. Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql (the interleaving tests hold
one transaction open while the other waits for its locks, in both orders).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from sqlalchemy import event, select, text, update

from adapters.base import PlatformError, SendResult
from inbox.background import BACKGROUND_LOCK
from inbox.db import db, utcnow
from inbox.demo.fake_meta import messaging_echo, messaging_read, messenger_message_payload, page_entry, page_payload
from inbox.jobs import flush_gathered
from inbox.models import Conversation, Message
from inbox.services import delivery, ingest
from inbox.services.reconciler import STUCK_SENDING_AFTER, _mark_interrupted, reconcile_once
from tests.factories import PAGE_ID
from tests.helpers import store_verified

PSID = "psid-delivery"
KEY = "key-delivery"
MID = "m_ours"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _messaging(item: dict[str, Any]) -> dict[str, Any]:
    return page_payload(page_entry(PAGE_ID, messaging=[item]))


def _drain(app: Any, *payloads: dict[str, Any]) -> None:
    for payload in payloads:
        store_verified(payload)
    with app.app_context():
        ingest.drain_webhook_events(linger=0)
        db.session.remove()
    flush_gathered()  # a new customer's name lookup now, not in the middle of a test that watches the queue


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
            store_verified(_messaging(messaging_echo(PAGE_ID, PSID, "On s'en occupe", mid=MID, metadata=KEY,
                                             ts_ms=_ms(at))))
            store_verified(_messaging(messaging_read(PAGE_ID, PSID, _ms(at + timedelta(seconds=10)))))
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


# ---------------------------------------------------------------- an echo or the reconciler racing a send's outcome
class _HeldAtMessageWrite:
    """Holds the transaction of the thread named `thread` open just after its first UPDATE of a message once
    `armed` is set (the locks it took before writing stay held), until `release` is set (at the latest on exit)."""

    def __init__(self, thread: str) -> None:
        self.thread = thread
        self.armed, self.holding, self.release = threading.Event(), threading.Event(), threading.Event()
        self._listener = self._after_execute

    def __enter__(self) -> _HeldAtMessageWrite:
        event.listen(db.engine, "after_cursor_execute", self._listener)
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.release.set()
        event.remove(db.engine, "after_cursor_execute", self._listener)

    def _after_execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (threading.current_thread().name == self.thread and self.armed.is_set() and not self.holding.is_set()
                and statement.lstrip().upper().startswith("UPDATE MESSAGES")):
            self.holding.set()
            self.release.wait(15)


def _worker(app: Any, name: str, work: Callable[[], Any], done: dict[str, Any]) -> threading.Thread:
    """`work` on a thread of its own, as another worker process runs it: its result in done[name], an
    exception in done["errors"]."""
    def run() -> None:
        try:
            with app.app_context():
                done[name] = work()
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            done.setdefault("errors", []).append(exc)
    return threading.Thread(target=run, name=name)


def _echo_of_ours(at: datetime) -> dict[str, Any]:
    return _messaging(messaging_echo(PAGE_ID, PSID, "On s'en occupe", mid=MID, metadata=KEY, ts_ms=_ms(at)))


SEND_OUTCOMES: dict[str, Any] = {
    "sent": SendResult(external_id=MID),
    "queued": PlatformError("(#2) Service temporarily unavailable", code=2, retryable=True),
    "unknown": PlatformError("read timeout", maybe_delivered=True),
    "failed": PlatformError("(#100) Invalid parameter", code=100),
}


@pytest.mark.parametrize("first", ["send", "echo"])
@pytest.mark.parametrize("outcome", list(SEND_OUTCOMES))
def test_echo_applied_while_the_send_outcome_is_recorded(app: Any, reply: Any, monkeypatch: pytest.MonkeyPatch,
                                                          outcome: str, first: str) -> None:
    """Another worker applies the echo of our send while this one records the platform's answer (taken, a
    retry, no answer, a refusal): whichever holds the conversation's lock first, the other waits for it, then
    decides from what the first committed. The echo makes the send `sent` once: the outcome's error is cleared,
    the first sent_at is kept, and the retry queued before the echo was known sends nothing. (An echo that read
    our message before waiting for the lock left the refusal's error on a sent message, and moved sent_at.)"""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the echo's drain cannot run inside the send's transaction")
    message_id, at = reply
    enqueued: list[Any] = []
    monkeypatch.setattr("inbox.jobs.enqueue", lambda *args, **kwargs: enqueued.append(args))
    done: dict[str, Any] = {}
    drain = _worker(app, "echo-drain", lambda: ingest._drain_one_batch(10), done)
    send = _worker(app, "send-job", lambda: delivery.deliver_message(message_id), done)
    held = _HeldAtMessageWrite("send-job" if first == "send" else "echo-drain")
    sends: list[bool] = []

    def platform_call() -> None:
        assert not sends, "sent twice"
        sends.append(True)
        held.armed.set()
        if first == "echo":  # the echo is applied (and its drain held open) before the answer comes back
            store_verified(_echo_of_ours(at))
            drain.start()
            assert held.holding.wait(10), done

    _send_with(monkeypatch, platform_call, SEND_OUTCOMES[outcome])
    started = utcnow()
    with app.app_context(), held:
        send.start()
        if first == "send":  # the outcome is written (its transaction held open) when the echo is drained
            assert held.holding.wait(10), done
            store_verified(_echo_of_ours(at))
            drain.start()
        waited = _lock_wait_or_done(drain if first == "send" else send)
        held.release.set()
        for thread in (send, drain):
            thread.join(20)
    assert not done.get("errors"), done
    assert waited  # the second one waited for the first one's locks
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id, message.delivery_error) == ("sent", MID, None)
    if first == "send" and outcome == "sent":
        assert message.sent_at >= started  # as the send recorded it
    else:
        assert message.sent_at == datetime.fromtimestamp(_ms(at) / 1000, timezone.utc)  # as the echo said
    assert len(enqueued) == (1 if first == "send" and outcome == "queued" else 0)
    for _job in enqueued:  # the retry queued before the echo was known
        assert _deliver(app, message_id) is None
    assert sends == [True]


def _stuck(app: Any, message_id: int, age: timedelta, claimed: timedelta | None = None) -> datetime:
    """Our reply claimed by a send job (`sending`), written `age` ago and claimed `claimed` ago (None: claimed
    before the claim time was recorded, sending_since NULL); returns when it was written."""
    at = utcnow() - age
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id).values(
            delivery_status="sending", delivery_attempts=1, platform_time=at,
            sending_since=None if claimed is None else utcnow() - claimed))
        db.session.commit()
        db.session.remove()
    return at


def _reconcile(app: Any) -> dict[str, int]:
    with app.app_context():
        report = reconcile_once()
        db.session.remove()
        return report


def test_a_send_interrupted_long_ago_is_unknown_until_its_echo_proves_it(app: Any, reply: Any) -> None:
    message_id, _at = reply
    _stuck(app, message_id, STUCK_SENDING_AFTER - timedelta(seconds=30))
    assert _reconcile(app)["sends_interrupted"] == 0  # a send under way
    assert _stored(app, message_id).delivery_status == "sending"
    at = _stuck(app, message_id, STUCK_SENDING_AFTER + timedelta(seconds=30))
    assert _reconcile(app)["sends_interrupted"] == 1
    assert _reconcile(app)["sends_interrupted"] == 0
    message = _stored(app, message_id)
    assert message.delivery_status == "unknown" and "interrupted" in message.delivery_error
    _drain(app, _echo_of_ours(at))
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id, message.delivery_error) == ("sent", MID, None)


@pytest.mark.parametrize("first", ["reconciler", "other"])
@pytest.mark.parametrize("other", ["send-job", "echo-drain"])
def test_reconciler_and_a_send_proved_at_the_same_moment(app: Any, reply: Any, other: str, first: str) -> None:
    """The reconciler finds our send stuck in `sending` just as the send job records the platform's answer, or
    as another worker applies its echo. Whichever holds the conversation's lock first, the other waits for it:
    the reconciler, second, finds the send proved and leaves it; first, its `unknown` is then made `sent`.
    (Without the locks, the reconciler wrote `unknown` over the committed `sent`.)"""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the reconciler cannot run inside another transaction")
    message_id, _at = reply
    at = _stuck(app, message_id, STUCK_SENDING_AFTER + timedelta(seconds=30))
    conversation_id = _stored(app, message_id).conversation_id
    done: dict[str, Any] = {}
    reconciler = _worker(app, "reconciler", reconcile_once, done)
    proving = _worker(app, other, (lambda: ingest._drain_one_batch(10)) if other == "echo-drain" else
                      (lambda: delivery._record_success(message_id, conversation_id, SendResult(external_id=MID))),
                      done)
    threads = (reconciler, proving) if first == "reconciler" else (proving, reconciler)
    with app.app_context(), _HeldAtMessageWrite(threads[0].name) as held:
        held.armed.set()
        if other == "echo-drain" and first == "other":
            store_verified(_echo_of_ours(at))
        threads[0].start()
        assert held.holding.wait(10), done
        if other == "echo-drain" and first == "reconciler":  # stored now: the reconciler's own drain missed it
            store_verified(_echo_of_ours(at))
        threads[1].start()
        waited = _lock_wait_or_done(threads[1])
        held.release.set()
        for thread in threads:
            thread.join(20)
    assert not done.get("errors"), done
    assert waited  # the second one waited for the first one's locks
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id, message.delivery_error) == ("sent", MID, None)
    assert done["reconciler"]["sends_interrupted"] == (1 if first == "reconciler" else 0)


# ---------------------------------------------------------------- stuck since the claim, not since the writing
def test_a_retry_claimed_long_after_the_message_was_written_is_not_interrupted(
        app: Any, reply: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply written 10 minutes ago whose first attempt was refused (429: retry later) is claimed again now. The
    reconciler runs (in another worker) while the platform call is under way: the send is 2 minutes old only
    counted from the writing, so it is left `sending`. (Counted from platform_time, it was marked `unknown`, and
    the agent told to check the platform before sending again, while the send was running.)"""
    message_id, _at = reply
    written = utcnow() - timedelta(minutes=10)
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id).values(
            platform_time=written, received_at=written, delivery_attempts=1, delivery_error="retrying after: 429",
            next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        db.session.remove()
    done: dict[str, Any] = {}
    during: list[Message] = []

    def platform_call() -> None:  # the periodic reconciler of another worker runs meanwhile
        other = _worker(app, "reconciler", reconcile_once, done)
        other.start()
        other.join(20)
        during.append(_stored(app, message_id))

    _send_with(monkeypatch, platform_call, SendResult(external_id=MID))
    claimed = utcnow()
    assert _deliver(app, message_id) == "sent"
    assert not done.get("errors"), done
    assert done["reconciler"]["sends_interrupted"] == 0
    assert during[0].delivery_status == "sending"
    assert during[0].sending_since is not None and during[0].sending_since >= claimed  # the claim's time
    assert during[0].delivery_attempts == 2
    message = _stored(app, message_id)
    assert (message.delivery_status, message.external_id, message.delivery_error) == ("sent", MID, None)


@pytest.mark.parametrize(("claimed", "interrupted"), [
    (timedelta(0), False),  # a send claimed just now, of a message written long ago: under way
    (STUCK_SENDING_AFTER + timedelta(minutes=1), True),  # claimed 3 minutes ago, still `sending`: interrupted
    (None, True),  # claimed before sending_since was recorded: the time it was written decides, as before
])
def test_a_send_is_stuck_counted_from_its_claim(app: Any, reply: Any, claimed: timedelta | None,
                                                interrupted: bool) -> None:
    message_id, _at = reply
    _stuck(app, message_id, timedelta(minutes=10), claimed=claimed)
    assert _reconcile(app)["sends_interrupted"] == int(interrupted)
    message = _stored(app, message_id)
    assert message.delivery_status == ("unknown" if interrupted else "sending")
    assert (message.sending_since is None) == (claimed is None)
    if interrupted:
        assert "interrupted" in message.delivery_error


def test_a_send_claimed_again_after_the_reconciler_looked_is_left_sending(app: Any, reply: Any) -> None:
    """The reconciler selected a send stuck since its claim; before it held the message's locks, that send's
    outcome put it back in the queue and a retry claimed it again. Under the locks it reads the fresh claim
    time, and leaves the retry under way alone."""
    message_id, _at = reply
    _stuck(app, message_id, timedelta(minutes=10), claimed=timedelta(seconds=1))  # the new claim, committed
    conversation_id = _stored(app, message_id).conversation_id
    with app.app_context():
        assert not _mark_interrupted(message_id, conversation_id, utcnow() - STUCK_SENDING_AFTER)
        db.session.remove()
    assert _stored(app, message_id).delivery_status == "sending"


def test_a_send_job_run_before_its_retry_time_schedules_itself_for_that_time(app: Any, reply: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler can run a delayed job early (another host's clock ahead; RQ's whole seconds before
    `jobs.scheduled_at`): the job does not send, and it is enqueued again for the time left, instead of the retry
    waiting for the reconciler's next pass (~10 s)."""
    message_id, _at = reply
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id)
                           .values(next_attempt_at=utcnow() + timedelta(seconds=3)))
        db.session.commit()
        db.session.remove()
    monkeypatch.setattr(delivery, "_send", lambda _request: pytest.fail("sent before its retry time"))
    enqueued: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr("inbox.jobs.enqueue", lambda func, *args, **kwargs: enqueued.append((func, args, kwargs)))
    assert _deliver(app, message_id) is None
    assert _stored(app, message_id).delivery_status == "queued"
    ((func, args, kwargs),) = enqueued
    from inbox.jobs.tasks import send_message
    assert func is send_message and args == (message_id,) and kwargs["queue"] == "send"
    assert 2.0 < kwargs["delay"] <= 3.0


def test_a_send_job_for_a_message_no_longer_queued_schedules_nothing(app: Any, reply: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    message_id, _at = reply
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id)
                           .values(delivery_status="sent", next_attempt_at=utcnow() + timedelta(seconds=3)))
        db.session.commit()
        db.session.remove()
    enqueued: list[Any] = []
    monkeypatch.setattr("inbox.jobs.enqueue", lambda *args, **kwargs: enqueued.append(args))
    assert _deliver(app, message_id) is None
    assert enqueued == []
