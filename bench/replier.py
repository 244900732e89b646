"""A reply load process for the outbound figure: agents' replies through the REST API, closed loop.
`python -m bench.replier --url BASE --token T --conversations 1,2,3 --prefix K --threads 8 --out f.json
[--per-conversation N]`
Each reply carries idempotency_key "<prefix>-bench-<conversation id>" (with N > 1: "...-<k>", the k-th reply to that
conversation, posted once the one before it was answered, as an agent writes them). Rows: [key, posted epoch s,
answered, status, id]."""
from __future__ import annotations

import argparse
import json
import queue
import threading
import time

import requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--conversations", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-conversation", type=int, default=1)
    args = parser.parse_args()
    work: queue.Queue[int | None] = queue.Queue()
    for cid in args.conversations.split(","):
        work.put(int(cid))
    rows: list[list] = []
    lock = threading.Lock()

    def run() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {args.token}"
        while True:
            try:
                cid = work.get_nowait()
            except queue.Empty:
                return
            for k in range(args.per_conversation):
                key = f"{args.prefix}-bench-{cid:08d}" + (f"-{k}" if args.per_conversation > 1 else "")
                started = time.time()
                r = session.post(f"{args.url}/api/v1/conversations/{cid}/messages",
                                 json={"text": f"Bonjour, reply {key}", "kind": "reply", "idempotency_key": key},
                                 timeout=30)
                row = [key, started, time.time(), r.status_code, r.json().get("id") if r.ok else r.text[:200]]
                with lock:
                    rows.append(row)

    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(args.out, "w") as f:
        json.dump({"rows": rows}, f)


if __name__ == "__main__":
    main()
