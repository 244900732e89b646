"""The relay's frames written to the websockets directly (inbox/realtime/direct.py): the frame bytes are wsproto's,
order is kept per socket when the kernel takes a frame in part or the socket's writer is busy, and sockets that
cannot be written directly get python-socketio's packet."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from wsproto.frame_protocol import FrameProtocol

from inbox.realtime import _Packet
from inbox.realtime.direct import RawFrame, RawPacket, Writer, text_frame, websocket_class
from tests.procs import ROOT


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
def test_a_frame_is_the_one_wsproto_sends_for_a_text_message(size: int) -> None:
    text = ("é<b>\"x" * size)[:size]
    assert text_frame(text) == FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)


class FakeInner:
    def __init__(self, accept: int | None = None, error: BaseException | None = None) -> None:
        self.connected = True
        self.sock = self
        self.accept, self.error = accept, error
        self.written: list[bytes] = []

    def send(self, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        assert timeout == 0.0  # never waits: one slow agent must not hold the round for the others
        if self.error is not None:
            raise self.error
        n = len(data) if self.accept is None else min(self.accept, len(data))
        self.written.append(bytes(data[:n]))
        return n


class FakeEngineSocket:
    upgraded, upgrading, closing, closed = True, False, False, False

    def __init__(self, inner: FakeInner | None) -> None:
        import queue

        self.queue: queue.Queue[Any] = queue.Queue()
        self.relais_ws: Any = None
        if inner is not None:
            self.relais_ws = type("Wrapper", (), {"writing": False, "ws": inner})()

    def check_ping_timeout(self) -> bool:
        return True

    def send(self, pkt: Any) -> None:  # engineio's Socket.send: what python-socketio's path does
        self.queue.put(pkt)


def _server(sockets: dict[str, FakeEngineSocket]) -> Any:
    server = socketio.Server(async_mode="threading", serializer=_Packet)
    for eio_sid, sock in sockets.items():
        server.eio.sockets[eio_sid] = sock
        sid = server.manager.connect(eio_sid, "/")
        server.manager.enter_room(sid, "/", "brand:1")
    return server


ITEMS = [{"event": "conversation.updated", "seq": 7, "data": {"id": 1, "preview": "<b>hé</b>"}}]
ENCODED = _Packet(sio_packet.EVENT, namespace="/", data=["events", ITEMS]).encode()


def test_a_free_socket_gets_the_frame_written_whole_and_a_busy_one_the_packet_in_its_queue() -> None:
    free, busy, queued, polling = FakeInner(), FakeInner(), FakeInner(), FakeInner()
    sockets = {"free": FakeEngineSocket(free), "busy": FakeEngineSocket(busy), "queued": FakeEngineSocket(queued),
               "polling": FakeEngineSocket(polling), "plain": FakeEngineSocket(None)}
    sockets["busy"].relais_ws.writing = True            # its writer is in the middle of a write
    sockets["queued"].queue.put(eio_packet.Packet(eio_packet.PING))  # something is waiting for its writer
    sockets["polling"].upgraded = False                  # not a websocket (yet)
    writer = Writer(_server(sockets))
    writer.emit("events", ITEMS, ["brand:1", "admins"])
    assert free.written == [text_frame("4" + ENCODED)]
    assert sockets["free"].queue.empty()
    for name in ("busy", "queued", "polling", "plain"):
        assert sockets[name].relais_ws is None or sockets[name].relais_ws.ws.written == []
        last = list(sockets[name].queue.queue)[-1]
        assert last.packet_type == eio_packet.MESSAGE and last.data == ENCODED  # python-socketio's packet
    assert (writer.direct, writer.partial, writer.queued) == (1, 0, 4)
    assert ENCODED.startswith("2[\"events\",")  # Socket.IO EVENT "2"; the frame adds Engine.IO MESSAGE "4"


def test_a_frame_taken_in_part_leaves_its_rest_first_in_the_queue_and_later_frames_behind_it() -> None:
    inner = FakeInner(accept=10)
    sockets = {"slow": FakeEngineSocket(inner)}
    writer = Writer(_server(sockets))
    writer.emit("events", ITEMS, ["brand:1"])
    writer.emit("events", ITEMS, ["brand:1"])
    frame = text_frame("4" + ENCODED)
    first, second = list(sockets["slow"].queue.queue)
    assert inner.written == [frame[:10]]
    assert isinstance(first, RawPacket) and first.encode() == frame[10:] and type(first.encode()) is RawFrame
    assert second.data == ENCODED
    assert (writer.direct, writer.partial, writer.queued) == (0, 1, 1)


def test_a_full_buffer_queues_the_whole_frame_and_a_broken_connection_drops_it_without_raising() -> None:
    full, broken = FakeInner(error=BlockingIOError()), FakeInner(error=BrokenPipeError())
    sockets = {"full": FakeEngineSocket(full), "broken": FakeEngineSocket(broken)}
    writer = Writer(_server(sockets))
    writer.emit("events", ITEMS, ["brand:1"])
    (rest,) = list(sockets["full"].queue.queue)
    assert rest.encode() == text_frame("4" + ENCODED)
    assert sockets["broken"].queue.empty()  # its reader sees the broken connection and closes the socket


def test_the_wrapper_writes_raw_frames_as_they_are_and_marks_its_writes() -> None:
    seen: list[Any] = []

    class Base:
        def __init__(self, app: Any, server: Any) -> None:
            self.app = app

        def __call__(self, environ: Any, start_response: Any) -> Any:
            return self.app(self)

        def send(self, message: Any) -> None:
            seen.append(("framed", message, wrapper.writing))

    class Sock:
        def sendall(self, data: bytes) -> None:
            seen.append(("raw", data, wrapper.writing))

    class Engine:
        relais_ws: Any = None

        def handler(self, ws: Any) -> str:
            assert self.relais_ws is ws  # reachable while the connection is served
            ws.send("4hello")
            ws.send(RawPacket(b"\x81\x02hi").encode())
            return "done"

    engine = Engine()
    wrapper = websocket_class(Base)(engine.handler, None)
    wrapper.ws = type("Inner", (), {"connected": True, "sock": Sock()})()
    assert wrapper({}, None) == "done"
    assert engine.relais_ws is None and wrapper.writing is False
    assert seen == [("framed", "4hello", True), ("raw", b"\x81\x02hi", True)]
    wrapper.ws.connected = False
    with pytest.raises(OSError):
        wrapper.send(RawFrame(b"\x81\x00"))


def test_under_gevent_a_slow_socket_gets_every_frame_in_order() -> None:
    """A real socket whose peer reads nothing at first, in a gevent-patched child process (the production web
    process): frames written whole, then one in part, then queued behind it, queued while the socket's writer
    greenlet is blocked mid-write, and written directly again once the peer has read everything."""
    done = subprocess.run([sys.executable, "-m", "tests.unit.gevent_direct_probe"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    phase1, phase2, phase3 = result["counters"]
    assert phase1[0] >= 1 and phase1[1] == 1 and sum(phase1) == 60, result["counters"]
    assert result["writing_while_blocked"] is True
    assert phase2 == [0, 0, 60], result["counters"]
    assert phase3[0] >= 1 and sum(phase3) == 60, result["counters"]
    expected = []
    for seq in range(1, result["seqs"] + 1):
        items = [{"event": "message.created", "seq": seq, "data": {"text": "é" * 200}}]
        expected.append("4" + _Packet(sio_packet.EVENT, namespace="/", data=["events", items]).encode())
    assert result["received"] == expected


def test_threaded_processes_keep_python_socketios_path(app: Any) -> None:
    """Tests and the embedded server run threads: another thread could take a queued packet between the check and
    the write, so no direct writer there."""
    assert app.extensions["relais.live_writer"] is None
