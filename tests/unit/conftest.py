"""Shared fixtures for the adapter tests: the fake Graph API and a local webhook receiver."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from inbox.demo.fake_meta import FakeMeta


@pytest.fixture
def fake_graph() -> Iterator[FakeMeta]:
    """A fresh fake Graph API per test, checking appsecret_proof against "app-secret"."""
    with FakeMeta(app_secret="app-secret") as fake:
        yield fake


@dataclass(frozen=True)
class ReceivedPost:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP endpoint that records what it receives and answers from a script.

    `answers` is consumed one per request; when empty, `default_answer` is used.
    """
    url: str = ""
    received: list[ReceivedPost] = field(default_factory=list)
    answers: deque[tuple[int, bytes, dict[str, str]]] = field(default_factory=deque)
    default_answer: tuple[int, bytes, dict[str, str]] = (200, b'{"ok": true}', {})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.answers.append((status, body, headers or {}))

    def record(self, post: ReceivedPost) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            self.received.append(post)
            return self.answers.popleft() if self.answers else self.default_answer


def _receiver_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer, headers = receiver.record(
                ReceivedPost("POST", self.path, dict(self.headers.items()), body))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/hook"
