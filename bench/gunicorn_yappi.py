"""`gunicorn -c bench/gunicorn_yappi.py ...`: the web worker under yappi (every thread, CPU clock), to see where
the web process's CPU goes in figure 2 (`python -m bench.live_latency --profile`). At worker exit it writes
$BENCH_YAPPI_OUT: CPU seconds per thread kind and the functions with the most CPU (inclusive and own). The
bench asks for it by creating $BENCH_YAPPI_OUT.dump while the load is still there (a worker with hundreds of
sockets may be killed before a graceful exit ends); otherwise it is written at worker exit.
yappi slows the process down: the profiled run is separate from the measured ones."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any


# gunicorn settings: a worker slowed by the profiler must not be taken for a hung one and replaced (a new worker
# would start a new, empty profile)
timeout = 900
graceful_timeout = 120

_written = threading.Event()
_GREENLETS = threading.Event()  # set: yappi's contexts are the greenlets (a gevent worker)


def post_worker_init(worker: Any) -> None:
    import yappi

    if type(worker).__name__.startswith("Gevent"):  # gunicorn's GeventWorker (and its subclasses' names)
        _GREENLETS.set()
        # one context per greenlet: with the default (one per OS thread) every greenlet's time ran in the one main
        # thread's call stacks, so a function a greenlet switched away in was charged with what others did meanwhile
        # (a socket connect's handler showed 98% of the process's CPU, inclusive)
        yappi.set_context_backend("greenlet")
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)

    def dump_on_request() -> None:
        flag = os.environ["BENCH_YAPPI_OUT"] + ".dump"
        while not os.path.exists(flag):
            time.sleep(0.5)
        _write()

    threading.Thread(target=dump_on_request, name="yappi-dump", daemon=True).start()


def _kind(name: str) -> str:
    """Group thread names: gunicorn's pool threads, the relay, engine.io's per-socket writers, ..."""
    return re.sub(r"[-_ ]?\(?\d+\)?", "", name or "?") or "?"


def worker_exit(server: Any, worker: Any) -> None:
    _write()


def _write() -> None:
    import yappi

    if _written.is_set():
        return
    _written.set()
    yappi.stop()
    threads: dict[str, dict[str, float]] = {}
    for t in (yappi.get_greenlet_stats() if _GREENLETS.is_set() else yappi.get_thread_stats()):
        entry = threads.setdefault(_kind(t.name), {"threads": 0, "cpu_s": 0.0})
        entry["threads"] += 1
        entry["cpu_s"] += t.ttot
    funcs = [(s.ttot, s.tsub, s.ncall, f"{os.path.relpath(s.module) if s.module.startswith('/') else s.module}:"
              f"{s.lineno} {s.name}") for s in yappi.get_func_stats()]
    out = {"cpu_s": sum(v["cpu_s"] for v in threads.values()), "threads": threads,
           "contexts": "greenlets" if _GREENLETS.is_set() else "threads",
           "inclusive": sorted(funcs, reverse=True)[:80],
           "inclusive_all": [f for f in funcs if f[0] >= 0.01],
           "own": sorted(funcs, key=lambda f: f[1], reverse=True)[:60]}
    target = os.environ["BENCH_YAPPI_OUT"]
    with open(target + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(target + ".tmp", target)  # the bench waits for the file: it appears complete
