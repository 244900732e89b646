"""The live relay over Redis: one message per commit reaches every serving process; a lost subscription is
restored and the process's sockets are told to `resync` (Redis pub/sub keeps nothing, the database does)."""
from __future__ import annotations

import json
import queue
import time
import uuid
from typing import Any

import pytest

from inbox.realtime.relay import Relay
from tests.services import redis_url, require_or_skip_redis


@pytest.fixture
def channel() -> str:
    require_or_skip_redis()
    return f"relais-test-{uuid.uuid4().hex}:live"


def _recorder() -> tuple[queue.Queue[tuple[str, Any, Any]], Any]:
    got: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
    return got, lambda name, data, rooms: got.put((name, data, rooms))


def _wait_subscribed(r: Any, channel: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.pubsub_numsub(channel)[0][1] >= 1:
            return
        time.sleep(0.02)
    raise AssertionError("the relay did not subscribe")


def test_commits_published_anywhere_reach_every_serving_process(channel: str) -> None:
    import redis

    got_a, emit_a = _recorder()
    got_b, emit_b = _recorder()
    web_a = Relay(redis_url=redis_url(), channel=channel, emit=emit_a).start()
    web_b = Relay(redis_url=redis_url(), channel=channel, emit=emit_b).start()
    worker = Relay(redis_url=redis_url(), channel=channel, emit=None)  # an RQ worker: publishes only
    r = redis.Redis.from_url(redis_url())
    try:
        deadline = time.monotonic() + 5
        while r.pubsub_numsub(channel)[0][1] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.publish([{"event": "message.created", "seq": 1, "data": {"text": "<b>hi</b>"},
                         "rooms": ["brand:1", "admins"]}])
        for got in (got_a, got_b):
            name, data, rooms = got.get(timeout=5)
            assert (name, rooms) == ("events", ["brand:1", "admins"])
            assert data == [{"event": "message.created", "seq": 1, "data": {"text": "<b>hi</b>"}}]
    finally:
        web_a.stop()
        web_b.stop()
        r.close()


def test_a_lost_subscription_comes_back_and_tells_the_sockets_to_resync(channel: str) -> None:
    import redis

    got, emit = _recorder()
    web = Relay(redis_url=redis_url(), channel=channel, emit=emit).start()
    r = redis.Redis.from_url(redis_url())
    try:
        _wait_subscribed(r, channel)
        name = f"relais-live-relay:{channel}"
        ids = [c["id"] for c in r.client_list() if c.get("name") == name and "sub" in c and int(c["sub"]) > 0]
        assert ids, "the relay's subscription is named in CLIENT LIST"
        for client_id in ids:
            r.client_kill_filter(_id=client_id)
        assert got.get(timeout=10)[:1] == ("resync",)  # sockets are asked to resume by seq
        _wait_subscribed(r, channel)
        r.publish(channel, json.dumps([{"event": "message.created", "seq": 9, "data": {}, "rooms": ["admins"]}]))
        assert got.get(timeout=5) == ("events", [{"event": "message.created", "seq": 9, "data": {}}], ["admins"])
    finally:
        web.stop()
        r.close()


def test_a_process_without_sockets_decodes_nothing_and_one_with_them_everything(channel: str) -> None:
    """A web process no agent is connected to (e.g. one that only takes webhooks) drops the live messages unread
    (decoding every conversation's JSON was 16% of its CPU at 700 webhooks/s); once a socket is there, it gets
    every event again (one that connected meanwhile resumes by seq from the database)."""
    import redis

    got, emit = _recorder()
    sockets: list[str] = []
    web = Relay(redis_url=redis_url(), channel=channel, emit=emit, has_sockets=lambda: bool(sockets)).start()
    r = redis.Redis.from_url(redis_url())
    try:
        _wait_subscribed(r, channel)
        r.publish(channel, json.dumps([{"event": "message.created", "seq": 1, "data": {}, "rooms": ["admins"]}]))
        deadline = time.monotonic() + 5
        while web.skipped < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert web.skipped == 1 and got.empty()
        sockets.append("agent")
        r.publish(channel, json.dumps([{"event": "message.created", "seq": 2, "data": {}, "rooms": ["admins"]}]))
        assert got.get(timeout=5) == ("events", [{"event": "message.created", "seq": 2, "data": {}}], ["admins"])
    finally:
        web.stop()
        r.close()


def test_a_large_round_is_decoded_and_sent_with_yields_in_between(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under gevent, the relay's CPU work holds every greenlet of the process (webhooks waiting for their ack):
    it decodes a round DECODE_CHUNK messages at a time and sends it a frame at a time, yielding in between,
    without changing what the sockets get."""
    from inbox.realtime import relay as relay_module

    yields: list[int] = []
    monkeypatch.setattr(relay_module, "_yield", lambda: yields.append(1))
    raw = [json.dumps([{"event": "conversation.updated", "seq": n, "data": {"n": n},
                        "rooms": ["brand:1"] if n % 2 else [f"conversation:{n}"]}]).encode() for n in range(60)]
    decoded = relay_module.Relay._decode(raw)
    assert [m[0]["seq"] for m in decoded] == list(range(60))
    assert len(yields) == -(-60 // relay_module.DECODE_CHUNK) - 1
    got, emit = _recorder()
    yields.clear()
    Relay(redis_url=None, channel="unused", emit=emit).deliver(decoded)
    frames = [got.get_nowait() for _ in range(got.qsize())]
    assert len(frames) == 31 and len(yields) == 30  # brand:1 (30 events in one frame) + 30 conversation rooms
    brand = [items for _name, items, rooms in frames if rooms == ["brand:1"]]
    assert [e["seq"] for e in brand[0]] == list(range(1, 60, 2))


def test_live_sockets_are_not_compressed_by_default(live_server: str) -> None:
    """permessage-deflate would compress every copy of a frame again for each socket of a room (bench figure 2):
    the handshake answers without it unless WEBSOCKET_COMPRESSION=1."""
    import base64
    import os
    import socket
    from urllib.parse import urlparse

    url = urlparse(live_server)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {url.netloc}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.startswith("http/1.1 101")
    assert "sec-websocket-extensions" not in head
