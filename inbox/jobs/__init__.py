"""The one way to run work in the background: `enqueue(func, *args)`.

With REDIS_URL, jobs go to RQ queues (run by `make worker`, i.e. `python -m inbox.jobs.worker`); in the
embedded default they run on in-process worker threads. Job functions are the same in both: module-level
functions taking ids, defined in `inbox.jobs.tasks`.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import queue as queue_mod
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Flask

from inbox.concurrency import ProcessThread

log = logging.getLogger(__name__)

# Queue names, in one place. Ingest never waits behind a slow platform call.
INGEST = "ingest"
SEND = "send"
DEFAULT = "default"
QUEUES = (INGEST, SEND, DEFAULT)
NUDGE_TTL = 30  # seconds a nudge key outlives a consumer that died before clearing it (the reconciler covers it)


class EmbeddedBackend:
    """A thread per queue plus a timer thread for delayed jobs, all inside the web process.

    Identical (func, args) already waiting are coalesced: a burst of webhooks nudges one drain, not thousands.
    """

    def __init__(self, app: Flask):
        self.app = app
        self._queues = {name: queue_mod.Queue() for name in QUEUES}
        self._pending: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._delayed: list[tuple[float, int, str, Callable[..., Any], tuple[Any, ...]]] = []
        self._delayed_cv = threading.Condition(self._lock)
        self._counter = itertools.count()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0

    def start(self) -> None:
        for name in QUEUES:
            for k in range(self._threads_for(name)):
                t = threading.Thread(target=self._run_queue, args=(name,), name=f"relais-jobs-{name}-{k}",
                                     daemon=True)
                t.start()
                self._threads.append(t)
        t = threading.Thread(target=self._run_timer, name="relais-jobs-timer", daemon=True)
        t.start()
        self._threads.append(t)

    def _threads_for(self, name: str) -> int:
        """One thread per queue, but SEND_CONCURRENCY for the sends: a send waits on the platform, and one
        slow call must not hold up every other agent's reply (their order within a conversation is kept by the
        send's claim, `services.delivery`)."""
        if name != SEND or self.app is None:
            return 1
        return self.app.extensions["relais.settings"].send_concurrency

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            self._delayed_cv.notify_all()
        for name, q in self._queues.items():
            for _k in range(self._threads_for(name)):
                q.put(None)
        for t in self._threads:
            t.join(timeout)

    def enqueue(self, queue: str, func: Callable[..., Any], args: tuple[Any, ...], delay: float) -> None:
        if delay > 0:
            with self._lock:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._counter), queue, func, args))
                self._delayed_cv.notify()
            return
        key = (queue, f"{func.__module__}.{func.__qualname__}", repr(args))  # args may hold lists
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queues[queue].put((key, func, args))

    def idle(self) -> bool:
        """True when nothing is queued, running or being gathered (tests wait on it)."""
        with self._lock:
            if self._pending or self._busy:
                return False
        return not gathering()

    def _run_queue(self, name: str) -> None:
        q = self._queues[name]
        while not self._stopping.is_set():
            item = q.get()
            if item is None:
                return
            key, func, args = item
            with self._lock:
                self._pending.discard(key)
                self._busy += 1
            try:
                run_job(self.app, func, args)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run_timer(self) -> None:
        with self._lock:
            while not self._stopping.is_set():
                if not self._delayed:
                    self._delayed_cv.wait(1.0)
                    continue
                due, _, queue, func, args = self._delayed[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._delayed_cv.wait(min(wait, 1.0))
                    continue
                heapq.heappop(self._delayed)
                self._lock.release()
                try:
                    self.enqueue(queue, func, args, 0)
                finally:
                    self._lock.acquire()


class RQBackend:
    def __init__(self, app: Flask, redis_url: str, prefix: str):
        from redis import Redis
        from rq import Queue

        self.redis = Redis.from_url(redis_url)
        self.prefix = prefix
        self._signal: Any = None
        self.queues = {name: Queue(prefix + name, connection=self.redis, default_timeout=600) for name in QUEUES}

    # SET the nudge key unless it is set, and only then push one wake-up on the nudge list (kept short): one
    # round trip, and no wake-up pushed by a nudge whose key could not be set
    _SIGNAL = """
    if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
        redis.call('LPUSH', KEYS[2], '1')
        redis.call('LTRIM', KEYS[2], 0, 63)
        return 1
    end
    return 0
    """

    def signal(self, func: Callable[..., Any]) -> bool:
        """Wake one consumer of `func` (`consume_nudges`), unless a wake-up is already waiting (its nudge key
        is set until the consumer's run clears it, or for NUDGE_TTL seconds). Returns whether it pushed one."""
        if self._signal is None:
            self._signal = self.redis.register_script(self._SIGNAL)
        return bool(self._signal(keys=[self.nudge_key(func), self.nudge_list(func)], args=[NUDGE_TTL]))

    def nudge_list(self, func: Callable[..., Any]) -> str:
        return f"{self.prefix}nudges:{func.__module__}.{func.__qualname__}"

    def enqueue(self, queue: str, func: Callable[..., Any], args: tuple[Any, ...], delay: float) -> None:
        q = self.queues[queue]
        if delay > 0:
            q.enqueue_at(scheduled_at(time.time(), delay), func, *args, result_ttl=0, failure_ttl=86400)
            return
        if not args:
            # a nudge without arguments: one waiting copy is enough (the worker clears the key when it starts)
            if not self.redis.set(self.nudge_key(func), b"1", nx=True, ex=NUDGE_TTL):
                return
        q.enqueue(func, *args, result_ttl=0, failure_ttl=86400)

    def nudge_key(self, func: Callable[..., Any]) -> str:
        return f"{self.prefix}nudge:{func.__module__}.{func.__qualname__}"

    def stop(self, timeout: float = 5.0) -> None:
        self.redis.close()


_backend: EmbeddedBackend | RQBackend | None = None


def init_app(app: Flask, *, start_embedded: bool = True) -> None:
    global _backend
    settings = app.extensions["relais.settings"]
    if _backend is not None:
        _backend.stop()
    if settings.redis_url:
        _backend = RQBackend(app, settings.redis_url, settings.redis_prefix)
    else:
        _backend = EmbeddedBackend(app)
        if start_embedded and settings.embedded_worker:
            _backend.start()
    app.extensions["relais.jobs"] = _backend


def backend() -> EmbeddedBackend | RQBackend:
    assert _backend is not None, "jobs not initialised (create_app)"
    return _backend


def scheduled_at(now: float, delay: float) -> datetime:
    """When RQ should run a job delayed by `delay` seconds from `now` (epoch seconds): the due time rounded UP to
    the second. RQ's scheduler keeps whole seconds (it drops the due time's fraction and compares it with the
    current second), so `enqueue_in(1.7 s)` could run the job 0.7 s after it was enqueued: a send retry then
    found its message not yet due, and waited for the reconciler (bench figure 3: half the retries ~13 s after a
    rate limit instead of ~2 s)."""
    return datetime.fromtimestamp(math.ceil(now + delay), timezone.utc)


def enqueue(func: Callable[..., Any], *args: Any, queue: str = DEFAULT, delay: float = 0.0) -> None:
    """Run `func(*args)` in the background (after `delay` seconds). Args must be ids and plain values."""
    backend().enqueue(queue, func, args, delay)


class _Gatherer:
    """The items given for one job function during `window` seconds, then ONE job `func(items)` with all of them
    (in chunks of `chunk`), instead of a job per caller. For work that may wait a moment and costs mostly per job:
    at 200 new customers a second, a name-lookup job per drain was ~100 RQ jobs a second, each with its own
    transaction, on cores the live events needed (bench figure 2's start-up).

    The items wait in this process: a crash in the window loses them, as a crash between a commit and its
    enqueue loses an after-commit job, and as a Redis restart loses queued jobs. Use it only for best-effort work
    (a customer's name, a presence check the reconciler also makes), never for a message. `delay`: the job is
    enqueued to run that many seconds after the window closes."""

    def __init__(self, func: Callable[..., Any], queue: str, window: float, chunk: int, delay: float = 0.0) -> None:
        self.func, self.queue, self.window, self.chunk, self.delay = func, queue, window, chunk, delay
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._timer: threading.Timer | None = None

    def add(self, items: list[Any]) -> None:
        with self._lock:
            self._items.extend(items)
            if self._timer is None:
                self._timer = threading.Timer(self.window, self.flush)
                self._timer.daemon = True
                self._timer.name = f"relais-gather-{self.func.__name__}"
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()  # a flush before the window ends (flush_gathered): the timer has nothing left
            items, self._items, self._timer = self._items, [], None
        try:
            _enqueue_chunks(self.func, items, self.queue, self.chunk, self.delay)
        except Exception:  # best effort by design (see the class)
            log.exception("could not enqueue %s for %d gathered item(s)", self.func.__qualname__, len(items))

    def pending(self) -> bool:
        with self._lock:
            return bool(self._items)


_gatherers: dict[tuple[Callable[..., Any], str, float, int, float], _Gatherer] = {}
_gatherers_lock = threading.Lock()


def _enqueue_chunks(func: Callable[..., Any], items: list[Any], queue: str, chunk: int, delay: float = 0.0) -> None:
    for start in range(0, len(items), chunk):
        enqueue(func, items[start:start + chunk], queue=queue, delay=delay)


def gather(func: Callable[..., Any], items: list[Any], *, queue: str = DEFAULT, window: float,
           chunk: int = 200, delay: float = 0.0) -> None:
    """`func(items)` soon: items given within `window` seconds of the first share one job (see _Gatherer), which
    runs `delay` seconds after the window closes. A window of 0 enqueues at once."""
    if not items:
        return
    if window <= 0:
        _enqueue_chunks(func, items, queue, chunk, delay)
        return
    key = (func, queue, window, chunk, delay)
    with _gatherers_lock:
        gatherer = _gatherers.get(key)
        if gatherer is None:
            gatherer = _gatherers[key] = _Gatherer(func, queue, window, chunk, delay)
    gatherer.add(items)


def flush_gathered() -> None:
    """Enqueue every gathered item now (tests: a lookup gathered by one test must not fire inside the next)."""
    with _gatherers_lock:
        gatherers = list(_gatherers.values())
    for gatherer in gatherers:
        gatherer.flush()


def gathering() -> bool:
    """Whether any gathered items are waiting for their job."""
    with _gatherers_lock:
        gatherers = list(_gatherers.values())
    return any(g.pending() for g in gatherers)


def nudge(func: Callable[..., Any], *, queue: str = DEFAULT) -> None:
    """Ask for one run of the no-argument job `func` soon (e.g. the drain, after a webhook was stored).

    Embedded, that is an in-memory enqueue, done at once. With Redis, the nudge goes through one background
    thread that coalesces the nudges waiting at that moment, so a caller never waits on Redis (the webhook
    committer calls this between commits) and a burst costs one script call per coalesced round, not per call.
    Every nudge is followed by at least one attempt made after it: none is lost, only merged.

    With Redis a nudge is not an RQ job: it wakes a `consume_nudges` thread of a worker process (`make worker`
    runs one for the drain), through a Redis list. An RQ job per drain cost the worker ~4 ms of CPU of its
    own (the job's hash, its status, registries and heartbeats, written and read back), a quarter of the
    worker's CPU at 50 webhooks/s where most drains carry one message (bench/RESULTS.md), and a few Redis
    round trips before the drain could start."""
    if isinstance(_backend, RQBackend):
        _nudger.nudge(func, queue)
    else:
        enqueue(func, queue=queue)


class _Nudger:
    """The background thread behind `nudge` with Redis (started on first use; a daemon)."""

    def __init__(self) -> None:
        self._wanted: dict[tuple[Callable[..., Any], str], None] = {}  # ordered set of (func, queue)
        self._cv = threading.Condition()
        self._thread = ProcessThread(self._run, "relais-jobs-nudger")  # checked on every webhook: a flag

    def nudge(self, func: Callable[..., Any], queue: str) -> None:
        self._thread.ensure()
        with self._cv:
            self._wanted[(func, queue)] = None
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._wanted:
                    self._cv.wait()
                wanted, self._wanted = list(self._wanted), {}
            for func, queue in wanted:
                try:
                    _send_nudge(func, queue)
                except Exception:  # stored work is still picked up by the reconciler
                    log.exception("could not nudge %s; the reconciler will pick the work up", func.__qualname__)


def _send_nudge(func: Callable[..., Any], queue: str) -> None:
    b = backend()
    if isinstance(b, RQBackend):
        b.signal(func)
    else:
        b.enqueue(queue, func, (), 0.0)


_nudger = _Nudger()


def consume_nudges(app: Flask, func: Callable[..., Any], stop: threading.Event, *, block: float = 1.0) -> None:
    """Run the no-argument job `func` once per wake-up `nudge` sent it, in this thread, until `stop` is set.

    Every worker process runs one (`inbox.jobs.worker`): a wake-up is taken by one of them, so two drains run
    at once only when a nudge arrives while one is running (the job clears its nudge key before it claims), as
    with the RQ job it replaces. A Redis outage is waited out (doubling waits up to 5 s); Redis losing the
    list (a restart) loses only wake-ups: the stored events are drained by the reconciler."""
    b = backend()
    assert isinstance(b, RQBackend), "nudges are consumed from Redis; the embedded mode runs them as jobs"
    key, delay = b.nudge_list(func), 0.2
    while not stop.is_set():
        try:
            woken = b.redis.blpop([key], timeout=block)
        except Exception:  # noqa: BLE001 - Redis down or restarting: wait, then listen again
            log.exception("could not wait for %s nudges; retrying in %.1fs", func.__qualname__, delay)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.2
        if woken is not None:
            run_job(app, func, ())


def start_nudge_consumer(app: Flask, func: Callable[..., Any]) -> threading.Event:
    """`consume_nudges` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=consume_nudges, args=(app, func, stop), name=f"relais-nudged-{func.__name__}",
                     daemon=True).start()
    return stop


def clear_nudge(func: Callable[..., Any]) -> None:
    """Called by a nudged job as it starts, so a nudge sent while it runs queues a new run."""
    b = _backend
    if isinstance(b, RQBackend):
        b.redis.delete(b.nudge_key(func))


def run_job(app: Flask, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run one job inside an app context; log failures with the job's name; always release the session."""
    from inbox.db import db

    with app.app_context():
        try:
            return func(*args)
        except Exception:
            log.exception("job %s%r failed", func.__qualname__, args)
            return None
        finally:
            db.session.remove()


def shutdown() -> None:
    global _backend
    if _backend is not None:
        _backend.stop()
        _backend = None


class JobPool:
    """One queue's jobs run on `threads` threads of this process, instead of one after the other on the RQ
    worker's thread: `make worker` starts one for the sends (SEND_CONCURRENCY), whose time is spent waiting
    on the platform. When every Graph call took 250 ms, one worker sending one reply at a time sent 3.7 replies
    a second for every agent of the instance; with 8 threads, 25-29 (bench figure 3, run C).

    The RQ job hands its work to the pool and returns (`in_pool`); the database stays the truth. Work handed
    over and not started when the worker stops goes back to its queue as the job that handed it over, for the
    next worker (a message it would have sent is still `queued`; if that enqueue fails, or the process is
    killed, the reconciler sends it, as it does for a job lost with Redis). The same work handed over again
    while it waits runs once (a send's claim makes a second run harmless anyway)."""

    def __init__(self, app: Flask, queue: str, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.app, self.queue = app, queue
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"relais-{queue}")
        self._lock = threading.Lock()
        # work handed over and not started yet -> the job to enqueue again if the pool stops first
        self._waiting: dict[tuple[Callable[..., Any], tuple[Any, ...]], Callable[..., Any] | None] = {}
        self._running = 0
        self._local = threading.local()

    def submit(self, func: Callable[..., Any], args: tuple[Any, ...], job: Callable[..., Any] | None = None) -> None:
        key = (func, args)
        with self._lock:
            if key in self._waiting:
                return
            self._waiting[key] = job
        self._executor.submit(self._run, key)

    def _run(self, key: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
        with self._lock:
            self._waiting.pop(key, None)
            self._running += 1
        self._local.inside = True
        try:
            run_job(self.app, *key)
        finally:
            self._local.inside = False
            with self._lock:
                self._running -= 1

    def inside(self) -> bool:
        """Whether the calling thread is one of the pool's."""
        return getattr(self._local, "inside", False)

    def busy(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return len(self._waiting) + self._running

    def stop(self) -> list[tuple[Any, ...]]:
        """Lets the running jobs finish (a send under way gets its outcome recorded) and enqueues the waiting
        ones again as the jobs that handed them over. Returns the args of those it enqueued again."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            left, self._waiting = self._waiting, {}
        requeued = []
        for (func, args), job in left.items():
            if job is None:
                continue
            try:
                enqueue(job, *args, queue=self.queue)
                requeued.append(args)
            except Exception:  # Redis down: the reconciler picks the work up from the database
                log.exception("could not enqueue %s%r again; the reconciler will pick it up", job.__qualname__, args)
        return requeued


_pools: dict[str, JobPool] = {}


def start_pool(app: Flask, queue: str, threads: int) -> JobPool:
    """Run `queue`'s pooled jobs (`in_pool`) on `threads` threads of this process (see JobPool)."""
    pool = _pools.get(queue)
    if pool is None:
        pool = _pools[queue] = JobPool(app, queue, threads)
    return pool


def stop_pools() -> None:
    for queue in list(_pools):
        _pools.pop(queue).stop()


def in_pool(queue: str, func: Callable[..., Any], *args: Any, job: Callable[..., Any] | None = None) -> Any:
    """`func(*args)` on this process's pool for `queue` if one is started (returns None at once), else here
    (the embedded mode runs the sends on threads of its own; tests call the job directly). `job`: the job
    function to enqueue again with `args` if the pool stops before running it (`JobPool.stop`)."""
    pool = _pools.get(queue)
    if pool is None or pool.inside():
        return func(*args)
    pool.submit(func, args, job)
    return None


_AFTER_COMMIT = "relais.enqueue_after_commit"


def enqueue_after_commit(session: Any, func: Callable[..., Any], *args: Any, queue: str = DEFAULT,
                         delay: float = 0.0) -> None:
    """Enqueue once `session` commits (never for work that was rolled back)."""
    session.info.setdefault(_AFTER_COMMIT, []).append((func, args, queue, delay, "enqueue"))


def gather_after_commit(session: Any, func: Callable[..., Any], items: list[Any], *, queue: str = DEFAULT,
                        window: float, chunk: int = 200, delay: float = 0.0) -> None:
    """`gather(func, items, ...)` once `session` commits."""
    session.info.setdefault(_AFTER_COMMIT, []).append((func, (items, chunk, delay), queue, window, "gather"))


def nudge_after_commit(session: Any, func: Callable[..., Any], *, queue: str = DEFAULT) -> None:
    """`nudge(func)` once `session` commits (e.g. the drain, after an admin put an event back in the queue)."""
    session.info.setdefault(_AFTER_COMMIT, []).append((func, (), queue, 0.0, "nudge"))


def _install_session_hooks() -> None:
    from sqlalchemy import event as sa_event
    from sqlalchemy.orm import Session

    @sa_event.listens_for(Session, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.in_nested_transaction():  # a savepoint committed: the real commit is still to come
            return
        for func, args, queue, delay, how in session.info.pop(_AFTER_COMMIT, []):
            try:
                if how == "gather":  # `delay` is the gathering window; args: the items, the chunk, the job's delay
                    gather(func, args[0], queue=queue, window=delay, chunk=args[1], delay=args[2])
                elif how == "nudge":
                    nudge(func, queue=queue)
                else:
                    enqueue(func, *args, queue=queue, delay=delay)
            except Exception:  # the reconciler re-enqueues what could not be enqueued now
                log.exception("could not enqueue %s%r after commit", func.__qualname__, args)

    @sa_event.listens_for(Session, "after_rollback")
    def _after_rollback(session: Session) -> None:
        if not session.in_nested_transaction():
            session.info.pop(_AFTER_COMMIT, None)


_install_session_hooks()
