"""A load generator process: signed Meta Messenger webhooks to one URL, open- or closed-loop.

    python -m bench.loadgen --url http://127.0.0.1:P/webhooks/meta --secret S --page-id ID \\
        --count 2000 --batch 1 --rate 250 --threads 16 --prefix run1-p0 --out out.json

Every message has a unique mid "<prefix>-<n>"; customers (PSIDs) rotate over `--psids` per process, so
conversations continue as in real traffic. Bodies are built and signed before the clock starts.
`--rate 0` is closed loop (each thread posts as soon as its previous post was answered); `--rate R` is open
loop: POST n is scheduled at start + n / (R / batch) whatever happened before, and its latency is counted from
that scheduled time (so a stalled server cannot hide queueing: no coordinated omission).
`--start-at` (epoch seconds) lines several processes up on the same start.
Output JSON: one row per POST [first message index, scheduled, started, answered (epoch s), HTTP status], and
`cpu_s`, the process's CPU seconds while it sent (reported beside the server's: it shares the cores).
"""
from __future__ import annotations

import argparse
import http.client
import json
import queue
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


class Poster:
    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.conn: http.client.HTTPConnection | None = None

    def post(self, raw: bytes, headers: dict[str, str]) -> int:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.request("POST", self.path, body=raw, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # the server closed an idle keep-alive connection before reading this request: reconnect once
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    return -1 if not isinstance(exc, ConnectionResetError) else -2
            except OSError:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                return -3
        return -1


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
    rows: list[list[float]] = [[] for _ in bodies]
    work: queue.Queue[tuple[int, float] | None] = queue.Queue()

    def worker() -> None:
        poster = Poster(args.url)
        while True:
            item = work.get()
            if item is None:
                return
            index, scheduled = item
            first, raw, headers = bodies[index]
            started = time.time()
            status = poster.post(raw, headers)
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
