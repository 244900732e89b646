"""The production shape with real processes: two gunicorn web processes (A gthread, B gevent), RQ worker processes
(`python -m inbox.jobs.worker`), one PostgreSQL database and one Redis, a fake Graph API in this process.

Proves what the in-process pipeline test cannot: events cross processes through Redis (the RQ queue and the
Socket.IO message queue), duplicates posted to different processes give one message, a worker killed -9 in
the middle of a batch and a Redis that lost its queued nudges and jobs lose nothing (the stored event is the truth and
the reconciler drains it), and a rate-limited send is retried by the worker and sent exactly once.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from threading import Barrier
from typing import Any, Iterator

import psycopg
import pytest
import requests

from inbox.demo.fake_meta import FakeMeta, messenger_message_payload
from tests.factories import PAGE_ID
from tests.helpers import bearer, signed_meta
from tests.procs import (BIN, ROOT, LiveEvents, Proc, ProcessGroup, app_environ, purge_redis_prefix,
                         wait_for, wait_http_ok, wait_output)
from tests.services import postgres_admin_url, redis_url, require_or_skip_postgres, require_or_skip_redis

pytestmark = pytest.mark.services

# Runs in a subprocess, so this test process never binds the app's globals (engine, job backend) to this
# module's database: other modules of the same session keep theirs.
SEED = r"""
import dataclasses, json
from alembic import command
from alembic.config import Config
from sqlalchemy import select
from inbox import create_app
from inbox.db import db
from inbox.models import Agent
from inbox.services.auth import create_api_token
from tests import factories

app = create_app(role="worker")
cfg = Config("alembic.ini")
cfg.set_main_option("sqlalchemy.url", app.extensions["relais.settings"].database_url)
command.upgrade(cfg, "head")
with app.app_context():
    world = factories.build_world()
    tokens = {}
    for email in (world.agent, world.outsider):
        agent = db.session.execute(select(Agent).where(Agent.email == email)).scalar_one()
        tokens[email] = create_api_token(db.session, agent, "multiprocess tests")[1]
    db.session.commit()
    print("SEED " + json.dumps({"world": dataclasses.asdict(world), "tokens": tokens}), flush=True)
db.engine.dispose()
"""


@dataclass
class Stack:
    env: dict[str, str]
    procs: ProcessGroup
    web_a: Proc
    web_b: Proc
    fake: FakeMeta
    pg_url: str
    redis: Any
    prefix: str
    world: dict[str, Any]
    token: str

    # --- processes
    def start_worker(self, name: str = "worker") -> Proc:
        worker = self.procs.start_worker(name, self.env)
        wait_output(worker, "listening on", timeout=30)
        return worker

    def stop_workers(self) -> None:
        self.procs.stop(self.procs.running("worker"))

    def ensure_worker(self) -> None:
        if not self.procs.running("worker"):
            self.start_worker()

    def describe(self) -> str:
        return self.procs.describe()

    # --- database, read directly (never through the app's globals)
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def messages_per_external_id(self, external_ids: list[str]) -> dict[str, int]:
        rows = self.sql("SELECT external_id, count(*) FROM messages WHERE external_id = ANY(%s) GROUP BY 1",
                        list(external_ids))
        return {external_id: n for external_id, n in rows}

    def event_statuses(self, event_ids: list[int]) -> dict[int, str]:
        return dict(self.sql("SELECT id, status FROM webhook_events WHERE id = ANY(%s)", list(event_ids)))

    # --- HTTP
    def post_webhook(self, web: Proc, payload: dict[str, Any]) -> int:
        """Post a signed Meta webhook to one web process; returns the stored event's id."""
        raw, headers = signed_meta(payload)
        response = requests.post(web.url + "/webhooks/meta", data=raw, headers=headers, timeout=20)
        assert response.status_code == 200, f"{web.name}: {response.status_code} {response.text}"
        return int(response.json()["event_id"])

    def api(self, web: Proc, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, web.url + "/api/v1" + path, headers=bearer(self.token), timeout=20,
                                **kwargs)


def _unique(label: str) -> tuple[str, str, str]:
    """(psid, mid, text) never seen before in this module."""
    tag = uuid.uuid4().hex[:10]
    return f"psid-{label}-{tag}", f"m_{label}_{tag}", f"{label} {tag}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_or_skip_postgres()
    require_or_skip_redis()
    from redis import Redis

    db_name = f"relais_mp_{uuid.uuid4().hex[:10]}"
    prefix = f"relais-test-{uuid.uuid4().hex[:12]}:"
    with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    redis = Redis.from_url(redis_url())
    procs = ProcessGroup()
    fake = FakeMeta()
    try:
        env = app_environ({
            "RELAIS_ENV": "test",
            "DATABASE_URL": postgres_admin_url(database=db_name, driver="postgresql+psycopg"),
            "REDIS_URL": redis_url(),
            "REDIS_PREFIX": prefix,
            "SECRET_KEY": "multiprocess-test-secret-" + uuid.uuid4().hex,
            "META_GRAPH_BASE_URL": fake.base_url,
            "RECONCILE_INTERVAL_SECONDS": "1",
            "LOGIN_RATE_LIMIT": "1000 per minute",
        })
        seed_env = {k: v for k, v in env.items() if k != "REDIS_URL"}  # seeding needs no queue
        seeded = subprocess.run([str(BIN / "python"), "-c", SEED], cwd=ROOT, env=seed_env, capture_output=True,
                                text=True, timeout=120)
        line = next((l for l in seeded.stdout.splitlines() if l.startswith("SEED ")), None)
        assert seeded.returncode == 0 and line, f"seeding failed:\n{seeded.stdout}\n{seeded.stderr}"
        seed = json.loads(line[len("SEED "):])

        web_a = procs.start_web("web-a", env)
        web_b = procs.start_web("web-b", env, worker_class="gevent")  # both production web workers, live on B
        worker = procs.start_worker("worker", env)
        wait_http_ok(web_a)
        wait_http_ok(web_b)
        wait_output(worker, "listening on")
        yield Stack(env=env, procs=procs, web_a=web_a, web_b=web_b, fake=fake,
                    pg_url=postgres_admin_url(database=db_name), redis=redis, prefix=prefix,
                    world=seed["world"], token=seed["tokens"][seed["world"]["agent"]])
    finally:
        procs.stop_all()
        shutil.rmtree(procs.log_dir, ignore_errors=True)
        fake.stop()
        try:
            purge_redis_prefix(redis, prefix)
            left = [k for k in redis.scan_iter(match=f"*{prefix}*", count=1000)]
            left += [q for q in redis.smembers("rq:queues") if prefix.encode() in q]
            assert not left, f"Redis keys left behind: {left[:10]}"
        finally:
            redis.close()
            with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.fixture
def live(stack: Stack) -> Stack:
    """Each test starts with a worker running and a fake with no recorded calls or pending failures."""
    stack.ensure_worker()
    stack.fake.reset()
    return stack


# ---------------------------------------------------------------------------------------------------- (a)
def test_webhook_on_a_processed_by_worker_pushed_live_on_b_reply_sent_once(live: Stack) -> None:
    psid, mid, text = _unique("crossproc")
    events = LiveEvents().connect(live.web_b.url, auth={"token": live.token})
    try:
        event_id = live.post_webhook(live.web_a, messenger_message_payload(PAGE_ID, psid, text, mid=mid))
        _, listed = events.wait_for(
            lambda n, d: n == "conversation.created" and (d["data"].get("last_message") or {}).get("text") == text,
            20, f"conversation.created for {mid} on web B (posted to A, event {event_id})\n{live.describe()}")
        assert isinstance(listed["seq"], int)
        conversation_id = listed["data"]["id"]
        # the agent opens it on web B; a follow-up posted to A reaches it as a thread event
        assert events.sio.call("watch", {"conversation_ids": [conversation_id]}, timeout=5) == {
            "watching": [conversation_id]}
        _, follow_mid, follow_text = _unique("crossproc-2")
        live.post_webhook(live.web_a, messenger_message_payload(PAGE_ID, psid, follow_text, mid=follow_mid))
        _, created = events.wait_for(
            lambda n, d: n == "message.created" and d["data"]["external_id"] == follow_mid, 20,
            f"message.created for {follow_mid} on web B (posted to A)\n{live.describe()}")
        assert created["data"]["text"] == follow_text and created["data"]["conversation_id"] == conversation_id
        # The event should only go out after its batch committed; today it is emitted at the savepoint's
        # commit (see the report: realtime/jobs after_commit hooks fire for savepoints), so wait briefly.
        wait_for(lambda: live.event_statuses([event_id]) == {event_id: "processed"}, 5,
                 lambda: f"raw event {event_id}: {live.event_statuses([event_id])}")

        reply_text = f"Réponse {uuid.uuid4().hex[:8]} 🙂"
        reply = live.api(live.web_a, "POST", f"/conversations/{conversation_id}/messages",
                         json={"text": reply_text, "kind": "reply"})
        assert reply.status_code == 201, reply.text
        message_id = reply.json()["id"]
        events.wait_for(lambda n, d: n == "message.updated" and d["data"]["id"] == message_id
                        and d["data"]["delivery_status"] == "sent", 20,
                        f"message.updated sent for reply {message_id} on web B\n{live.describe()}")

        time.sleep(1.2)  # one reconcile interval: a duplicate send would show up now
        sends = [r for r in live.fake.requests if r.path == f"/{PAGE_ID}/messages"]
        assert len(sends) == 1, f"expected one send at the fake, got {[(r.status, r.body) for r in sends]}"
        assert sends[0].body["recipient"] == {"id": psid} and sends[0].body["message"]["text"] == reply_text
        for web in (live.web_a, live.web_b):
            listed = live.api(web, "GET", f"/conversations/{conversation_id}/messages")
            assert listed.status_code == 200, listed.text
            mine = [m for m in listed.json()["items"] if m["id"] == message_id]
            assert len(mine) == 1 and mine[0]["delivery_status"] == "sent", (web.name, mine)
        seqs = [d["seq"] for n, d in events.events if isinstance(d, dict) and "seq" in d]
        # seq is allocated in each transaction: two processes committing at the same moment (the reply on A,
        # the profile lookup on the worker) may deliver a few out of order; never twice, never a gap that
        # the resume on reconnect would not fill (test_reconnect.py)
        assert len(seqs) == len(set(seqs)), f"an event delivered twice: {seqs}"
    finally:
        events.disconnect()


def test_a_burst_reaches_every_socket_on_gevent_b_whole_and_in_the_same_order(live: Stack) -> None:
    """Web B (gevent) writes the relay's frames to its websockets itself, encoded once (realtime/direct.py): a
    burst of new conversations reaches each of several sockets complete, each event once, every socket in the
    same order (the same frames), and B's log says its frames were written directly. The third client starts on
    long-polling and upgrades to a websocket, as the console does (socket.io-client's default transports)."""
    clients = [LiveEvents().connect(live.web_b.url, auth={"token": live.token}) for _ in range(2)]
    clients.append(LiveEvents().connect(live.web_b.url, auth={"token": live.token},
                                        transports=("polling", "websocket")))
    try:
        for client in clients:
            client.wait_for(lambda n, d: n == "session", 10, "session on web B")
        wait_for(lambda: clients[2].sio.transport() == "websocket", 10, "the polling client's upgrade")
        texts = set(_post_many(live, "burst", 40)[2])

        def created(client: LiveEvents) -> list[Any]:
            return [d for d in client.named("conversation.created")
                    if (d["data"].get("last_message") or {}).get("text") in texts]

        for client in clients:
            wait_for(lambda c=client: len(created(c)) >= len(texts), 30,
                     lambda c=client: f"{len(created(c))} of {len(texts)} conversations on one socket\n"
                                      f"{live.describe()}")
        orders = []
        for client in clients:
            got = created(client)
            assert sorted(d["data"]["last_message"]["text"] for d in got) == sorted(texts)  # each once
            seqs = [d["seq"] for n, d in client.events if isinstance(d, dict) and "seq" in d]
            assert len(seqs) == len(set(seqs)), f"an event delivered twice: {seqs}"
            orders.append([d["seq"] for d in got])
        assert orders[0] == orders[1] == orders[2]
        assert "live frames are written to the websockets directly" in live.web_b.log_path.read_text(
            errors="replace")
    finally:
        for client in clients:
            client.disconnect()


def test_token_revoked_on_a_closes_its_socket_on_b_and_refuses_it_again(live: Stack) -> None:
    """Web B runs gevent (the production web worker): the relay's access control message from A's commit
    reaches B's relay greenlet, which re-checks and disconnects the socket; the token cannot connect again."""
    created = live.api(live.web_a, "POST", "/auth/tokens", json={"name": "revoked across processes"})
    assert created.status_code == 201, created.text
    token_id, clear = created.json()["id"], created.json()["token"]
    events = LiveEvents().connect(live.web_b.url, auth={"token": clear})
    try:
        session = events.wait_for(lambda n, d: n == "session", 10, "session on web B")[1]
        assert session["rooms"], session
        revoked = live.api(live.web_a, "DELETE", f"/auth/tokens/{token_id}")
        assert revoked.status_code == 204, revoked.text
        wait_for(lambda: not events.sio.connected, 10,
                 lambda: f"the socket of a revoked token is still open on web B\n{live.describe()}")
    finally:
        events.disconnect()
    again = LiveEvents()
    with pytest.raises(Exception):
        again.connect(live.web_b.url, auth={"token": clear}, timeout=5)
    again.disconnect()


# ---------------------------------------------------------------------------------------------------- (b)
def test_same_webhook_posted_concurrently_to_both_processes_gives_one_message(live: Stack) -> None:
    psid, mid, text = _unique("dup")
    payload = messenger_message_payload(PAGE_ID, psid, text, mid=mid)
    barrier = Barrier(10)

    def post(i: int) -> int:
        barrier.wait(timeout=10)
        return live.post_webhook(live.web_a if i % 2 == 0 else live.web_b, payload)

    with ThreadPoolExecutor(max_workers=10) as pool:
        event_ids = list(pool.map(post, range(10)))
    assert len(set(event_ids)) == 10, "each delivery is stored as its own raw event"
    wait_for(lambda: set(live.event_statuses(event_ids).values()) == {"processed"}, 30,
             lambda: f"raw events not all processed: {live.event_statuses(event_ids)}\n{live.describe()}")
    assert live.messages_per_external_id([mid]) == {mid: 1}
    assert live.sql("SELECT count(*) FROM conversations WHERE thread_key LIKE %s", f"%{psid}")[0][0] == 1


# ---------------------------------------------------------------------------------------------------- (c)
def _post_many(stack: Stack, label: str, n: int) -> tuple[list[int], list[str], list[str]]:
    """n new customers' first messages, posted to A and B alternately, 8 at a time: (event ids, mids, texts)."""
    items = [_unique(f"{label}{i}") for i in range(n)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        event_ids = list(pool.map(
            lambda ix: stack.post_webhook(stack.web_a if ix[0] % 2 == 0 else stack.web_b,
                                          messenger_message_payload(PAGE_ID, ix[1][0], ix[1][2], mid=ix[1][1])),
            enumerate(items)))
    return event_ids, [mid for _, mid, _ in items], [text for _, _, text in items]


def _all_once(stack: Stack, event_ids: list[int], mids: list[str], timeout: float) -> None:
    def done() -> bool:
        return (set(stack.event_statuses(event_ids).values()) == {"processed"}
                and stack.messages_per_external_id(mids) == {mid: 1 for mid in mids})

    wait_for(done, timeout, lambda: (f"statuses {stack.event_statuses(event_ids)}, messages per external id "
                                     f"{stack.messages_per_external_id(mids)}\n{stack.describe()}"), interval=0.2)
    pending = stack.sql("SELECT count(*) FROM webhook_events WHERE status IN ('pending', 'failed')")[0][0]
    assert pending == 0, f"{pending} raw event(s) left pending/failed"


def test_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(live: Stack) -> None:
    live.stop_workers()
    other_backends = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid() AND state <> 'idle'")
    # Hold a lock that lets the worker claim the batch but not insert messages: "processing is slow", so a
    # kill -9 is guaranteed to land in the middle of the batch's transaction.
    with psycopg.connect(live.pg_url) as blocker:
        blocker.execute("LOCK TABLE messages IN SHARE MODE")
        event_ids, mids, _ = _post_many(live, "kill", 20)
        assert set(live.event_statuses(event_ids).values()) == {"pending"}
        doomed = live.start_worker("worker-doomed")
        waiting = ("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                   "WHERE a.datname = current_database() AND NOT l.granted AND l.relation = 'messages'::regclass")
        wait_for(lambda: live.sql(waiting)[0][0], 20,
                 lambda: f"the worker never got to writing messages\n{doomed.describe()}")
        with psycopg.connect(live.pg_url) as probe:  # every one of the 20 is row-locked by the worker's batch
            unclaimed = probe.execute("SELECT id FROM webhook_events WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED",
                                      (event_ids,)).fetchall()
            probe.rollback()
        assert unclaimed == [], f"events not claimed by the worker's batch: {unclaimed}"
        doomed.kill()
        blocker.rollback()
    # the orphaned PostgreSQL backend notices its client is gone and rolls the batch back
    wait_for(lambda: live.sql(other_backends)[0][0] == 0, 20, "the killed worker's transaction never ended")
    assert live.messages_per_external_id(mids) == {}, "a killed batch must not have committed anything"
    assert set(live.event_statuses(event_ids).values()) == {"pending"}

    live.start_worker("worker-fresh")
    _all_once(live, event_ids, mids, timeout=30)


def test_redis_losing_queued_jobs_is_recovered_by_the_reconciler(live: Stack) -> None:
    live.stop_workers()
    event_ids, mids, _ = _post_many(live, "lost", 10)
    wake_ups = live.prefix + "nudges:inbox.jobs.tasks.drain_webhook_events"
    assert live.redis.llen(wake_ups) >= 1, "posting with no worker should have left a drain nudge waiting"
    purge_redis_prefix(live.redis, live.prefix)  # Redis restarted without persistence: our nudges are gone
    assert live.redis.llen(wake_ups) == 0
    assert set(live.event_statuses(event_ids).values()) == {"pending"}

    live.start_worker("worker-after-loss")
    _all_once(live, event_ids, mids, timeout=30)


# ---------------------------------------------------------------------------------------------------- (d)
def test_rate_limited_send_is_retried_by_the_worker_and_sent_once(live: Stack) -> None:
    psid, mid, text = _unique("ratelimit")
    live.post_webhook(live.web_b, messenger_message_payload(PAGE_ID, psid, text, mid=mid))
    wait_for(lambda: live.messages_per_external_id([mid]) == {mid: 1}, 20,
             lambda: f"inbound {mid} never stored\n{live.describe()}")
    conversation_id = live.sql("SELECT conversation_id FROM messages WHERE external_id = %s", mid)[0][0]
    # the new contact's profile lookup is a Graph call too: let it happen before failures are injected
    wait_for(lambda: psid in live.fake.profile_lookups, 20,
             lambda: f"no profile lookup for {psid}\n{live.describe()}")

    live.fake.fail_next(1, code=613, retry_after=0.2)                       # Graph's call rate limit (HTTP 400)
    live.fake.fail_next(1, code=32, http_status=429, retry_after=0.2)       # page rate limit as HTTP 429
    reply_text = f"after the rate limit {uuid.uuid4().hex[:8]}"
    reply = live.api(live.web_a, "POST", f"/conversations/{conversation_id}/messages", json={"text": reply_text})
    assert reply.status_code == 201, reply.text
    message_id = reply.json()["id"]

    def status() -> tuple[str, int]:
        return live.sql("SELECT delivery_status, delivery_attempts FROM messages WHERE id = %s", message_id)[0]

    wait_for(lambda: status()[0] == "sent", 40, lambda: f"status {status()}; fake calls "
             f"{[(r.path, r.status) for r in live.fake.requests]}\n{live.describe()}", interval=0.2)
    time.sleep(1.2)  # one reconcile interval: a duplicate send would show up now
    sends = [r for r in live.fake.requests if r.path == f"/{PAGE_ID}/messages"]
    assert [r.status for r in sends] == [400, 429, 200], [(r.status, r.body) for r in sends]
    assert all(r.body["message"]["text"] == reply_text for r in sends)
    assert status() == ("sent", 3)


# ---------------------------------------------------------------------------------------------------- (e)
def test_a_worker_stopped_while_sending_finishes_its_sends_and_hands_the_others_on(live: Stack) -> None:
    """A worker sends on a pool of SEND_CONCURRENCY (8) threads. Stopped (SIGTERM) while every Graph call takes
    4 s, it records the outcome of the 8 sends under way before it exits and puts the replies it had not
    started back in the send queue: the next worker sends them, and every reply reaches the platform once."""
    event_ids, mids, _texts = _post_many(live, "stopping", 10)
    _all_once(live, event_ids, mids, timeout=30)
    psids = [psid for (psid,) in live.sql("SELECT c.thread_key FROM conversations c JOIN messages m ON "
                                          "m.conversation_id = c.id WHERE m.external_id = ANY(%s)", mids)]
    # the new contacts' name lookups are Graph calls too: let them happen before the platform slows down
    wait_for(lambda: {p.split(':', 1)[1] for p in psids} <= set(live.fake.profile_lookups), 30,
             lambda: f"profile lookups missing\n{live.describe()}")
    conversation_ids = [cid for (cid,) in live.sql("SELECT conversation_id FROM messages WHERE external_id = "
                                                   "ANY(%s) ORDER BY conversation_id", mids)]

    def sends() -> list[Any]:
        return [r for r in live.fake.requests if r.path == f"/{PAGE_ID}/messages"]

    def statuses(ids: list[int]) -> list[str]:
        return sorted(s for (s,) in live.sql("SELECT delivery_status FROM messages WHERE id = ANY(%s)", ids))

    # long enough that the stop lands while the 8 calls wait, even on a loaded box (with 1.5 s, a stop handled
    # 1.2 s late once let the pool start the last 2 and all 10 were sent before the worker exited)
    live.fake.set_latency(4.0)
    try:
        ids = []
        for k, conversation_id in enumerate(conversation_ids):
            reply = live.api(live.web_a, "POST", f"/conversations/{conversation_id}/messages",
                             json={"text": f"on it {k}"})
            assert reply.status_code == 201, reply.text
            ids.append(reply.json()["id"])
        wait_for(lambda: len(sends()) >= 8, 20, lambda: f"{len(sends())} sends at the fake\n{live.describe()}")
        time.sleep(0.3)
        assert len(sends()) == 8, "the worker's 8 send threads, the other replies waiting for one"
        live.stop_workers()  # SIGTERM while the 8 calls wait on the platform
        stopped = statuses(ids)
        assert stopped == ["queued"] * 2 + ["sent"] * 8, f"statuses {stopped}\n{live.describe()}"
        live.fake.set_latency(0)
        live.start_worker("worker-after-stop")
        wait_for(lambda: statuses(ids) == ["sent"] * 10, 20,
                 lambda: f"statuses {statuses(ids)}\n{live.describe()}", interval=0.2)
        time.sleep(1.2)  # one reconcile interval: a duplicate send would show up now
        texts = sorted(r.body["message"]["text"] for r in sends())
        assert texts == sorted(f"on it {k}" for k in range(10)), texts
    finally:
        live.fake.set_latency(0)
