"""`gunicorn -c bench/gunicorn_yappi.py ...`: the web worker under yappi (every thread, CPU clock), to see where
the web process's CPU goes in figure 2 (`python -m bench.live_latency --profile`). At worker exit it writes
$BENCH_YAPPI_OUT: CPU seconds per thread kind and the functions with the most CPU (inclusive and own).
yappi slows the process down: the profiled run is separate from the measured ones."""
from __future__ import annotations

import json
import os
import re
from typing import Any


def post_worker_init(worker: Any) -> None:
    import yappi

    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)


def _kind(name: str) -> str:
    """Group thread names: gunicorn's pool threads, the relay, engine.io's per-socket writers, ..."""
    return re.sub(r"[-_ ]?\(?\d+\)?", "", name or "?") or "?"


def worker_exit(server: Any, worker: Any) -> None:
    import yappi

    yappi.stop()
    threads: dict[str, dict[str, float]] = {}
    for t in yappi.get_thread_stats():
        entry = threads.setdefault(_kind(t.name), {"threads": 0, "cpu_s": 0.0})
        entry["threads"] += 1
        entry["cpu_s"] += t.ttot
    funcs = [(s.ttot, s.tsub, s.ncall, f"{os.path.relpath(s.module) if s.module.startswith('/') else s.module}:"
              f"{s.lineno} {s.name}") for s in yappi.get_func_stats()]
    out = {"cpu_s": sum(v["cpu_s"] for v in threads.values()), "threads": threads,
           "inclusive": sorted(funcs, reverse=True)[:80],
           "inclusive_all": [f for f in funcs if f[0] >= 0.01],
           "own": sorted(funcs, key=lambda f: f[1], reverse=True)[:60]}
    with open(os.environ["BENCH_YAPPI_OUT"], "w") as f:
        json.dump(out, f)
