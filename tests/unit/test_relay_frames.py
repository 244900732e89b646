"""How the live relay turns committed events into `events` frames (inbox/realtime/relay.py)."""
from __future__ import annotations

import json
import queue
import threading
from typing import Any

from inbox.realtime import relay
from inbox.realtime.relay import Relay, frames


def env(seq: int, rooms: list[str], event: str = "message.created") -> dict[str, Any]:
    return {"event": event, "seq": seq, "data": {"n": seq}, "rooms": rooms}


def test_commits_are_grouped_by_room_set_in_seq_order_without_their_rooms() -> None:
    brand1, brand2, agent = ["brand:1", "admins"], ["brand:2", "admins"], ["agent:7", "brand:1", "admins"]
    out = frames([[env(3, brand1), env(4, brand2)], [env(1, brand1)], [env(5, agent, "sla.breached")]])
    assert [(rooms, [e["seq"] for e in items]) for rooms, items in out] == [
        (brand1, [1, 3]), (brand2, [4]), (agent, [5])]
    assert out[2][1] == [{"event": "sla.breached", "seq": 5, "data": {"n": 5}}]  # rooms are not sent to clients


def test_a_large_round_is_cut_into_bounded_frames() -> None:
    rooms = ["brand:1", "admins"]
    out = frames([[env(n, rooms) for n in range(relay.FRAME_MAX * 2 + 1)]])
    assert [len(items) for _, items in out] == [relay.FRAME_MAX, relay.FRAME_MAX, 1]
    assert [e["seq"] for _, items in out for e in items] == list(range(relay.FRAME_MAX * 2 + 1))


def test_embedded_relay_coalesces_what_arrived_while_it_was_busy() -> None:
    """A slow emit (many sockets) makes the next round bigger, not the number of frames."""
    emitted: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
    gate, writing = threading.Event(), threading.Event()

    def emit(name: str, data: Any, rooms: Any) -> None:
        writing.set()
        gate.wait(5)  # the first round is "writing to 500 sockets" until the test lets it go
        emitted.put((name, data, rooms))

    live = Relay(redis_url=None, channel="unused", emit=emit).start()
    try:
        live.publish([env(1, ["brand:1", "admins"])])
        assert writing.wait(5)
        for seq in range(2, 12):  # ten commits while the first round is still being written
            live.publish([env(seq, ["brand:1", "admins"])])
        gate.set()
        first = emitted.get(timeout=5)
        second = emitted.get(timeout=5)
        assert [e["seq"] for e in first[1]] == [1]
        assert [e["seq"] for e in second[1]] == list(range(2, 12))  # one frame for ten commits
        assert (first[0], second[0]) == ("events", "events")
        assert live.rounds == 2 and live.frames == 2 and live.delivered == 11
    finally:
        live.stop()


def test_a_failing_emit_does_not_stop_the_relay() -> None:
    calls: list[Any] = []

    def emit(name: str, data: Any, rooms: Any) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("socket gone")

    live = Relay(redis_url=None, channel="unused", emit=emit).start()
    try:
        live.publish([env(1, ["brand:1"])])
        live.publish([env(2, ["brand:2"])])
        deadline = threading.Event()
        for _ in range(250):
            if len(calls) >= 2:
                break
            deadline.wait(0.02)
        assert [c[0]["seq"] for c in calls] == [1, 2]
    finally:
        live.stop()


def test_a_process_without_sockets_or_redis_publishes_nowhere() -> None:
    Relay(redis_url=None, channel="unused", emit=None).publish([env(1, ["admins"])])  # no error, no thread


def test_events_frames_are_sent_as_text_without_searching_them_for_bytes(monkeypatch) -> None:
    """The server's packet class skips python-socketio's walk of every value of an `events` frame (they are JSON
    from the database or Redis); anything else is still searched, so bytes would still go as attachments. (test_live_wire checks that the
    app's server uses it.)"""
    from socketio import packet

    from inbox.realtime import _Packet

    walked: list[Any] = []
    original = packet.Packet.data_is_binary.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(packet.Packet, "data_is_binary",
                        classmethod(lambda cls, data: walked.append(data) or original(cls, data)))
    frame = ["events", [{"event": "conversation.updated", "seq": 1, "data": {"id": 1, "labels": ["vip"]}}]]
    sent = _Packet(packet.EVENT, data=frame, namespace="/")
    assert sent.packet_type == packet.EVENT and walked == []
    assert sent.encode() == '2["events",[{"event":"conversation.updated","seq":1,"data":{"id":1,"labels":["vip"]}}]]'
    assert _Packet(packet.EVENT, data=["other", {"blob": b"\x00"}], namespace="/").packet_type == packet.BINARY_EVENT
    assert walked  # searched as before


def test_a_commits_message_reuses_the_payload_json_serialised_at_the_commit() -> None:
    """`envelopes_json` is `dump_json(envelopes(rows))`, taking each payload's text from `payload_json` when the
    commit serialised it already (PostgreSQL) and serialising the others; quotes, non-ASCII text, markup and
    a value JSON does not know come out as the relay has always sent them."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from inbox.realtime.relay import dump_json, envelopes, envelopes_json

    payloads = [{"text": 'il a dit "merci" \\ à bientôt <b>', "n": [1, None, True]},
                {"at": datetime(2026, 11, 24, 1, 2, 3, tzinfo=timezone.utc), "emoji": "👍"}]
    rows = [SimpleNamespace(name="message.created", id=41, rooms=("conversation:7",), payload=payloads[0],
                            payload_json=dump_json(payloads[0])),
            SimpleNamespace(name="conversation.updated", id=42, rooms=["brand:1", "admins"], payload=payloads[1],
                            payload_json=None)]
    text = envelopes_json(rows)
    assert text == dump_json(envelopes(rows))
    decoded = json.loads(text)
    assert decoded[0] == {"event": "message.created", "seq": 41, "data": payloads[0], "rooms": ["conversation:7"]}
    assert decoded[1]["data"] == {"at": "2026-11-24 01:02:03+00:00", "emoji": "👍"}


def test_publish_events_sends_one_message_per_commit_to_redis_and_envelopes_in_process() -> None:
    from types import SimpleNamespace

    from inbox.realtime.relay import dump_json, envelopes

    sent: list[tuple[str, str]] = []
    published = Relay(redis_url=None, channel="test:live", emit=None)
    published._redis = SimpleNamespace(publish=lambda channel, text: sent.append((channel, text)))
    rows = [SimpleNamespace(name="message.created", id=n, rooms=["conversation:1"], payload={"n": n},
                            payload_json=dump_json({"n": n}) if n % 2 else None) for n in (1, 2, 3)]
    published.publish_events(rows)
    published.publish_events([])
    assert [(channel, json.loads(text)) for channel, text in sent] == [("test:live", envelopes(rows))]

    local = Relay(redis_url=None, channel="test:live", emit=lambda *a: None)
    local.publish_events(rows)
    assert local._local is not None and local._local.get_nowait() == envelopes(rows)
