"""Run by tests/unit/test_live_direct.py in a gevent-patched child process (as the production web process is): the
relay's direct writer against a real socket whose peer reads nothing at first, so the kernel's buffer fills, a
frame is taken in part and the socket's own writer greenlet blocks in the middle of a write.

The Engine.IO socket is a stand-in with engineio's queue and writer loop (`handler`); the websocket wrapper is
`direct.websocket_class` over a base that frames like simple-websocket (wsproto). Prints one JSON line: the
messages the peer decoded, in order, and the writer's counters per phase."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import socketio  # noqa: E402
from gevent.queue import JoinableQueue  # noqa: E402
from wsproto.frame_protocol import FrameProtocol, Opcode  # noqa: E402

from inbox.realtime import _Packet  # noqa: E402
from inbox.realtime.direct import Writer, websocket_class  # noqa: E402

EVENTS_PER_PHASE = 60
TEXT = "é" * 200  # ~1.3 KB a frame (escaped): a few dozen fill the small buffers below


class InnerWebSocket:
    """What the writer and the wrapper use of simple_websocket.Server: its socket and whether it is open."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.connected = sock, True
        self.protocol = FrameProtocol(client=False, extensions=[])

    def send(self, data: str) -> None:
        self.sock.sendall(self.protocol.send_data(data, fin=True))


class BaseWrapper:
    """engineio's websocket wrapper (the part the writer uses): calls the Engine.IO handler with itself."""

    def __init__(self, app: object, server: object) -> None:
        self.app = app
        self.ws: InnerWebSocket | None = None

    def __call__(self, environ: dict, start_response: object) -> object:
        return self.app(self)  # type: ignore[operator]

    def send(self, message: str) -> None:
        assert self.ws is not None
        self.ws.send(message)


class EngineSocket:
    """An upgraded Engine.IO socket: its queue and engineio's writer loop (`handler`)."""

    upgraded, upgrading, closing, closed = True, False, False, False

    def __init__(self) -> None:
        self.queue: JoinableQueue = JoinableQueue()
        self.relais_ws = None

    def check_ping_timeout(self) -> bool:
        return True

    def send(self, pkt: object) -> None:
        self.queue.put(pkt)

    def handler(self, ws: BaseWrapper) -> None:
        while True:
            pkt = self.queue.get()
            if pkt is None:
                return
            ws.send(pkt.encode())  # type: ignore[attr-defined]


def main() -> None:
    server = socketio.Server(async_mode="gevent", serializer=_Packet)
    engine = EngineSocket()
    server.eio.sockets["eio-1"] = engine
    sid = server.manager.connect("eio-1", "/")
    server.manager.enter_room(sid, "/", "brand:1")

    ours, peer = socket.socketpair()
    for s in (ours, peer):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    wrapper = websocket_class(BaseWrapper)(engine.handler, server)
    wrapper.ws = InnerWebSocket(ours)
    writer_greenlet = gevent.spawn(wrapper, {}, None)
    gevent.sleep(0)
    assert engine.relais_ws is wrapper

    writer = Writer(server)
    counters = []
    seq = 0

    def emit_phase() -> None:
        nonlocal seq
        before = (writer.direct, writer.partial, writer.queued)
        for _ in range(EVENTS_PER_PHASE):
            seq += 1
            writer.emit("events", [{"event": "message.created", "seq": seq, "data": {"text": TEXT}}], ["brand:1"])
        counters.append([now - then for now, then in zip((writer.direct, writer.partial, writer.queued), before)])

    emit_phase()  # nobody reads: direct writes until the buffer is full, one in part, the rest queued
    gevent.sleep(0.2)  # the socket's writer greenlet takes the queue and blocks mid-write
    writing_while_blocked = wrapper.writing
    emit_phase()  # the writer is busy: every frame is queued behind it

    received: list[str] = []
    client = FrameProtocol(client=True, extensions=[])

    def read() -> None:
        message = ""
        while True:
            data = peer.recv(65536)
            if not data:
                return
            client.receive_bytes(data)
            for frame in client.received_frames():  # a frame's payload may come in parts, as its bytes arrive
                assert frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION), frame
                message += frame.payload
                if frame.message_finished:
                    received.append(message)
                    message = ""

    reader = gevent.spawn(read)
    deadline = 20.0
    with gevent.Timeout(deadline):
        while len(received) < 2 * EVENTS_PER_PHASE:
            gevent.sleep(0.01)
    emit_phase()  # drained: direct again
    with gevent.Timeout(deadline):
        while len(received) < 3 * EVENTS_PER_PHASE:
            gevent.sleep(0.01)
    engine.queue.put(None)
    writer_greenlet.join(5)
    ours.close()
    reader.join(5)
    json.dump({"received": received, "counters": counters, "writing_while_blocked": writing_while_blocked,
               "seqs": seq}, sys.stdout)


if __name__ == "__main__":
    main()
