"""Reference measurements, each in its own process, run in the same run as the figure they anchor.

    python -m bench.refs pg-insert --dsn postgresql://... --threads 4 --seconds 5 --out f.json
        single-row INSERT transactions/s (psycopg, autocommit: one transaction and one fsync per row), each
        thread on its own connection. `--threads 1` is the serial reference the issue defines ("raw single-row
        INSERT transactions per second into PostgreSQL from Python": one connection, one row per commit);
        with several threads PostgreSQL shares fsyncs between concurrent commits, so the rate is higher.
    python -m bench.refs redis-sub --channel C --count N --out f.json     (prints READY once subscribed)
    python -m bench.refs redis-pub --channel C --count N --rate R
        bare Redis PUBLISH -> subscriber round trip (the floor under a Socket.IO event through Redis)
    python -m bench.refs graph-send --base http://127.0.0.1:P/v21.0 --count 300 --threads 8 --out f.json
        a bare client's Send API calls/s against FakeMeta (the ceiling for the outbound figure)
"""
from __future__ import annotations

import argparse
import json
import threading
import time

PAYLOAD = json.dumps({"object": "page", "entry": [{"id": "1000000001", "time": 0, "messaging": [
    {"sender": {"id": "psid-0000"}, "recipient": {"id": "1000000001"}, "timestamp": 0,
     "message": {"mid": "m_" + "x" * 43, "text": "bench message 0 from a customer of the page"}}]}]})


def pg_insert(args: argparse.Namespace) -> None:
    import psycopg

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_ref_insert")
        conn.execute("CREATE TABLE bench_ref_insert (id bigserial PRIMARY KEY, mid text NOT NULL UNIQUE, "
                     "body jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())")
    counts = [0] * args.threads
    stop = threading.Event()

    def run(i: int) -> None:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                conn.execute("INSERT INTO bench_ref_insert (mid, body) VALUES (%s, %s)", (f"t{i}-{n}", PAYLOAD))
                n += 1
            counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
    started = time.time()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM bench_ref_insert").fetchone()[0]  # type: ignore[index]
        conn.execute("DROP TABLE bench_ref_insert")
    result = {"threads": args.threads, "seconds": elapsed, "rows": rows, "tx_per_s": rows / elapsed}
    with open(args.out, "w") as f:
        json.dump(result, f)


def redis_sub(args: argparse.Namespace) -> None:
    import redis

    r = redis.Redis.from_url(args.redis_url)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(args.channel)
    while pubsub.get_message(timeout=0.1) is None and not pubsub.subscribed:
        pass
    print("READY", flush=True)
    latencies: list[float] = []
    deadline = time.time() + args.timeout
    while len(latencies) < args.count and time.time() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message is None:
            continue
        sent = json.loads(message["data"])["t"]
        latencies.append(time.time() - sent)
    pubsub.close()
    r.close()
    with open(args.out, "w") as f:
        json.dump({"count": args.count, "received": len(latencies), "latencies": latencies}, f)


def redis_pub(args: argparse.Namespace) -> None:
    import redis

    r = redis.Redis.from_url(args.redis_url)
    t0 = time.time()
    for n in range(args.count):
        delay = t0 + n / args.rate - time.time()
        if delay > 0:
            time.sleep(delay)
        # a payload the size of a message.created event
        r.publish(args.channel, json.dumps({"t": time.time(), "n": n, "pad": PAYLOAD}))
    r.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pg-insert")
    p.add_argument("--dsn", required=True)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", required=True)
    for name in ("redis-sub", "redis-pub"):
        q = sub.add_parser(name)
        q.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
        q.add_argument("--channel", required=True)
        q.add_argument("--count", type=int, default=500)
        q.add_argument("--rate", type=float, default=50.0)
        q.add_argument("--timeout", type=float, default=60.0)
        q.add_argument("--out")
    args = parser.parse_args()
    {"pg-insert": pg_insert, "redis-sub": redis_sub, "redis-pub": redis_pub}[args.cmd](args)




def graph_send(args: argparse.Namespace) -> None:
    """Reference for the outbound figure: a bare client POSTing Send API calls straight to the fake."""
    import hashlib
    import hmac

    import requests

    token = "EAAB-test-page-token"
    proof = hmac.new(args.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
    counter = iter(range(args.count))
    lock = threading.Lock()
    statuses: list[int] = []

    def run() -> None:
        session = requests.Session()
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            r = session.post(f"{args.base}/{args.page_id}/messages",
                             json={"recipient": {"id": f"ref-{n}"}, "message": {"text": f"ref {n}"},
                                   "messaging_type": "RESPONSE", "access_token": token, "appsecret_proof": proof},
                             timeout=30)
            with lock:
                statuses.append(r.status_code)

    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    with open(args.out, "w") as f:
        json.dump({"count": args.count, "ok": statuses.count(200), "seconds": elapsed,
                   "per_s": args.count / elapsed}, f)


def _main2() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--page-id", default="1000000001")
    parser.add_argument("--app-secret", default="test-app-secret")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--out", required=True)
    graph_send(parser.parse_args())


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "graph-send":
        sys.argv.pop(1)
        _main2()
    else:
        main()
