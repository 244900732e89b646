"""An agent-console stand-in process for the live-latency figure: `--n` python-socketio clients (websocket,
token auth), each recording when every `message.created` arrives. Prints "READY <connected>" once all tried to
connect; on SIGTERM writes {"connected", "failed", "events": [[client, external_id, recv epoch s], ...]}."""
from __future__ import annotations

import argparse
import json
import signal
import threading
import time

import socketio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True, help="comma-separated API tokens, one per client")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tokens = args.tokens.split(",")
    events: list[list] = []
    lock = threading.Lock()
    clients, failed = [], 0

    for i, token in enumerate(tokens):
        client = socketio.Client(reconnection=False)

        def on_message(data, i=i):
            now = time.time()
            with lock:
                events.append([i, (data.get("data") or {}).get("external_id"), now])

        client.on("message.created", on_message)
        try:
            client.connect(args.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
            clients.append(client)
        except Exception as exc:  # noqa: BLE001
            failed += 1
            print(f"client {i} failed: {exc}", flush=True)
    print(f"READY {len(clients)}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    connected_at_end = sum(1 for c in clients if c.connected)
    with lock:
        snapshot = list(events)
    with open(args.out, "w") as f:
        json.dump({"connected": len(clients), "connected_at_end": connected_at_end, "failed": failed,
                   "events": snapshot}, f)
    for c in clients:
        try:
            c.disconnect()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
