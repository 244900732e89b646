"""Replies leave in the order they were written within a conversation, and at once across conversations.

A send waits on its platform (100-500 ms for a Graph call): the sends of different conversations run on several
threads (the embedded backend's SEND_CONCURRENCY send threads here; a worker's `JobPool`), and the send's claim
passes over a reply while an earlier reply of its conversation is queued (a retry waiting for its backoff
included) or sending. The outcome of that earlier reply (sent, failed, unknown, its echo, the reconciler's
verdict) hands the next one to a send job. Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from inbox import jobs
from inbox.background import BACKGROUND_LOCK
from inbox.db import db, utcnow
from inbox.demo.fake_meta import messaging_echo, messenger_message_payload, page_entry, page_payload
from inbox.jobs.tasks import send_message
from inbox.models import Conversation, Message
from inbox.services import delivery
from inbox.services.reconciler import STUCK_SENDING_AFTER, _mark_interrupted
from tests.factories import PAGE_ID
from tests.helpers import bearer, delivery_status, post_meta, store_verified, wait_until


def _conversations(app: Any, client: Any, psids: list[str], jobs_done: Any) -> dict[str, int]:
    for psid in psids:
        post_meta(client, messenger_message_payload(PAGE_ID, psid, f"Bonjour de {psid}"))
    jobs_done()
    with app.app_context():
        rows = db.session.execute(select(Conversation.thread_key, Conversation.id)).all()
        db.session.remove()
    by_psid = {key.split(":", 1)[1]: cid for key, cid in rows}
    return {psid: by_psid[psid] for psid in psids}


def _reply(client: Any, token: str, conversation_id: int, text: str) -> int:
    response = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text},
                           headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _accepted(fake_meta: Any) -> list[tuple[str, str]]:
    """(recipient, text) of every send the fake accepted, in the order it received them."""
    return [(r.body["recipient"]["id"], r.body["message"]["text"]) for r in fake_meta.requests
            if r.path == f"/{PAGE_ID}/messages" and r.status == 200]


class _Platform:
    """Wraps `delivery._send`: counts the calls in flight (in all, and per recipient) and holds each call until
    `together` are in flight at once (or `hold` seconds have passed)."""

    def __init__(self, together: int, hold: float = 10.0) -> None:
        self.together, self.hold = together, hold
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.per_recipient: dict[str, int] = {}
        self.peak_per_recipient = 0
        self.all_in = threading.Event()
        self.original = delivery._send

    def __call__(self, request: dict[str, Any]) -> Any:
        psid = request["psid"]
        with self.lock:
            self.in_flight += 1
            self.per_recipient[psid] = self.per_recipient.get(psid, 0) + 1
            self.peak = max(self.peak, self.in_flight)
            self.peak_per_recipient = max(self.peak_per_recipient, self.per_recipient[psid])
            if self.in_flight >= self.together:
                self.all_in.set()
        try:
            self.all_in.wait(self.hold)
            return self.original(request)
        finally:
            with self.lock:
                self.in_flight -= 1
                self.per_recipient[psid] -= 1


def test_replies_leave_in_order_per_conversation_and_at_once_across_conversations(
        app, client, world, token_for, fake_meta, jobs_done, monkeypatch):
    psids = ["order-a", "order-b", "order-c"]
    conversations = _conversations(app, client, psids, jobs_done)
    token = token_for(world.agent)
    platform = _Platform(together=len(psids))
    monkeypatch.setattr(delivery, "_send", platform)
    ids = []
    for k in range(3):
        for psid in psids:
            ids.append(_reply(client, token, conversations[psid], f"{psid} reply {k}"))
    wait_until(lambda: all(delivery_status(app, i) == "sent" for i in ids), timeout=30)
    # the three conversations' first replies were on their way together; never two of one conversation
    assert platform.peak == len(psids)
    assert platform.peak_per_recipient == 1
    accepted = _accepted(fake_meta)
    for psid in psids:
        assert [text for recipient, text in accepted if recipient == psid] == [f"{psid} reply {k}" for k in range(3)]


def test_a_retry_waiting_for_its_backoff_holds_back_the_next_reply(app, client, world, token_for, fake_meta,
                                                                   jobs_done):
    conversation = _conversations(app, client, ["order-retry"], jobs_done)["order-retry"]
    token = token_for(world.agent)
    fake_meta.fail_next(1, code=613, message="Calls to this api have exceeded the rate limit.", retry_after=0.3)
    first = _reply(client, token, conversation, "first")
    wait_until(lambda: any(r.status != 200 for r in fake_meta.requests if r.path.endswith("/messages")))
    second = _reply(client, token, conversation, "second")
    jobs_done()  # the second's job ran and passed over it: the first is waiting for its retry
    assert delivery_status(app, first) == "queued" and delivery_status(app, second) == "queued"
    wait_until(lambda: delivery_status(app, second) == "sent", timeout=20)
    assert delivery_status(app, first) == "sent"
    assert [text for _r, text in _accepted(fake_meta)] == ["first", "second"]


def test_a_final_failure_lets_the_next_reply_go(app, client, world, token_for, fake_meta, jobs_done):
    conversation = _conversations(app, client, ["order-fail"], jobs_done)["order-fail"]
    token = token_for(world.agent)
    fake_meta.fail_next(1, code=10, subcode=2018278, message="This message is sent outside of allowed window")
    first = _reply(client, token, conversation, "first")
    second = _reply(client, token, conversation, "second")
    wait_until(lambda: delivery_status(app, second) == "sent", timeout=20)
    assert delivery_status(app, first) == "failed"
    assert [text for _r, text in _accepted(fake_meta)] == ["second"]


def _our_reply(conversation: Conversation, text: str, key: str, status: str = "queued", at: Any = None) -> int:
    """Our reply in `status`, written straight to the database in the app context's session (no send job);
    claimed at `at` when sending. Returns its id."""
    at = at or utcnow()
    message = Message(conversation_id=conversation.id, channel_id=conversation.channel_id, direction="out",
                      kind="message", reply_type="reply", author_type="agent", author_name="Agent", text=text,
                      platform_time=at, received_at=at, delivery_status=status, idempotency_key=key,
                      sending_since=at if status == "sending" else None, attachments=[], edit_history=[], extra={})
    db.session.add(message)
    db.session.flush()
    return message.id


def _two_replies(app: Any, client: Any, jobs_done: Any, psid: str, first_status: str) -> tuple[int, int]:
    """A conversation with our first reply in `first_status` (claimed STUCK_SENDING_AFTER ago when sending) and a
    second one queued behind it, written straight to the database (no send job for either)."""
    conversation_id = _conversations(app, client, [psid], jobs_done)[psid]
    with app.app_context():
        conversation = db.session.get(Conversation, conversation_id)
        long_ago = utcnow() - STUCK_SENDING_AFTER - timedelta(seconds=5)
        ids = [_our_reply(conversation, f"reply {k}", f"{psid}-{k}", status, long_ago)
               for k, status in enumerate((first_status, "queued"))]
        db.session.commit()
        db.session.remove()
    return ids[0], ids[1]


def test_the_reconciler_s_verdict_on_an_interrupted_send_lets_the_next_reply_go(app, client, world, fake_meta,
                                                                                 jobs_done):
    with BACKGROUND_LOCK:  # the periodic reconciler would re-enqueue the second reply itself
        first, second = _two_replies(app, client, jobs_done, "order-stuck", "sending")
        with app.app_context():
            assert delivery.deliver_message(second) is None  # held back behind the first
            conversation_id = db.session.get(Message, first).conversation_id
            db.session.remove()
        assert delivery_status(app, second) == "queued"
        with app.app_context():
            assert _mark_interrupted(first, conversation_id, utcnow() - STUCK_SENDING_AFTER)
            db.session.remove()
        wait_until(lambda: delivery_status(app, second) == "sent")
    assert delivery_status(app, first) == "unknown"
    assert [text for _r, text in _accepted(fake_meta)] == ["reply 1"]


def test_the_echo_of_a_send_under_way_lets_the_next_reply_go(app, client, world, fake_meta, jobs_done):
    with BACKGROUND_LOCK:
        first, second = _two_replies(app, client, jobs_done, "order-echo", "sending")
        store_verified(page_payload(page_entry(PAGE_ID, messaging=[
            messaging_echo(PAGE_ID, "order-echo", "reply 0", mid="m_echo_first", metadata="order-echo-0")])))
        with app.app_context():
            from inbox.services import ingest
            ingest.drain_webhook_events(linger=0)
            db.session.remove()
        wait_until(lambda: delivery_status(app, second) == "sent")
    assert delivery_status(app, first) == "sent"
    assert [text for _r, text in _accepted(fake_meta)] == ["reply 1"]


def test_a_worker_s_send_jobs_run_on_its_pool(app, client, world, token_for, fake_meta, jobs_done, monkeypatch):
    """The RQ job hands the send to the worker's pool and returns at once; sends of different conversations are
    on their way together; stopping the pool lets the sends under way finish."""
    psids = ["pool-a", "pool-b"]
    conversations = _conversations(app, client, psids, jobs_done)
    with BACKGROUND_LOCK, app.app_context():
        ids = [_our_reply(db.session.get(Conversation, conversations[psid]), f"{psid} pooled", f"{psid}-pooled")
               for psid in psids]
        db.session.commit()
        db.session.remove()
        platform = _Platform(together=2)
        monkeypatch.setattr(delivery, "_send", platform)
        jobs.start_pool(app, jobs.SEND, 4)
        try:
            started = time.monotonic()
            assert [send_message(i) for i in ids] == [None, None]  # handed over, not run here
            assert time.monotonic() - started < platform.hold
            wait_until(lambda: platform.all_in.is_set())
        finally:
            jobs.stop_pools()  # waits for the two sends under way
        assert platform.peak == 2
        assert [delivery_status(app, i) for i in ids] == ["sent", "sent"]
    assert sorted(text for _r, text in _accepted(fake_meta)) == ["pool-a pooled", "pool-b pooled"]


def test_in_pool_runs_here_without_a_pool_and_once_for_work_handed_over_twice(app):
    assert jobs.in_pool(jobs.SEND, lambda x: x * 2, 21) == 42
    gate = threading.Event()
    runs: list[tuple[int, str]] = []

    def job(n: int) -> None:
        gate.wait(5)
        runs.append((n, threading.current_thread().name))

    pool = jobs.start_pool(app, jobs.SEND, 1)
    try:
        jobs.in_pool(jobs.SEND, job, 1)  # running (waits for the gate)
        wait_until(lambda: pool.busy() == 1)
        jobs.in_pool(jobs.SEND, job, 2)
        jobs.in_pool(jobs.SEND, job, 2)  # the same work, still waiting: once
        assert pool.busy() == 2
        gate.set()
        wait_until(lambda: pool.busy() == 0)
    finally:
        jobs.stop_pools()
    assert [n for n, _name in runs] == [1, 2]
    assert all(name.startswith("relais-send") for _n, name in runs)


def test_a_stopping_pool_finishes_the_work_under_way_and_enqueues_the_rest_again(app, monkeypatch):
    gate = threading.Event()
    ran: list[int] = []
    enqueued: list[tuple[Any, tuple[Any, ...], str]] = []
    monkeypatch.setattr(jobs, "enqueue", lambda func, *args, queue="default", delay=0.0:
                        enqueued.append((func, args, queue)))

    def work(n: int) -> None:
        gate.wait(5)
        ran.append(n)

    def handed_over_by(n: int) -> None:  # stands for the RQ job that handed `work` over
        raise AssertionError("not run here")

    pool = jobs.start_pool(app, jobs.SEND, 1)
    jobs.in_pool(jobs.SEND, work, 1, job=handed_over_by)
    wait_until(lambda: pool.busy() == 1)
    jobs.in_pool(jobs.SEND, work, 2, job=handed_over_by)
    jobs.in_pool(jobs.SEND, work, 3)  # no job to hand it back to: left to the reconciler
    stopping = threading.Thread(target=jobs.stop_pools)
    stopping.start()
    time.sleep(0.1)
    assert stopping.is_alive()  # waiting for the work under way
    gate.set()
    stopping.join(5)
    assert ran == [1]
    assert enqueued == [(handed_over_by, (2,), jobs.SEND)]


@pytest.mark.parametrize("earlier", ["queued", "sending"])
def test_the_claim_passes_over_a_reply_behind_one_on_its_way(app, client, world, jobs_done, earlier):
    with BACKGROUND_LOCK:
        first, second = _two_replies(app, client, jobs_done, f"order-claim-{earlier}", earlier)
        with app.app_context():
            assert delivery.deliver_message(second) is None
            db.session.remove()
        assert (delivery_status(app, first), delivery_status(app, second)) == (earlier, "queued")


def test_a_sent_reply_s_live_events_carry_what_the_api_shows(app, client, world, token_for, fake_meta, jobs_done):
    """The send's outcome builds its message.updated and conversation.updated from rows (as the drain does), not
    with marshmallow: the same JSON as the schemas'."""
    from inbox.api.schemas import ConversationSchema, MessageSchema
    from inbox.models import RealtimeEvent
    from inbox.realtime.wire import expand_conversation

    conversation_id = _conversations(app, client, ["order-json"], jobs_done)["order-json"]
    reply_id = _reply(client, token_for(world.agent), conversation_id, "voici")
    wait_until(lambda: delivery_status(app, reply_id) == "sent")
    jobs_done()

    def without_clock_seconds(data: dict[str, Any]) -> dict[str, Any]:  # computed from "now" at each dump
        return {**data, "sla": [{k: v for k, v in clock.items() if not k.endswith("seconds_left")}
                                for clock in data.get("sla", [])]}

    with app.app_context():
        events = db.session.execute(select(RealtimeEvent.name, RealtimeEvent.payload)
                                    .order_by(RealtimeEvent.id.desc())).all()
        message_event = next(p for n, p in events if n == "message.updated" and p["id"] == reply_id)
        conversation_event = next(p for n, p in events if n == "conversation.updated" and p["id"] == conversation_id)
        assert message_event["delivery_status"] == "sent"
        assert message_event == MessageSchema().dump(db.session.get(Message, reply_id))
        full = ConversationSchema().dump(db.session.get(Conversation, conversation_id))
        assert without_clock_seconds(expand_conversation(conversation_event)) == without_clock_seconds(full)
        assert full["last_message"]["text"] == "voici" and full["last_message"]["direction"] == "out"
        db.session.remove()
