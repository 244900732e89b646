"""`python -m bench.run_all` (make bench): every figure once, in order, each on its own fresh stack, each
writing its section of bench/RESULTS.md and its raw JSON in bench/out/. Bounded: about 8 minutes on 2 cores here
(2026-11-23 afternoon; 17-20 on the slower machine of the morning); figures 1 and 2 run with 1 and with 2 workers
since 2026-11-24, about 3 minutes more (`--full` took 22.6 minutes that night, about 14 of them without the 1M queue).
`--quick` runs smaller counts (a smoke run, a few minutes).

The queue-at-scale figure runs at 10,000 conversations here; the 1,000,000-conversation dataset (10M messages,
about 8 minutes more, so over the 20-minute budget) only with `--full` or BENCH_QUEUE_1M=1. The headline 1M numbers come from
`python -m bench.queue_scale --conversations 10000,1000000`."""
from __future__ import annotations

import argparse
import os
import time

from bench import (embedded, fanout, ingest, live_latency, outbound, profile, queue_scale, reconnect, scale_out,
                   sla_timers)
from bench.common import log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="queue_scale at 10k and 1M (or BENCH_QUEUE_1M=1)")
    args = parser.parse_args()
    full = args.full or os.environ.get("BENCH_QUEUE_1M") == "1"
    started = time.monotonic()
    steps = [
        ("ingest", lambda: ingest.run(quick=args.quick, worker_counts=(1,) if args.quick else (1, 2))),
        ("live_latency", lambda: live_latency.run_plan(50.0 if args.quick else 200.0, 6.0 if args.quick else 10.0,
                                                       "160:1,100" if args.quick else "640:1,100,500",
                                                       profile=not args.quick,
                                                       rq_workers=(1,) if args.quick else (1, 2),
                                                       repeat=1 if args.quick else 3)),
        ("outbound", lambda: outbound.run(100, 40, 20) if args.quick else outbound.run(300, 100, 60)),
        ("profile", lambda: profile.run(600 if args.quick else 1500)),
        ("queue_scale", lambda: queue_scale.run([10000, 1000000] if full else [10000], fixes=full)),
        ("sla_timers", lambda: sla_timers.run(100_000 if args.quick else 1_000_000, 20 if args.quick else 50)),
        ("fanout", lambda: fanout.run(100 if args.quick else 500, 250, 200 if args.quick else 600,
                                      100 if args.quick else 200)),
        ("scale_out", lambda: scale_out.run(400 if args.quick else 1200, 50 if args.quick else 200)),
        ("embedded", lambda: embedded.run(quick=args.quick)),
        ("reconnect", lambda: reconnect.run(100, 100.0, 10.0) if args.quick else reconnect.run()),
    ]
    for name, step in steps:
        t = time.monotonic()
        log(f"=== {name}")
        step()
        log(f"=== {name} done in {time.monotonic() - t:.0f} s")
    log(f"all done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
