"""`python -m bench.run_all` (make bench): every figure once, in order, each on its own fresh stack, each
writing its section of bench/RESULTS.md and its raw JSON in bench/out/. Bounded: about 10-14 minutes on 2 cores.
`--quick` runs smaller counts (a smoke run, a few minutes)."""
from __future__ import annotations

import argparse
import time

from bench import ingest, live_latency, outbound, profile
from bench.common import log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    steps = [
        ("ingest", lambda: ingest.run(quick=args.quick)),
        ("live_latency", lambda: live_latency.run_plan(20.0, 6.0 if args.quick else 10.0,
                                                       "64:1,50" if args.quick else "64:1,50;256:100")),
        ("outbound", lambda: outbound.run(100, 40) if args.quick else outbound.run(300, 100)),
        ("profile", lambda: profile.run(600 if args.quick else 1500)),
    ]
    for name, step in steps:
        t = time.monotonic()
        log(f"=== {name}")
        step()
        log(f"=== {name} done in {time.monotonic() - t:.0f} s")
    log(f"all done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
