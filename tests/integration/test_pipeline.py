"""The conversation core end to end, in process: webhook in -> conversation listed -> live event -> reply
-> the fake Graph server received it -> status sent. Runs on SQLite, and on PostgreSQL with
RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import socketio
from sqlalchemy import func, select

from inbox.db import db
from inbox.demo.fake_meta import (
    feed_comment_payload,
    messaging_delivery,
    messaging_echo,
    messaging_edit,
    messaging_read,
    messenger_message_payload,
    page_entry,
    page_payload,
)
from inbox.models import Conversation, Message, WebhookEvent
from inbox.realtime.relay import envelopes as relay_envelopes
from tests.factories import OTHER_PAGE_ID, PAGE_ID, VERIFY_TOKEN
from tests.helpers import bearer, delivery_status, on_live, post_meta, signed_meta, wait_until


def _list(client, token, **params):
    response = client.get("/api/v1/conversations", query_string=params, headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_handshake_answers_challenge_only_for_a_known_verify_token(client, world):
    ok = client.get("/webhooks/meta", query_string={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                    "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.data == b"1158201444"
    bad = client.get("/webhooks/meta", query_string={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                     "hub.challenge": "1"})
    assert bad.status_code == 403


def test_dm_in_listed_live_reply_out_sent(app, live_server, world, token_for, fake_meta, jobs_done):
    token = token_for(world.agent)
    received: list[tuple[str, dict]] = []
    sio = socketio.Client(reconnection=False)
    on_live(sio, lambda name, envelope: received.append((name, envelope)))
    sio.connect(live_server, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    try:
        client = app.test_client()
        response = post_meta(client, messenger_message_payload(PAGE_ID, "psid-42", "Bonjour, où est ma commande ? 📦",
                                                               mid="m_first"))
        assert response.status_code == 200
        # the queue learns of the new conversation (with its last message's preview); the thread events go only
        # to sockets that watch the conversation, and nobody has it open yet
        wait_until(lambda: any(n == "conversation.created" for n, _ in received))
        listed = next(d for n, d in received if n == "conversation.created")
        assert listed["data"]["last_message"]["text"] == "Bonjour, où est ma commande ? 📦"
        assert isinstance(listed["seq"], int)
        assert not any(n == "message.created" for n, _ in received)

        page = _list(client, token, status="open", assignee="none")
        assert len(page["items"]) == 1 and page["counts"] == {"all": 1, "mine": 0, "unassigned": 1}
        conversation = page["items"][0]
        assert conversation["kind"] == "dm" and conversation["waiting_since"] is not None
        assert conversation["reply_window"]["open"] is True

        # the agent opens it: from now on its thread events come live
        assert sio.call("watch", {"conversation_ids": [conversation["id"]]}, timeout=5) == {
            "watching": [conversation["id"]]}
        post_meta(client, messenger_message_payload(PAGE_ID, "psid-42", "Vous êtes là ?", mid="m_second"))
        wait_until(lambda: any(n == "message.created" for n, _ in received))
        created = next(d for n, d in received if n == "message.created")
        assert created["data"]["text"] == "Vous êtes là ?" and created["data"]["conversation_id"] == conversation["id"]

        reply = client.post(f"/api/v1/conversations/{conversation['id']}/messages",
                            json={"text": "Bonjour ! Elle arrive demain 🙂", "kind": "reply"}, headers=bearer(token))
        assert reply.status_code == 201, reply.get_json()
        assert reply.get_json()["delivery_status"] == "queued"
        message_id = reply.get_json()["id"]
        wait_until(lambda: any(n == "message.updated" and d["data"]["id"] == message_id
                               and d["data"]["delivery_status"] == "sent" for n, d in received))
        sends = [r for r in fake_meta.requests if r.path.endswith(f"/{PAGE_ID}/messages")]
        assert len(sends) == 1
        body = sends[0].body
        assert body["recipient"] == {"id": "psid-42"} and body["message"]["text"] == "Bonjour ! Elle arrive demain 🙂"
        detail = client.get(f"/api/v1/conversations/{conversation['id']}", headers=bearer(token)).get_json()
        assert detail["waiting_since"] is None and detail["assignee"]["name"]
        # each event once; in seq order within a commit, and across commits in the order they were published, which
        # may differ slightly from seq order when two transactions commit at once (one PostgreSQL run received
        # 2, 4, 5, 3, 6, ...): the console keeps the highest seq per conversation and per message
        seqs = [d["seq"] for _, d in received]
        assert len(seqs) == len(set(seqs)), seqs
    finally:
        sio.disconnect()


def test_same_webhook_twice_and_concurrently_gives_one_message(app, world, token_for, jobs_done):
    payload = messenger_message_payload(PAGE_ID, "psid-dup", "once only", mid="m_dup")
    raw, headers = signed_meta(payload)
    statuses: list[int] = []

    def post() -> None:
        statuses.append(app.test_client().post("/webhooks/meta", data=raw, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    post()
    assert statuses == [200] * 9
    jobs_done()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message).where(Message.external_id == "m_dup")) == 1
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 9
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)
                                 .where(WebhookEvent.status != "processed")) == 0


def test_forged_signature_is_refused_and_kept_but_nothing_becomes_a_message(app, client, world):
    raw = json.dumps(messenger_message_payload(PAGE_ID, "psid-x", "forged")).encode()
    forged = client.post("/webhooks/meta", data=raw, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert forged.status_code == 403
    missing = client.post("/webhooks/meta", data=raw)
    assert missing.status_code == 401
    reserialised, headers = signed_meta(json.loads(raw))
    tampered = client.post("/webhooks/meta", data=raw.replace(b"forged", b"FORGED"), headers=headers)
    assert tampered.status_code == 403
    time.sleep(0.2)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0
        rejected = db.session.execute(select(WebhookEvent)).scalars().all()
        assert {e.status for e in rejected} == {"rejected"} and len(rejected) == 3
        assert all(e.error for e in rejected)


def test_malformed_body_is_400_and_kept(app, client, world):
    raw, headers = signed_meta(b"{not json")
    response = client.post("/webhooks/meta", data=raw, headers=headers)
    assert response.status_code == 400
    with app.app_context():
        event = db.session.execute(select(WebhookEvent)).scalar_one()
        assert event.status == "invalid" and event.body == b"{not json"


def test_batched_entries_for_two_pages_and_an_unknown_page(app, client, world, token_for, jobs_done):
    payload = page_payload(
        page_entry(PAGE_ID, messaging=[messenger_message_payload(PAGE_ID, "p1", "hello A")["entry"][0]["messaging"][0]]),
        page_entry(OTHER_PAGE_ID, messaging=[messenger_message_payload(OTHER_PAGE_ID, "p2", "hello B")["entry"][0]["messaging"][0]]),
        page_entry("999999", messaging=[messenger_message_payload("999999", "p3", "lost?")["entry"][0]["messaging"][0]]),
    )
    assert post_meta(client, payload).status_code == 200
    jobs_done()
    admin = token_for(world.admin)
    agent = token_for(world.agent)
    assert len(_list(client, admin)["items"]) == 2
    assert [c["contact"]["id"] for c in _list(client, agent)["items"]].__len__() == 1
    with app.app_context():
        event = db.session.execute(select(WebhookEvent)).scalar_one()
        assert event.status == "unroutable" and event.stats["unroutable_ids"] == ["999999"]


def test_out_of_order_events_are_ordered_by_platform_time(app, client, world, token_for, jobs_done):
    now_ms = int(time.time() * 1000)
    post_meta(client, messenger_message_payload(PAGE_ID, "p-order", "second", mid="m_2", ts_ms=now_ms - 1000))
    post_meta(client, messenger_message_payload(PAGE_ID, "p-order", "first", mid="m_1", ts_ms=now_ms - 5000))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    messages = client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=bearer(token)).get_json()
    assert [m["text"] for m in messages["items"]] == ["second", "first"]  # newest first
    assert conversation["last_message"]["text"] == "second"
    assert conversation["waiting_since"].startswith(
        time.strftime("%Y-%m-%dT", time.gmtime((now_ms - 5000) / 1000)))


def test_echo_edit_read_and_delivery_are_applied(app, client, world, token_for, jobs_done):
    now_ms = int(time.time() * 1000)
    post_meta(client, messenger_message_payload(PAGE_ID, "p-echo", "Hi", mid="m_in", ts_ms=now_ms - 3000))
    post_meta(client, page_payload(page_entry(PAGE_ID, messaging=[
        messaging_echo(PAGE_ID, "p-echo", "Answered natively", mid="m_native", ts_ms=now_ms - 2000)])))
    post_meta(client, page_payload(page_entry(PAGE_ID, messaging=[
        messaging_edit(PAGE_ID, "p-echo", "m_in", "Hi (edited)", ts_ms=now_ms - 1500)])))
    post_meta(client, page_payload(page_entry(PAGE_ID, messaging=[
        messaging_delivery(PAGE_ID, "p-echo", ["m_native"], now_ms - 1000)])))
    post_meta(client, page_payload(page_entry(PAGE_ID, messaging=[messaging_read(PAGE_ID, "p-echo", now_ms - 500)])))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    items = client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=bearer(token)).get_json()["items"]
    native = next(m for m in items if m["external_id"] == "m_native")
    original = next(m for m in items if m["external_id"] == "m_in")
    assert native["direction"] == "out" and native["author"]["type"] == "page"
    assert native["delivery_status"] == "read"
    assert original["text"] == "Hi (edited)" and original["edited"] is True
    assert conversation["waiting_since"] is None  # the native reply answered the customer


def test_comment_thread_public_reply_private_reply_and_moderation(app, client, world, token_for, fake_meta,
                                                                  jobs_done):
    post_meta(client, feed_comment_payload(PAGE_ID, f"{PAGE_ID}_555", "555_1", "user-7", "Léa Martin",
                                           "Vous livrez en Belgique ? 🇧🇪"))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token, kind="comment")["items"][0]
    assert conversation["post"]["external_id"] == f"{PAGE_ID}_555"
    assert conversation["contact"]["name"] == "Léa Martin"
    comment = client.get(f"/api/v1/conversations/{conversation['id']}/messages",
                         headers=bearer(token)).get_json()["items"][0]
    public = client.post(f"/api/v1/conversations/{conversation['id']}/messages",
                         json={"text": "Oui, en 3 jours !", "kind": "reply"}, headers=bearer(token))
    private = client.post(f"/api/v1/conversations/{conversation['id']}/messages",
                          json={"text": "Je vous envoie le détail en privé", "kind": "private_reply"},
                          headers=bearer(token))
    assert public.status_code == 201 and private.status_code == 201
    second_private = client.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                 json={"text": "encore", "kind": "private_reply"}, headers=bearer(token))
    assert second_private.status_code == 409
    jobs_done()
    paths = [(r.method, r.path) for r in fake_meta.requests]
    assert ("POST", "/555_1/comments") in paths
    private_calls = [r for r in fake_meta.requests if r.path.endswith(f"/{PAGE_ID}/messages")]
    assert private_calls[0].body["recipient"] == {"comment_id": "555_1"}
    for action in ("hide", "like", "unhide", "delete"):
        response = client.post(f"/api/v1/messages/{comment['id']}/moderate", json={"action": action},
                               headers=bearer(token))
        assert response.status_code == 200, response.get_json()
    final = response.get_json()
    assert final["deleted"] is True and final["liked"] is True and final["hidden"] is False
    assert ("DELETE", "/555_1") in [(r.method, r.path) for r in fake_meta.requests]


def test_a_moderation_the_platform_cannot_do_says_whether_to_try_again(app, client, world, token_for, fake_meta,
                                                                       jobs_done):
    post_meta(client, feed_comment_payload(PAGE_ID, f"{PAGE_ID}_556", "556_1", "user-8", "Hugo", "Prix ?"))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token, kind="comment")["items"][0]
    comment = client.get(f"/api/v1/conversations/{conversation['id']}/messages",
                         headers=bearer(token)).get_json()["items"][0]
    url = f"/api/v1/messages/{comment['id']}/moderate"
    fake_meta.fail_next(1, code=2, http_status=500)  # Graph's transient error: nothing was done, try again
    busy = client.post(url, json={"action": "hide"}, headers=bearer(token))
    assert busy.status_code == 502
    assert busy.get_json()["error"]["message"].startswith("Facebook could not do it now, nothing changed; try again")
    fake_meta.fail_next(1, code=100, message="(#100) Unsupported post request")  # a refusal: trying again is useless
    refused = client.post(url, json={"action": "hide"}, headers=bearer(token))
    assert refused.status_code == 502
    assert refused.get_json()["error"]["message"].startswith("Facebook refused: ")
    hidden = client.post(url, json={"action": "hide"}, headers=bearer(token))
    assert hidden.status_code == 200 and hidden.get_json()["hidden"] is True  # nothing half-done before


def test_rate_limited_send_is_retried_then_sent_once(app, client, world, token_for, fake_meta, jobs_done):
    post_meta(client, messenger_message_payload(PAGE_ID, "p-rl", "help"))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    fake_meta.fail_next(2, code=613, message="Calls to this api have exceeded the rate limit.", retry_after=0.2)
    reply = client.post(f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "on it"},
                        headers=bearer(token)).get_json()
    wait_until(lambda: delivery_status(app, reply["id"]) == "sent", timeout=20)
    sends = [r for r in fake_meta.requests if r.path.endswith("/messages")]
    assert len(sends) == 3  # two refused, one accepted: sent exactly once


def test_permanent_refusal_marks_failed_with_reason(app, client, world, token_for, fake_meta, jobs_done):
    post_meta(client, messenger_message_payload(PAGE_ID, "p-fail", "help"))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    fake_meta.fail_next(1, code=10, subcode=2018278, message="This message is sent outside of allowed window")
    reply = client.post(f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "late"},
                        headers=bearer(token)).get_json()
    jobs_done()
    with app.app_context():
        message = db.session.get(Message, reply["id"])
        assert message.delivery_status == "failed" and "allowed window" in message.delivery_error


def test_reply_window_closed_is_refused_before_sending(app, client, world, token_for, fake_meta, jobs_done):
    old_ms = int((time.time() - 8 * 86400) * 1000)
    post_meta(client, messenger_message_payload(PAGE_ID, "p-old", "old", ts_ms=old_ms))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    assert conversation["reply_window"]["open"] is False
    response = client.post(f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "sorry"},
                           headers=bearer(token))
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "reply_window_closed"
    note = client.post(f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "internal", "kind": "note"},
                       headers=bearer(token))
    assert note.status_code == 201 and note.get_json()["kind"] == "note"
    jobs_done()
    assert not [r for r in fake_meta.requests if r.path.endswith("/messages")]


def test_human_agent_tag_between_24h_and_7d(app, client, world, token_for, fake_meta, jobs_done):
    ms = int((time.time() - 2 * 86400) * 1000)
    post_meta(client, messenger_message_payload(PAGE_ID, "p-tag", "two days ago", ts_ms=ms))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    client.post(f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "late but human"},
                headers=bearer(token))
    jobs_done()
    send = [r for r in fake_meta.requests if r.path.endswith("/messages")][0]
    assert send.body["messaging_type"] == "MESSAGE_TAG" and send.body["tag"] == "HUMAN_AGENT"


def test_claim_is_exclusive(app, client, world, token_for, jobs_done):
    post_meta(client, messenger_message_payload(PAGE_ID, "p-claim", "who?"))
    jobs_done()
    a, b = token_for(world.agent), token_for(world.agent2)
    conversation = _list(client, a)["items"][0]
    results: list[int] = []

    def claim(token: str) -> None:
        results.append(app.test_client().post(f"/api/v1/conversations/{conversation['id']}/claim",
                                              headers=bearer(token)).status_code)
    threads = [threading.Thread(target=claim, args=(t,)) for t in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(409) >= 1 and 200 in results
    with app.app_context():
        holder = db.session.get(Conversation, conversation["id"]).assignee_id
    loser = b if holder == world.agent_ids[world.agent] else a
    conflict = client.post(f"/api/v1/conversations/{conversation['id']}/claim", headers=bearer(loser))
    assert conflict.status_code == 409 and "already taken" in conflict.get_json()["error"]["message"]


def test_messenger_contact_name_is_fetched_from_the_profile_api(app, client, world, token_for, fake_meta, jobs_done):
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-profile", "salut"))
    jobs_done()
    token = token_for(world.agent)
    conversation = _list(client, token)["items"][0]
    assert conversation["contact"]["name"]  # filled by the profile lookup job, not by the webhook
    assert "psid-profile" in fake_meta.profile_lookups


def test_a_looked_up_name_is_pushed_as_contact_updated_to_the_brand_not_as_whole_conversations(
        app, client, world, token_for, fake_meta, jobs_done):
    from inbox.models import RealtimeEvent

    with app.app_context():
        before = db.session.scalar(select(func.max(RealtimeEvent.id))) or 0
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-pushed-name", "coucou"))
    jobs_done()
    conversation = _list(client, token_for(world.agent))["items"][0]
    contact = conversation["contact"]
    assert contact["name"]  # looked up by the job
    with app.app_context():
        events = [(e.name, e.rooms, e.payload) for e in db.session.scalars(
            select(RealtimeEvent).where(RealtimeEvent.id > before).order_by(RealtimeEvent.id))]
    rooms = [f"brand:{conversation['brand']['id']}", "admins"]
    assert [(name, payload["last_message"]["text"]) for name, _rooms, payload in events
            if name.startswith("conversation.")] == [("conversation.created", "coucou")]  # the lookup sent none
    assert [(name, event_rooms, payload) for name, event_rooms, payload in events if name == "contact.updated"] == [
        ("contact.updated", rooms, {"id": contact["id"], "name": contact["name"], "handle": contact["handle"],
                                    "avatar_url": contact["avatar_url"]})]


def test_a_rate_limited_profile_lookup_is_tried_again_after_the_platforms_delay(app, client, world, token_for,
                                                                              fake_meta, jobs_done, monkeypatch):
    import inbox.jobs as jobs_module
    from inbox.jobs import tasks

    scheduled: list[tuple[Any, float]] = []
    original = jobs_module.enqueue

    def capture(func: Any, *args: Any, queue: str = "default", delay: float = 0.0) -> None:
        if func is tasks.fetch_contact_profiles and delay > 0:
            scheduled.append((args, delay))  # the retry: run by hand below instead of waiting for it
        else:
            original(func, *args, queue=queue, delay=delay)

    monkeypatch.setattr(jobs_module, "enqueue", capture)
    fake_meta.fail_next(1, code=613, retry_after=30)  # the first profile lookup is rate-limited
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-limited", "bonjour"))
    jobs_done()
    token = token_for(world.agent)
    assert _list(client, token)["items"][0]["contact"]["name"] in (None, "", "psid-limited")
    ((args, delay),) = scheduled
    assert delay >= 30  # never earlier than the platform asked
    assert args[1] == 1  # the attempt number travels with the job
    with app.app_context():
        assert tasks.fetch_contact_profiles(*args) == 1
    assert _list(client, token)["items"][0]["contact"]["name"] not in (None, "", "psid-limited")
    assert fake_meta.profile_lookups.count("psid-limited") == 2


def test_live_events_wait_for_the_real_commit_not_a_savepoint(app, world):
    """A savepoint's commit (ingest uses one per event) must not emit or enqueue anything yet."""
    from unittest import mock

    from inbox import realtime

    relay = app.extensions["relais.relay"]
    with app.app_context(), mock.patch.object(relay, "publish_events") as emitted:
        session = db.new_session()
        try:
            with session.begin():
                with session.begin_nested():
                    realtime.publish(session, "message.created", {"probe": True}, ["admins"])
                assert emitted.call_count == 0
            assert emitted.call_count == 1
            (batch,), _ = emitted.call_args
            assert [(e["event"], e["data"], e["rooms"]) for e in relay_envelopes(batch)] == [
                ("message.created", {"probe": True}, ["admins"])]
            if db.dialect == "postgresql":  # serialised once at the commit, for the row and the relay's message
                assert [json.loads(e.payload_json) for e in batch] == [{"probe": True}]
        finally:
            session.close()


def test_database_down_answers_503_so_the_platform_retries(app, client, world, monkeypatch):
    """The event cannot be made durable: no 200 (Meta would not resend), a 503 instead."""
    from inbox.db import make_engine
    from inbox.services import webhook_store

    payload = messenger_message_payload(PAGE_ID, "psid-down", "are you there?")
    raw, headers = signed_meta(payload)
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-warm", "warm the secret cache"))
    broken = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    monkeypatch.setattr(webhook_store.db, "engine", broken)
    try:
        response = client.post("/webhooks/meta", data=raw, headers=headers)
    finally:
        monkeypatch.undo()
        broken.dispose()
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert client.post("/webhooks/meta", data=raw, headers=headers).status_code == 200  # the retry lands


def test_database_down_before_verification_is_503_too(app, client, world, monkeypatch):
    from inbox.db import make_engine
    from inbox.services import channels, webhook_store

    raw, headers = signed_meta(messenger_message_payload(PAGE_ID, "psid-cold", "cold cache"))
    channels.invalidate_cache()
    broken = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(webhook_store.db, "engine", broken)
    monkeypatch.setattr(webhook_store.db._factory, "kw", {**webhook_store.db._factory.kw, "bind": broken})
    webhook_store.db.session.remove()
    try:
        response = client.post("/webhooks/meta", data=raw, headers=headers)
    finally:
        monkeypatch.undo()
        webhook_store.db.session.remove()
        broken.dispose()
    assert response.status_code == 503, response.get_json()


def test_new_customers_of_separate_drains_are_looked_up_by_one_job(app, world, monkeypatch):
    """PROFILE_LOOKUP_BATCH_MS (50 ms in tests): the name lookups of drains within the window share one job."""
    from inbox.background import BACKGROUND_LOCK
    from inbox.services import ingest
    from tests.helpers import captured_lookups, store_verified

    lookups = captured_lookups(monkeypatch)
    with BACKGROUND_LOCK:  # the embedded drain waits: each webhook below is drained on its own
        for psid in ("psid-gathered-1", "psid-gathered-2"):
            store_verified(messenger_message_payload(PAGE_ID, psid, "allo"))
            with app.app_context():
                assert ingest.drain_webhook_events(linger=0) == 1
                db.session.remove()
    wait_until(lambda: lookups, timeout=5)
    time.sleep(0.1)
    assert len(lookups) == 1 and len(lookups[0]) == 2, lookups  # one job, both customers
