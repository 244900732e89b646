"""A load generator process: signed Meta Messenger webhooks to one URL, open- or closed-loop.

    python -m bench.loadgen --url http://127.0.0.1:P/webhooks/meta --secret S --page-id ID \\
        --count 2000 --batch 1 --rate 250 --threads 16 --prefix run1-p0 --out out.json

Every message has a unique mid "<prefix>-<n>"; customers (PSIDs) rotate over `--psids` per process, so
conversations continue as in real traffic. Bodies are built, signed and made into
requests' bytes before the clock starts (one kept-alive connection per thread, see Poster).
`--rate 0` is closed loop (each thread posts as soon as its previous post was answered); `--rate R` is open
loop: POST n is scheduled at start + n / (R / batch) whatever happened before, and its latency is counted from
that scheduled time (so a stalled server cannot hide queueing: no coordinated omission).
`--start-at` (epoch seconds) lines several processes up on the same start.
Output JSON: one row per POST [first message index, scheduled, started, answered (epoch s), HTTP status], and
`cpu_s`, the process's CPU seconds while it sent (reported beside the server's: it shares the cores).
"""
from __future__ import annotations

import argparse
import json
import queue
import re
import socket
import threading
import time
from urllib.parse import urlsplit

from inbox.demo.fake_meta import messaging_message, meta_json, page_entry, page_payload, sign_meta


def build_bodies(args: argparse.Namespace) -> list[tuple[int, bytes, dict[str, str]]]:
    bodies = []
    now_ms = int(time.time() * 1000)
    for first in range(0, args.count, args.batch):
        entries = []
        for n in range(first, min(args.count, first + args.batch)):
            psid = f"{args.prefix}-c{n % args.psids}"
            item = messaging_message(args.page_id, psid, f"bench message {n} from {psid}",
                                     mid=f"{args.prefix}-{n}", ts_ms=now_ms + n)
            entries.append(page_entry(args.page_id, messaging=[item], time_value=now_ms + n))
        raw = meta_json(page_payload(*entries))
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_meta(args.secret, raw),
                   "User-Agent": "facebookexternalua"}
        bodies.append((first, raw, headers))
    return bodies


class Closed(Exception):
    """The server closed the connection before a whole answer arrived."""


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")


class Poster:
    """POSTs on one kept-alive HTTP/1.1 connection over a plain socket: each request's bytes are built before the
    clock starts (`request`), and an answer is read by its status line and Content-Length (or its chunks, or until
    the server closes). The load generator shares the cores with the server it measures; http.client, used until
    2026-11-25, built the headers for each POST and parsed each answer's headers with the email package: 0.13-0.16 ms of
    the box's CPU per single-entry webhook, a fifth of what the server itself spent."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host, self.path = parts.netloc, parts.path or "/"
        self.sock: socket.socket | None = None
        self.buffer = b""

    def request(self, raw: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(raw)}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw

    def post(self, request: bytes) -> int:
        """The answer's status; -1 the server closed the connection without answering (twice, or on a new
        connection), -2 it reset the connection, -3 no connection or another socket error (timeouts included)."""
        for attempt in (1, 2):
            reused = self.sock is not None
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(self.address, timeout=10)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.buffer = b""
                self.sock.sendall(request)
                status, close = self._answer()
            except (Closed, BrokenPipeError, ConnectionResetError) as exc:
                # a kept-alive connection the server closed before reading this request: reconnect once (the app
                # answers a repeated message id as already received, so a resend cannot duplicate it)
                self.close()
                if attempt == 2 or not reused:
                    return -2 if isinstance(exc, ConnectionResetError) else -1
                continue
            except (OSError, ValueError):  # ValueError: an answer that is not HTTP
                self.close()
                return -3
            if close:
                self.close()
            return status
        return -1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        return chunk

    def _answer(self) -> tuple[int, bool]:
        buffer = self.buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._recv()
        head, body_at = buffer[:end].lower(), end + 4
        status = int(head[9:12])
        close = b"\r\nconnection: close" in head
        length = _CONTENT_LENGTH.search(head)
        if length is not None:
            done = body_at + int(length.group(1))
            while len(buffer) < done:
                buffer += self._recv()
        elif b"\r\ntransfer-encoding: chunked" in head:
            done = body_at
            while True:
                while (line_end := buffer.find(b"\r\n", done)) < 0:
                    buffer += self._recv()
                size = int(buffer[done:line_end].split(b";")[0], 16)
                done = line_end + 2 + size + 2  # the chunk and its CRLF (no trailers)
                while len(buffer) < done:
                    buffer += self._recv()
                if size == 0:
                    break
        else:  # no length: the body ends when the server closes
            try:
                while True:
                    buffer += self._recv()
            except Closed:
                pass
            return status, True
        self.buffer = buffer[done:]
        return status, close


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--page-id", required=True)
    parser.add_argument("--count", type=int, required=True, help="messages (not POSTs)")
    parser.add_argument("--batch", type=int, default=1, help="entries (messages) per POST")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 = closed loop")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--psids", type=int, default=200)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    bodies = build_bodies(args)
    requests = [Poster(args.url).request(raw, headers) for _first, raw, headers in bodies]
    rows: list[list[float]] = [[] for _ in bodies]
    work: queue.Queue[tuple[int, float] | None] = queue.Queue()

    def worker() -> None:
        poster = Poster(args.url)
        while True:
            item = work.get()
            if item is None:
                return
            index, scheduled = item
            first = bodies[index][0]
            started = time.time()
            status = poster.post(requests[index])
            rows[index] = [first, scheduled or started, started, time.time(), status]

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    t0, cpu0 = time.time(), time.process_time()
    if args.rate <= 0:
        for index in range(len(bodies)):
            work.put((index, 0.0))
    else:
        interval = args.batch / args.rate
        for index in range(len(bodies)):
            scheduled = t0 + index * interval
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            work.put((index, scheduled))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    cpu_s = time.process_time() - cpu0  # this process's own CPU while it sent (the bodies were built before)
    with open(args.out, "w") as f:
        json.dump({"prefix": args.prefix, "count": args.count, "batch": args.batch, "rate": args.rate,
                   "threads": args.threads, "t0": t0, "cpu_s": cpu_s, "rows": rows}, f)


if __name__ == "__main__":
    main()
