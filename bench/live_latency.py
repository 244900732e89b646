"""Figure 2: live latency. `python -m bench.live_latency [--rate 20] [--agents 1 100]`

Time from the webhook POST (request start, at the load generator) to the `message.created` Socket.IO event
at connected agents (python-socketio websocket clients with API-token auth, 25 per process, in separate
processes), p50/p99, with 1 and 100 connected agents, at a modest open-loop rate. Reference measured in the
same run: a bare Redis PUBLISH -> subscriber round trip at the same rate (bench.refs).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time
from typing import Any

from bench.common import (OUT, PY, REDIS_URL, ROOT, Stack, log, machine_info, machine_line, ms, pct, run_procs,
                          save_json, write_section)
from bench.ingest import RELAIS_COUNT, CountWatcher, load

NAME = "live_latency"
PER_PROCESS = 25


def redis_reference(rate: float, count: int) -> dict[str, Any]:
    channel = f"relais-bench-ref-{time.time_ns()}"
    out = OUT / "ref-redis.json"
    sub = subprocess.Popen([PY, "-m", "bench.refs", "redis-sub", "--redis-url", REDIS_URL, "--channel", channel,
                            "--count", str(count), "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    sub.stdout.readline()  # READY
    run_procs([[PY, "-m", "bench.refs", "redis-pub", "--redis-url", REDIS_URL, "--channel", channel,
                "--count", str(count), "--rate", str(rate)]])
    sub.wait(60)
    data = json.loads(out.read_text())
    lat = data["latencies"]
    return {"count": count, "received": data["received"], "p50": pct(lat, 50), "p99": pct(lat, 99),
            "max": max(lat) if lat else None}


def run_agents(stack: Stack, n_agents: int, rate: float, seconds: float) -> dict[str, Any]:
    tokens = stack.world["agent_tokens"][:n_agents]
    procs, outs = [], []
    for start in range(0, n_agents, PER_PROCESS):
        out = OUT / f"agents-{n_agents}-{start}.json"
        outs.append(out)
        procs.append(subprocess.Popen([PY, "-m", "bench.agents", "--url", stack.base_url, "--tokens",
                                       ",".join(tokens[start:start + PER_PROCESS]), "--out", str(out)],
                                      cwd=ROOT, stdout=subprocess.PIPE, text=True))
    connected = 0
    for p in procs:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("READY"):
                connected += int(line.split()[1])
                break
    log(f"{connected}/{n_agents} agents connected")
    time.sleep(1.0)
    prefix = f"l{n_agents}x"
    count = int(rate * seconds)
    watcher = CountWatcher(stack, RELAIS_COUNT, prefix, count, timeout=120)
    result = load(stack.base_url + "/webhooks/meta", prefix=prefix, count=count, rate=rate, procs=1, threads=16)
    watcher.wait()
    time.sleep(3.0)  # the last events on their way to the clients
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    return collect(result, outs, prefix, n_agents=n_agents, connected=connected, rate=rate, count=count)


def collect(result: dict[str, Any], outs: list[Any], prefix: str, *, n_agents: int, connected: int,
            rate: float, count: int) -> dict[str, Any]:
    """Latency from each acked webhook POST to each agent's receipt of its message.created (the agents'
    output files are read and removed), with the ack latencies."""
    sent = {f"{prefix}p0-{int(r[0])}": r[2] for r in result["rows"] if r[4] == 200}
    latencies, delivered, connected_end = [], 0, 0
    for out in outs:
        data = json.loads(out.read_text())
        out.unlink()
        connected_end += data["connected_at_end"]
        for _client, mid, received in data["events"]:
            if mid in sent:
                latencies.append(received - sent[mid])
                delivered += 1
    ack = [r[3] - r[1] for r in result["rows"]]
    return {"agents": n_agents, "connected": connected, "connected_at_end": connected_end, "rate": rate,
            "messages": count, "acked": len(sent), "statuses": result["statuses"],
            "expected_deliveries": len(sent) * connected, "delivered": delivered,
            "p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies) if latencies else None,
            "ack_p50": pct(ack, 50), "ack_p99": pct(ack, 99)}


def run(rate: float = 20.0, seconds: float = 10.0, agent_counts: tuple[int, ...] = (1, 100),
        threads: int = 64) -> dict[str, Any]:
    info = machine_info()
    results: dict[str, Any] = {"machine": info, "rate": rate, "seconds": seconds, "threads": threads, "runs": []}
    with Stack(workers=2, agents=max(agent_counts), threads=threads, label=NAME) as stack:
        load(stack.base_url + "/webhooks/meta", prefix="lw", count=100, procs=1)  # warm-up
        results["ref_redis"] = redis_reference(rate, int(rate * seconds))
        log(f"ref redis pub/sub: p50 {ms(results['ref_redis']['p50'])} p99 {ms(results['ref_redis']['p99'])}")
        for n in agent_counts:
            r = run_agents(stack, n, rate, seconds)
            results["runs"].append(r)
            log(f"{n} agents: p50 {ms(r['p50'])} p99 {ms(r['p99'])}, delivered {r['delivered']}/"
                f"{r['expected_deliveries']}, ack p99 {ms(r['ack_p99'])}")
    save_json(NAME if threads == 64 else f"{NAME}-threads{threads}", results)
    return results


def report(all_results: list[dict[str, Any]]) -> str:
    first = all_results[0]
    ref = first["ref_redis"]
    lines = ["## 2. Live latency (webhook POST -> `message.created` at the agents)", "", machine_line(first["machine"]),
             "", f"Open loop, {first['rate']:g} msg/s for {first['seconds']:g} s, single-entry webhooks; agents are "
             "python-socketio websocket clients (API token auth), 25 per process; gunicorn gthread, 1 process, "
             "2 RQ workers.", "",
             "| run | gunicorn threads | agents connected (end) | deliveries | p50 | p99 | max | ratio p50 / p99 to Redis ref | ack p99 |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| reference: bare Redis PUBLISH -> subscriber | | 1 | {ref['received']}/{ref['count']} | {ms(ref['p50'])} | "
             f"{ms(ref['p99'])} | {ms(ref['max'])} | 1 / 1 | |"]
    for res in all_results:
        ref = res["ref_redis"]
        for r in res["runs"]:
            ratio = (f"{r['p50'] / ref['p50']:.0f}x / {r['p99'] / ref['p99']:.0f}x"
                     if r["p50"] and ref["p50"] else "n/a")
            lines.append(f"| **{r['agents']} agent(s)** | {res['threads']} | {r['connected']} ({r['connected_at_end']}) | "
                         f"{r['delivered']}/{r['expected_deliveries']} | **{ms(r['p50'])}** | **{ms(r['p99'])}** | "
                         f"{ms(r['max'])} | {ratio} | {ms(r['ack_p99'])} |")
    lines += ["", "Raw data: `bench/out/live_latency*.json`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--plan", default="64:1,50;256:100",
                        help="gunicorn threads:agent counts, ';' between stacks (each stack is fresh)")
    args = parser.parse_args()
    run_plan(args.rate, args.seconds, args.plan)


def run_plan(rate: float = 20.0, seconds: float = 10.0, plan: str = "64:1,50;256:100") -> list[dict[str, Any]]:
    results = []
    for part in plan.split(";"):
        threads, counts = part.split(":")
        results.append(run(rate, seconds, tuple(int(c) for c in counts.split(",")), int(threads)))
    write_section(NAME, report(results))
    return results


if __name__ == "__main__":
    main()
