"""Live frames written by the relay to the room's websockets itself, encoded once (gevent web processes).

Through python-socketio, a frame to a room of 500 sockets is 500 queue puts, 500 writer greenlets woken (each
making, starting and cancelling a gevent Timeout in its queue wait) and 500 times the same websocket frame built by
wsproto: 61% of the web process's samples at 500 agents (bench figure 2's profile), for bytes that are the same for
every socket. Here the relay builds the websocket frame once (`text_frame`: a server's frames are not masked, and
live sockets are not compressed unless WEBSOCKET_COMPRESSION is set, in which case none of this is used) and writes
it to each socket without blocking (`Writer.emit`).

Order is kept per socket: a frame is written directly only when the socket's own writer has nothing queued and is
not in the middle of a write; otherwise it is queued behind what is there, as python-socketio would. A write the
kernel takes only in part (a slow agent's full buffer) queues the rest of the frame, as raw bytes, first in line
for the socket's writer (`DirectWebSocket.send` writes them as they are), so later frames queue behind it.

Only under gevent: there, greenlets switch only where one blocks, so "nothing queued, not writing" cannot change
between the check and the non-blocking write. With threads (the embedded server) another thread could take a
queued packet between the two, so frames go through python-socketio there.
"""
from __future__ import annotations

import logging
from typing import Any

from engineio import packet as eio_packet
from socketio import packet as sio_packet

log = logging.getLogger(__name__)


def text_frame(text: str) -> bytes:
    """A complete, unmasked, uncompressed websocket text frame (RFC 6455 5.2) carrying `text`: what wsproto sends
    for a server's TextMessage on a connection without extensions."""
    payload = text.encode("utf-8")
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


class RawFrame(bytes):
    """Bytes of a websocket frame to write as they are (the rest of a frame the kernel took in part)."""


class RawPacket(eio_packet.Packet):
    """An Engine.IO MESSAGE packet in a socket's queue whose encoding is already websocket bytes."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(eio_packet.MESSAGE, data=b"")
        self.raw = RawFrame(raw)

    def encode(self, b64: bool = False) -> Any:  # noqa: ARG002  (the signature of Packet.encode)
        return self.raw


def websocket_class(base: type) -> type:
    """engineio's websocket wrapper for gevent (`base`), keeping the socket it serves reachable from the Engine.IO
    socket (`relais_ws`), marking its writes and writing `RawFrame`s as they are."""

    class DirectWebSocket(base):  # type: ignore[misc, valid-type]
        writing = False

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            eio_socket = getattr(self.app, "__self__", None)  # the Engine.IO socket whose handler this is
            if eio_socket is not None:
                eio_socket.relais_ws = self
            try:
                return super().__call__(environ, start_response)
            finally:
                if eio_socket is not None:
                    eio_socket.relais_ws = None

        def send(self, message: Any) -> Any:
            self.writing = True
            try:
                if type(message) is RawFrame:
                    inner = getattr(self, "ws", None)
                    if inner is None or not inner.connected:
                        raise OSError("websocket closed")
                    inner.sock.sendall(message)
                    return None
                return super().send(message)
            finally:
                self.writing = False

    DirectWebSocket.__name__ = DirectWebSocket.__qualname__ = f"Direct{base.__name__}"
    return DirectWebSocket


class Writer:
    """Sends `events` frames of the relay to rooms, each frame encoded once (see the module's docstring)."""

    def __init__(self, server: Any) -> None:
        self.server = server  # python-socketio's Server
        self.direct = 0       # sockets a frame was written to directly, whole
        self.partial = 0      # ... in part, the rest queued
        self.queued = 0       # ... through the socket's queue (busy, not upgraded yet, or polling)

    def emit(self, name: str, data: Any, rooms: list[str], namespace: str = "/") -> None:
        server = self.server
        if namespace not in server.manager.rooms:
            return
        encoded = server.packet_class(sio_packet.EVENT, namespace=namespace, data=[name, data]).encode()
        if not isinstance(encoded, str):  # binary attachments: not what the relay sends; let python-socketio do it
            server.emit(name, data, to=rooms, namespace=namespace)
            return
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        frame = text_frame("4" + encoded)  # Engine.IO's MESSAGE, then the Socket.IO packet
        sockets = server.eio.sockets
        for _sid, eio_sid in server.manager.get_participants(namespace, rooms):
            eio_socket = sockets.get(eio_sid)
            if eio_socket is None:
                continue
            if not self._write(eio_socket, frame):
                self.queued += 1
                server._send_eio_packet(eio_sid, eio_pkt)

    def _write(self, eio_socket: Any, frame: bytes) -> bool:
        """Write `frame` to the socket now, or queue what the kernel did not take; False: not written, queue it
        as a packet (the socket's writer is busy or has something queued, or the socket is not a websocket yet)."""
        ws = getattr(eio_socket, "relais_ws", None)
        if ws is None or ws.writing or not eio_socket.upgraded or eio_socket.upgrading or eio_socket.closing \
                or eio_socket.closed or eio_socket.queue.qsize():
            return False
        inner = getattr(ws, "ws", None)
        if inner is None or not inner.connected:
            return False
        try:
            if not eio_socket.check_ping_timeout():
                return True  # the client is gone and the socket closed: Engine.IO would drop the packet too
            sent = inner.sock.send(frame, 0, timeout=0.0)  # gevent's socket: never waits
        except BlockingIOError:
            sent = 0
        except OSError:  # a broken connection: its reader sees it and closes the socket
            return True
        if sent >= len(frame):
            if not self.direct:
                log.info("live frames are written to the websockets directly, encoded once per frame")
            self.direct += 1
        else:
            if not self.partial:
                log.info("a live frame was written in part to a slow websocket (%d of %d bytes); the rest is queued "
                         "first for its writer (logged once per process)", sent, len(frame))
            self.partial += 1
            eio_socket.queue.put(RawPacket(frame[sent:]))
        return True
