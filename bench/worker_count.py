"""How many RQ worker processes on this box: `python -m bench.worker_count [--rounds 3] [--workers 1,2]`

Figure 1's runs (the closed loop of single-entry webhooks until listed, then 500 msg/s offered, single-entry and
10-entry, for the ack latency) on a fresh stack of 1 gevent web process + N workers, for each N in turn, repeated
`--rounds` times (1, 2, 1, 2, ...), so the box's drift falls on every N alike. This is what the README's sizing rule
("one worker per core the web process and PostgreSQL leave free") rests on: on 2 shared cores a second worker
runs a second drain at the same time as the first (each claims its own batch with SKIP LOCKED), which adds no
throughput when the cores are already busy and takes CPU from the web process answering webhooks.

Writes bench/out/worker_count.json and the `worker_count` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.common import Stack, log, machine_info, machine_line, ms, save_figure
from bench.ingest import RELAIS_COUNT, integrity, load, measured_run

NAME = "worker_count"
# (key, entries per webhook, messages, rate offered (0: closed loop), load processes, connections per process)
RUNS = (("closed_single", 1, 3000, 0.0, 3, 16), ("open500_single", 1, 2500, 500.0, 4, 32),
        ("open500_batch10", 10, 1500, 500.0, 2, 32))


def measure(workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": workers}
    with Stack(workers=workers, label=f"{NAME}-{workers}") as stack:
        url = stack.base_url + "/webhooks/meta"
        load(url, prefix="w", count=300, procs=1)  # warm-up, as in figure 1
        time.sleep(1.0)
        for key, batch, count, rate, procs, threads in RUNS:
            r = measured_run(stack, url, RELAIS_COUNT, prefix=key[:2] + key[-1], count=count, batch=batch,
                             rate=rate, procs=procs, threads=threads)
            checked = integrity(stack, r)
            out[key] = {"msgs_per_s": r.get("msgs_per_s"), "ack_p50": r["ack_p50"], "ack_p99": r["ack_p99"],
                        "cpu_ms_per_msg": r["cpu_ms_per_msg"], "lost": checked["lost"],
                        "duplicated": checked["duplicated"]}
            log(f"{workers} worker(s) {key}: {r.get('msgs_per_s') or 0:.0f} msg/s listed, ack p50 {ms(r['ack_p50'])} "
                f"p99 {ms(r['ack_p99'])}, lost {checked['lost']} dup {checked['duplicated']}")
            time.sleep(1.0)
    return out


def run(rounds: int = 3, counts: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine_info(), "counts": list(counts), "rounds": []}
    for _ in range(rounds):
        results["rounds"].append([measure(n) for n in counts])
    return save_figure(NAME, results, report)


def report(res: dict[str, Any]) -> str:
    lines = ["## Worker processes: 1 or 2 on this box", "", machine_line(res["machine"]), "",
             "`python -m bench.worker_count`: figure 1's closed loop (3,000 single-entry messages) and its open loops "
             "(500 msg/s offered, single-entry and 10-entry) on a fresh stack of 1 gevent web process + N RQ "
             "workers, the worker counts alternated round by round.", "",
             "| round | workers | closed loop msgs/s until listed | CPU ms/msg web / workers / all postgres | "
             "500 msg/s single-entry ack p50 / p99 | 500 msg/s 10-entry ack p50 / p99 | lost / dup |",
             "|---|---|---|---|---|---|---|"]
    by_count: dict[int, dict[str, list[float]]] = {}
    for i, rnd in enumerate(res["rounds"], 1):
        for m in rnd:
            c, s, b = m["closed_single"], m["open500_single"], m["open500_batch10"]
            cpu = c["cpu_ms_per_msg"]
            lost = sum(m[k]["lost"] for k, *_ in RUNS)
            dup = sum(m[k]["duplicated"] for k, *_ in RUNS)
            rate = f"{c['msgs_per_s']:.0f}" if c["msgs_per_s"] else "not listed"
            lines.append(f"| {i} | {m['workers']} | {rate} | {cpu['web']:.2f} / {cpu['workers']:.2f} / "
                         f"{cpu['postgres_total']:.2f} | {ms(s['ack_p50'])} / **{ms(s['ack_p99'])}** | "
                         f"{ms(b['ack_p50'])} / **{ms(b['ack_p99'])}** | {lost} / {dup} |")
            agg = by_count.setdefault(m["workers"], {"rate": [], "p99s": [], "p99b": []})
            agg["rate"].append(c["msgs_per_s"] or 0.0)
            agg["p99s"].append(s["ack_p99"])
            agg["p99b"].append(b["ack_p99"])
    lines.append("")
    for n, agg in sorted(by_count.items()):
        lines.append(f"- {n} worker(s), medians over {len(agg['rate'])} rounds: closed loop "
                     f"**{statistics.median(agg['rate']):.0f} msg/s**, ack p99 at 500 msg/s "
                     f"**{ms(statistics.median(agg['p99s']))}** single-entry, "
                     f"**{ms(statistics.median(agg['p99b']))}** 10-entry.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts to alternate, comma-separated")
    args = parser.parse_args()
    run(args.rounds, tuple(int(n) for n in args.workers.split(",")))


if __name__ == "__main__":
    main()
