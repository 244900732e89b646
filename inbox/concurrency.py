"""The web process's concurrency: gevent in production (`gunicorn -k gevent`), threads otherwise.

Under gevent every request and websocket of a process shares ONE OS thread, switching only when one waits on
I/O. A long CPU-bound call would hold every socket of the process for its whole duration, so calls that are
CPU-heavy by design and release the GIL (argon2 password hashing: tens of milliseconds on purpose) run on
gevent's pool of real threads instead; the greenlet that asked waits for the result, the others keep going."""
from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def gevent_patched() -> bool:
    """Whether this process runs under gevent's monkey-patching (the gunicorn gevent worker does it first)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def off_hub(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, on a real thread when under gevent (so the other greenlets keep running), else inline.
    Only for functions that release the GIL while they work, or a thread would not help."""
    if not gevent_patched():
        return fn(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(fn, args)


# A worker's collector thresholds (`freeze_startup_heap(batch_work=True)`): generation 0 collected every 20,000
# net allocations of tracked objects instead of 700, then 20 and 20 (CPython's default: 700, 10, 10).
BATCH_GC_THRESHOLDS = (20_000, 20, 20)


def freeze_startup_heap(*, batch_work: bool = False) -> None:
    """Take every object alive once the app is built (modules, classes, the ORM's and marshmallow's metadata,
    compiled statements) out of the garbage collector's reach: call it in a serving process once, after
    `create_app`, before it takes traffic.

    CPython's full (generation 2) collection walks every tracked object, and a built app holds hundreds of
    thousands that live as long as the process. In a web process that collection stops every request and
    socket: 190 ms measured at 500 webhooks/s on this project's 2-core benchmark box, which was the ack
    latency's p99 (bench/RESULTS.md); frozen, the same collection took 1 ms. Objects made later (requests,
    sockets, caches) are collected as before; what is frozen is never freed, which is what startup objects
    are for anyway (`gc.freeze`, the approach Instagram described for its Django web servers).

    `batch_work` (the RQ worker, whose drain holds a batch's thousands of rows, ORM objects and events alive at
    once): the collector's thresholds are raised to BATCH_GC_THRESHOLDS. At CPython's default a 2,000-message
    drain set off ~60 young collections and every few drains a full one, and each found the batch's objects
    alive and moved them up a generation: 250-360 ms of every 15,000 messages' ~3 s of drain CPU on the
    benchmark box (10%, gc.callbacks), 110-140 ms raised, the longest pause ~6 ms (bench/RESULTS.md; `python -m
    bench.drain_cost` reports the collector's part of the drain's CPU). The web process keeps the default: its
    requests hold few objects at a time and its pauses are on the ack's path."""
    import gc

    gc.collect()
    gc.freeze()
    if batch_work:
        gc.set_threshold(*BATCH_GC_THRESHOLDS)


def with_queued(first: T, source: "queue.Queue[T]", limit: int) -> list[T]:
    """`first` and whatever else `source` holds right now, at most `limit` items in all, without waiting: a group
    formed by what arrived meanwhile (the webhook committer's group, the relay's round)."""
    items = [first]
    while len(items) < limit:
        try:
            items.append(source.get_nowait())
        except queue.Empty:
            break
    return items


class ProcessThread:
    """A daemon thread running `target` that is started on first use in each process: again in a forked child
    (gunicorn's workers are forked from the arbiter) and again if `target` ever returns or raises.

    `ensure()` is called on every use (every webhook) and checks a pid set by the thread, not
    `Thread.is_alive()`, which takes a lock: under gevent that was 3.4% of the web process's CPU at 500
    webhooks/s (bench figure 1's profile)."""

    def __init__(self, target: Callable[[], Any], name: str) -> None:
        self._target, self._name = target, name
        self._lock = threading.Lock()
        self._running_in: int | None = None  # the pid whose thread is running (cleared as it ends)
        self.thread: Any = None

    def ensure(self) -> None:
        if self._running_in != os.getpid():
            with self._lock:
                if self._running_in != os.getpid():
                    self._running_in = os.getpid()
                    self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self.thread.start()

    def _run(self) -> None:
        try:
            self._target()
        finally:  # the next use starts a new thread
            self._running_in = None
