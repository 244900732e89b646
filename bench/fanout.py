"""Figure 7: live fan-out. `python -m bench.fanout [--clients 500] [--per-process 250] [--worker gevent,gthread]`

One web process per worker class, one after the other: `gunicorn -w 1 -k gevent` (the production web worker: a
websocket is a greenlet) and `gunicorn -w 1 -k gthread --threads 600` (Flask-SocketIO's threading mode: each
websocket holds one gunicorn thread for its whole life, and each frame to it wakes its writer thread). `--clients` Node socket.io-client connections (bench/agents.mjs: websocket transport, API-token
auth, agents of brand 1), `--per-process` per Node process. Events are published the way committing workers
publish them (inbox/realtime/relay.py): one Redis message per commit on the app's `<prefix>live` channel, here
one `message.created` to room `brand:1` per message (from a separate process), so the figure isolates the web
process' fan-out from ingest.
  * latency at a low rate (5 events/s): publish -> received, p50/p99 over every (client, event);
  * throughput: a burst of `--burst` events published at once; deliveries/s = deliveries / (last receipt -
    first publish), and how many of the expected deliveries arrived;
  * memory: RSS and threads of the gunicorn worker before and after the clients connect.
Reference in the same run: bare Redis PUBLISH -> one subscriber (bench.refs), at the same low rate.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (OUT, PY, REDIS_URL, ROOT, Stack, log, machine_info, machine_line, ms, pct, save_figure,
                          write_section)
from bench.live_latency import CONSOLE_PARSE, Agents

NAME = "fanout"
PAD = "x" * 600  # a message.created payload is ~0.8 KB


def publish(redis_url: str, channel: str, count: int, rate: float, start_seq: int, room: str = "brand:1") -> None:
    """Publish `count` events the way a committing worker does (inbox/realtime/relay.py): one Redis message per
    commit, here one event per commit (the worst case for the relay's coalescing)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    t0 = time.time()
    for n in range(count):
        if rate > 0:
            delay = t0 + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        envelope = {"event": "message.created", "seq": start_seq + n, "rooms": [room],
                    "data": {"t": time.time(), "external_id": f"f{start_seq + n}", "text": PAD}}
        r.publish(channel, json.dumps([envelope]))
    r.close()


def proc_mem(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines() if ":" in line}
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}


def measure_phases(stack: Stack, urls: list[str], tokens: list[str], per: int, burst: int, tag: str,
                   web_pids: list[int]) -> dict[str, Any]:
    channel = stack.prefix + "live"
    before = [proc_mem(p) for p in web_pids]
    t_connect = time.time()
    clients = Agents(urls, tokens, tag, per=per).__enter__()
    connect_s = time.time() - t_connect
    time.sleep(2.0)
    after = [proc_mem(p) for p in web_pids]
    log(f"{tag}: {clients.connected}/{len(tokens)} clients connected in {connect_s:.1f} s; web RSS "
        f"{sum(b['rss_kb'] for b in before) / 1024:.0f} -> {sum(a['rss_kb'] for a in after) / 1024:.0f} MiB")
    cmd = [PY, "-m", "bench.fanout", "--publish", "--redis-url", REDIS_URL, "--channel", channel]
    low_count, low_rate = 30, 5.0
    subprocess.run(cmd + ["--count", str(low_count), "--rate", str(low_rate), "--start-seq", "0"], cwd=ROOT,
                   check=True, timeout=120)
    time.sleep(2.0)
    client_pids = [p.pid for p in clients.procs]
    web0, cli0 = sum(_cpu(p) for p in web_pids), sum(_cpu(p) for p in client_pids)
    t_burst = time.time()
    subprocess.run(cmd + ["--count", str(burst), "--rate", "0", "--start-seq", "100000"], cwd=ROOT, check=True,
                   timeout=120)
    expected = burst * clients.connected
    # wait until the web process(es) AND the client processes go idle: the burst is delivered and parsed
    deadline = time.time() + 120
    last = sum(_cpu(p) for p in web_pids + client_pids)
    while time.time() < deadline:
        time.sleep(1.0)
        cur = sum(_cpu(p) for p in web_pids + client_pids)
        if cur - last < 0.05:
            break
        last = cur
    cpu_burst = sum(_cpu(p) for p in web_pids) - web0
    cpu_clients = sum(_cpu(p) for p in client_pids) - cli0
    result = clients.stop()
    # rows: [client, event, external_id, seq, received, published t]
    low = [e[4] - e[5] for e in result["events"] if e[3] is not None and e[3] < 100000 and e[5]]
    burst_rows = [e for e in result["events"] if e[3] is not None and e[3] >= 100000]
    first_pub = min((e[5] for e in burst_rows), default=t_burst)
    last_recv = max((e[4] for e in burst_rows), default=t_burst)
    burst_lat = [e[4] - e[5] for e in burst_rows]
    return {
        "clients": len(tokens), "connected": clients.connected, "connected_at_end": result["connected_at_end"],
        "connect_seconds": connect_s, "web_before": before, "web_after": after,
        "rss_per_connection_kb": (sum(a["rss_kb"] for a in after) - sum(b["rss_kb"] for b in before))
        / max(1, clients.connected),
        "low_rate": low_rate, "low_count": low_count, "low_expected": low_count * clients.connected,
        "low_delivered": len(low), "low_p50": pct(low, 50), "low_p99": pct(low, 99),
        "burst": burst, "burst_expected": expected, "burst_delivered": len(burst_rows),
        "burst_seconds": last_recv - first_pub,
        "deliveries_per_s": len(burst_rows) / max(1e-6, last_recv - first_pub),
        "events_per_s": len(burst_rows) / max(1, clients.connected) / max(1e-6, last_recv - first_pub),
        "burst_p50": pct(burst_lat, 50), "burst_p99": pct(burst_lat, 99),
        "web_cpu_ms_per_delivery": cpu_burst * 1000 / max(1, len(burst_rows)),
        "client_cpu_ms_per_delivery": cpu_clients * 1000 / max(1, len(burst_rows)),
        "frames": result["frames"],
        "web_cpu_s_burst": cpu_burst, "client_cpu_s_burst": cpu_clients,
    }


def _cpu(pid: int) -> float:
    from bench.common import cpu_seconds
    return cpu_seconds(pid)


def run(n_clients: int = 500, per: int = 250, threads: int = 600, burst: int = 200,
        worker_classes: tuple[str, ...] = ("gevent", "gthread")) -> dict[str, Any]:
    """One fresh stack per gunicorn worker class, measured the same way, one after the other (same run)."""
    from bench.live_latency import redis_reference

    info = machine_info()
    res: dict[str, Any] = {"machine": info, "threads": threads, "runs": {}, "console_parse": CONSOLE_PARSE}
    for worker_class in worker_classes:
        with Stack(workers=0, agents=n_clients, threads=threads, worker_class=worker_class,
                   label=f"{NAME}-{worker_class}") as stack:
            if "ref_redis" not in res:
                res["ref_redis"] = redis_reference(5.0, 30)
            r = measure_phases(stack, [stack.base_url], stack.world["agent_tokens"][:n_clients], per, burst,
                               f"{NAME}-{worker_class}", stack.web_pids()[1:])
        res["runs"][worker_class] = r
        log(f"fan-out ({worker_class}): {r['deliveries_per_s']:.0f} deliveries/s ({r['events_per_s']:.1f} events/s "
            f"to {r['connected']} clients), web CPU {r['web_cpu_ms_per_delivery']:.4f} ms per delivery, low-rate "
            f"p50 {ms(r['low_p50'])} p99 {ms(r['low_p99'])}, {r['rss_per_connection_kb']:.0f} KiB per connection")
    return save_figure(NAME, res, report)


WORKER_LABEL = {"gevent": "`-k gevent --worker-connections 1000` (production: a greenlet per websocket)",
                "gthread": "`-k gthread --threads {threads}` (a thread per websocket)"}


def report(res: dict[str, Any]) -> str:
    ref = res["ref_redis"]
    runs: dict[str, Any] = res["runs"]
    kinds = list(runs)
    first = runs[kinds[0]]

    def row(label: str, fn: Any) -> str:
        return f"| {label} | " + " | ".join(fn(runs[k]) for k in kinds) + " |"

    def mem(r: dict[str, Any]) -> str:
        b, a = r["web_before"][0], r["web_after"][0]
        return (f"{b['rss_kb'] / 1024:.0f} MiB, {b['threads']} threads -> {a['rss_kb'] / 1024:.0f} MiB, "
                f"{a['threads']} threads: **{r['rss_per_connection_kb']:.0f} KiB per connection**")

    lines = [
        "## 7. Live fan-out from one web process", "", machine_line(res["machine"]), "",
        "One gunicorn web process (`-w 1`), once per worker class, one after the other in the same run. Clients: "
        "Node socket.io-client (bench/agents.mjs), websocket transport, API tokens, "
        + ("the clients of one Node process decoding a frame's text once for all of them (`--parse shared`), "
           if res.get("console_parse") == "shared" else "each client decoding its own copy of every frame, ")
        + f"{first['clients']} agents of brand 1. Events: `message.created` to `brand:1`, one Redis message each on "
        "the app's live channel from another process (as a worker's commit does); the web process's relay "
        "coalesces what arrives during a round into one `events` frame. Reference: a bare Redis PUBLISH -> "
        f"subscriber in the same run, p50 {ms(ref['p50'])} / p99 {ms(ref['p99'])}.", "",
        "| measure | " + " | ".join(WORKER_LABEL.get(k, k).format(threads=res["threads"]) for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
        row("clients connected (at the end)", lambda r: f"{r['connected']} ({r['connected_at_end']}) of "
            f"{r['clients']}, in {r['connect_seconds']:.1f} s"),
        row(f"latency at {first['low_rate']:g} events/s, publish -> client, p50 / p99 (ratio to Redis p50)",
            lambda r: f"**{ms(r['low_p50'])} / {ms(r['low_p99'])}** ({r['low_delivered']}/{r['low_expected']}; "
            f"{r['low_p50'] / ref['p50']:.0f}x)"),
        row(f"**burst of {first['burst']} events: deliveries/s**",
            lambda r: f"**{r['deliveries_per_s']:,.0f}** ({r['burst_delivered']:,}/{r['burst_expected']:,} in "
            f"{r['burst_seconds']:.1f} s, {r.get('frames', 'n/a')} frames; p50 {ms(r['burst_p50'])}, "
            f"p99 {ms(r['burst_p99'])})"),
        row("**web CPU per delivery** / client CPU per delivery",
            lambda r: f"**{r['web_cpu_ms_per_delivery']:.4f} ms** / {r.get('client_cpu_ms_per_delivery', 0):.4f} ms"),
        row("clients dropped during the burst", lambda r: f"{r['connected'] - r['connected_at_end']} of "
            f"{r['connected']}"),
        row("web worker RSS / threads", mem),
    ]
    if "gevent" in runs and "gthread" in runs:
        g, t = runs["gevent"], runs["gthread"]
        lines += ["", f"gevent vs gthread, same run: web CPU per delivery **"
                  f"{t['web_cpu_ms_per_delivery'] / max(1e-9, g['web_cpu_ms_per_delivery']):.1f}x less**, "
                  f"deliveries/s {g['deliveries_per_s'] / max(1e-9, t['deliveries_per_s']):.2f}x, memory per "
                  f"connection {g['rss_per_connection_kb']:.0f} vs {t['rss_per_connection_kb']:.0f} KiB."]
    lines += ["", "The Node client processes run on the same 2 cores, so the deliveries/s are a floor for the web "
              "process, not its ceiling.", "", f"Raw data: `bench/out/{NAME}.json`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--threads", type=int, default=600)
    parser.add_argument("--worker", default="gevent,gthread", help="gunicorn worker classes, comma-separated")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--start-seq", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        publish(args.redis_url, args.channel, args.count, args.rate, args.start_seq)
        return
    if args.report_only:
        write_section(NAME, report(json.loads((OUT / f"{NAME}.json").read_text())))
        return
    run(args.clients, args.per_process, args.threads, args.burst, tuple(args.worker.split(",")))


if __name__ == "__main__":
    main()
