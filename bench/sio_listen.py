"""A process of `--tokens` python-socketio clients (websocket transport, API-token auth) recording chosen events.

Prints "READY <connected>" once every client tried to connect. On SIGTERM writes --out:
{"connected", "connected_at_end", "failed", "events": [[client, event, seq, sent_t, recv_epoch, data?], ...]}
where sent_t is data["data"]["t"] when the publisher put one there; `--keep-data` keeps the payload too.
Used by bench.sla_timers (sla.breached), bench.fanout and bench.scale_out.
"""
from __future__ import annotations

import argparse
import json
import signal
import threading
import time

import socketio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="one URL, or several comma-separated (clients round-robin)")
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--events", default="message.created")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    urls = args.url.split(",")
    events: list[list] = []
    lock = threading.Lock()
    clients, failed = [], 0
    for i, token in enumerate(args.tokens.split(",")):
        client = socketio.Client(reconnection=False)
        wanted = set(args.events.split(","))

        def handler(frame, i=i):  # the server sends `events` frames: lists of {"event", "seq", "data"}
            now = time.time()
            rows = []
            for envelope in frame or []:
                if envelope.get("event") not in wanted:
                    continue
                inner = envelope.get("data") or {}
                row = [i, envelope["event"], envelope.get("seq"), inner.get("t") if isinstance(inner, dict) else None,
                       now]
                if args.keep_data:
                    row.append(inner)
                rows.append(row)
            with lock:
                events.extend(rows)
        client.on("events", handler)
        try:
            client.connect(urls[i % len(urls)], auth={"token": token}, transports=["websocket"], wait_timeout=20)
            clients.append(client)
        except Exception as exc:  # noqa: BLE001
            failed += 1
            print(f"client {i} failed: {exc}", flush=True)
    print(f"READY {len(clients)}", flush=True)
    # a plain flag polled by the main thread: Event.set() inside a signal handler can deadlock on the
    # Condition lock the interrupted Event.wait() holds
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    while not stopping[0]:
        time.sleep(0.2)
    with lock:
        snapshot = list(events)
    with open(args.out, "w") as f:
        json.dump({"connected": len(clients), "connected_at_end": sum(1 for c in clients if c.connected),
                   "failed": failed, "events": snapshot}, f)
    for c in clients:
        try:
            c.disconnect()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
