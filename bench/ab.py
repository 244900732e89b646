"""A/B: `python -m bench.ab --baseline REV [--rounds 2] [--count 3000] [--batch 1] [--figure ingest|live]`

The ingest closed loop of figure 1 (signed Meta webhooks, 3 load-generator processes x 16 connections, counted
until every message is listed) for THIS checkout's app and for another commit's, alternated on the same machine
(baseline, this, baseline, this, ...), each on a fresh stack (`bench.common.Stack`: 1 gevent web process +
`BENCH_WORKERS` workers, 1 by default). On a shared, noisy box a figure moves by tens of percent between runs an
hour apart; alternating the two apps within minutes and reading the CPU per message beside the rate is how a change
is told from the noise.

The baseline is checked out with `git worktree` into a temporary directory (removed at the end) and runs with this
checkout's virtualenv, so it must not need other packages. Each stack takes a 300-message warm-up, then two
measured runs of `--count` messages: the first one is reported too, but read the second (connection pools,
prepared statements and caches are warm by then). Writes bench/out/ab.json and the `ab` section of RESULTS.md.

`--figure live [--agents 500] [--rate 200] [--seconds 10]`: figure 2 instead (bench.live_latency: the agents'
Node consoles connected, webhooks at a fixed rate, the time to the event at every agent), one fresh stack per app
and round, alternated the same way; the latencies and the CPU per message of the web process, the workers and the
simulated consoles. Writes bench/out/ab-live.json and the `ab-live` section.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Stack, baseline_worktree, log, machine_info, machine_line, revision, save_figure
from bench.ingest import RELAIS_COUNT, integrity, load, measured_run

NAME = "ab"


def measure(root: Path, label: str, count: int, batch: int) -> list[dict[str, Any]]:
    """Two measured closed-loop runs on a fresh stack running the app in `root`."""
    runs = []
    with Stack(label=f"ab-{label}", root=root) as stack:
        url = stack.base_url + "/webhooks/meta"
        load(url, prefix="w", count=300, procs=1)
        time.sleep(1.0)
        for k in range(2):
            r = measured_run(stack, url, RELAIS_COUNT, prefix=f"m{k}", count=count, batch=batch,
                             threads=16 if batch == 1 else 8)
            checked = integrity(stack, r)
            runs.append({"msgs_per_s": r.get("msgs_per_s"), "ack_msgs_per_s": r["ack_msgs_per_s"],
                         "cpu_ms_per_msg": r["cpu_ms_per_msg"], "lost": checked["lost"],
                         "duplicated": checked["duplicated"]})
            log(f"{label} run {k + 1}: {r.get('msgs_per_s') or 0:.0f} msg/s listed, CPU ms/msg {r['cpu_ms_per_msg']}, "
                f"lost {checked['lost']} dup {checked['duplicated']}")
            time.sleep(1.0)
    return runs


def run(baseline: str, rounds: int = 2, count: int = 3000, batch: int = 1) -> dict[str, Any]:
    info = machine_info()
    base_rev, this_rev = revision(baseline), revision("HEAD")
    results: dict[str, Any] = {"machine": info, "baseline": base_rev, "this": f"{this_rev} (working tree)",
                               "count": count, "batch": batch, "rounds": []}
    with baseline_worktree(base_rev) as tree:
        for _ in range(rounds):
            results["rounds"].append({"baseline": measure(tree, "baseline", count, batch),
                                      "this": measure(ROOT, "this", count, batch)})
    return save_figure(NAME, results, report)


def measure_live(root: Path, label: str, agents: int, rate: float, seconds: float) -> dict[str, Any]:
    from bench.live_latency import run as live_run

    r = live_run(rate=rate, seconds=seconds, agent_counts=(agents,), root=root, save=False)["runs"][0]
    cpu = r["cpu_ms_per_msg"]
    log(f"{label}: {agents} agents, queue p50 {r['p50']} p99 {r['p99']}, web CPU ms/msg {cpu.get('web')}")
    return {k: r.get(k) for k in ("p50", "p99", "steady_p50", "steady_p99", "delivered", "expected_deliveries",
                                  "ack_p50", "ack_p99", "cpu_ms_per_msg", "frames", "first_agent_p50", "spread_p50",
                                  "stages")}


def run_live(baseline: str, rounds: int, agents: int, rate: float, seconds: float) -> dict[str, Any]:
    info = machine_info()
    base_rev, this_rev = revision(baseline), revision("HEAD")
    results: dict[str, Any] = {"machine": info, "baseline": base_rev, "this": f"{this_rev} (working tree)",
                               "agents": agents, "rate": rate, "seconds": seconds, "rounds": []}
    with baseline_worktree(base_rev) as tree:
        for _ in range(rounds):
            results["rounds"].append({"baseline": measure_live(tree, "baseline", agents, rate, seconds),
                                      "this": measure_live(ROOT, "this", agents, rate, seconds)})
    return save_figure(f"{NAME}-live", results, report_live)


def report_live(res: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f}"

    lines = ["## A/B of two commits on live latency (figure 2)", "", machine_line(res["machine"]), "",
             f"{res['agents']} agents, {res['rate']:g} msg/s for {res['seconds']:g} s, baseline `{res['baseline']}` "
             f"against this checkout `{res['this']}`, alternated (each line: a fresh stack). Latency: webhook POST "
             "to the event showing the message at each agent's queue; steady: messages sent from 2 s on.", "",
             "The stages are p50s in ms (bench.live_latency's `stages`): POST to stored, to acked, to claimed by a "
             "drain, to its batch applied, to its event built, to the first agent; then the spread from the first "
             "agent to each.", "",
             "| round | app | p50 ms | p99 ms | steady p50 / p99 ms | delivered | frames | ack p99 ms | "
             "CPU ms/msg web | workers | consoles | stages: stored / acked / claimed / applied / built / first agent; "
             "spread |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, rnd in enumerate(res["rounds"], 1):
        for app in ("baseline", "this"):
            r = rnd[app]
            cpu = r["cpu_ms_per_msg"]
            lines.append(f"| {i} | {app} | {ms(r['p50'])} | {ms(r['p99'])} | {ms(r['steady_p50'])} / "
                         f"{ms(r['steady_p99'])} | {r['delivered']}/{r['expected_deliveries']} | {r['frames']} | "
                         f"{ms(r['ack_p99'])} | {cpu.get('web', 0):.2f} | {cpu.get('workers', 0):.2f} | "
                         f"{cpu.get('agents', 0):.2f} | {_stages(r)} |")
    return "\n".join(lines)


def _stages(r: dict[str, Any]) -> str:
    stages = r.get("stages")
    if not stages:
        return "-"
    from bench.live_latency import OLD_STAGES, STAGES

    steps = " / ".join(f"{stages[name][0] * 1000:.1f}" for name in (STAGES if "claimed" in stages else OLD_STAGES))
    return f"{steps}; {r['spread_p50'] * 1000:.1f}"


def report(res: dict[str, Any]) -> str:
    kind = "single-entry" if res["batch"] == 1 else f"{res['batch']}-entry"
    lines = ["## A/B of two commits on the ingest closed loop", "", machine_line(res["machine"]), "",
             f"{res['count']} {kind} messages per run, "
             f"baseline `{res['baseline']}` against this checkout `{res['this']}`, alternated (each line: a fresh "
             "stack, a warm-up, then run 1 and run 2; read run 2).", "",
             "| round | app | run | msgs/s until listed | CPU ms/msg web | workers | all postgres | lost / dup |",
             "|---|---|---|---|---|---|---|---|"]
    for i, rnd in enumerate(res["rounds"], 1):
        for app in ("baseline", "this"):
            for k, r in enumerate(rnd[app], 1):
                cpu = r["cpu_ms_per_msg"]
                rate = f"{r['msgs_per_s']:.0f}" if r["msgs_per_s"] else "not listed"
                lines.append(f"| {i} | {app} | {k} | {rate} | {cpu['web']:.2f} | {cpu['workers']:.2f} | "
                             f"{cpu['postgres_total']:.2f} | {r['lost']} / {r['duplicated']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a commit (e.g. HEAD~1, a hash)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1, help="entries per webhook (1 or 10)")
    parser.add_argument("--figure", choices=("ingest", "live"), default="ingest")
    parser.add_argument("--agents", type=int, default=500, help="live: connected agents")
    parser.add_argument("--rate", type=float, default=200.0, help="live: messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="live: seconds of load")
    args = parser.parse_args()
    if args.figure == "live":
        run_live(args.baseline, args.rounds, args.agents, args.rate, args.seconds)
    else:
        run(args.baseline, args.rounds, args.count, args.batch)


if __name__ == "__main__":
    main()
