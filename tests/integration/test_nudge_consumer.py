"""Nudges with Redis: `RQBackend.signal` pushes one wake-up per nudge-key lifetime, and `consume_nudges` (a
thread of every worker process) runs the nudged job once per wake-up, survives a Redis error, and stops."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import inbox.jobs
from inbox.jobs import RQBackend, consume_nudges

runs: list[float] = []
gate = threading.Event()  # a run holds here (after clearing its nudge) until the test lets it finish


def nudged_job() -> None:
    """Stands for the drain: clears its nudge first, as the drain does just before it claims."""
    inbox.jobs.clear_nudge(nudged_job)
    runs.append(time.monotonic())
    gate.wait(5)


@pytest.fixture
def rq(rq_backend: RQBackend) -> RQBackend:
    runs.clear()
    gate.set()
    return rq_backend


def _wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_wake_up_per_nudge_until_the_job_clears_it(rq: RQBackend) -> None:
    wake_ups = rq.nudge_list(nudged_job)
    assert [rq.signal(nudged_job) for _ in range(3)] == [True, False, False]  # a burst: one wake-up waiting
    assert rq.redis.llen(wake_ups) == 1
    assert 0 < rq.redis.ttl(rq.nudge_key(nudged_job)) <= inbox.jobs.NUDGE_TTL  # a dead consumer's key expires
    inbox.jobs.clear_nudge(nudged_job)  # the job started: a nudge now asks for another run
    assert rq.signal(nudged_job) is True
    assert rq.redis.llen(wake_ups) == 2


def test_the_consumer_runs_the_job_once_per_wake_up_and_stops(app: Any, rq: RQBackend) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=consume_nudges, args=(app, nudged_job, stop), kwargs={"block": 0.1})
    thread.start()
    try:
        gate.clear()
        rq.signal(nudged_job)
        _wait(lambda: len(runs) == 1)  # running, its nudge cleared
        assert rq.redis.exists(rq.nudge_key(nudged_job)) == 0
        rq.signal(nudged_job)  # arrived during the run: one more run
        rq.signal(nudged_job)  # merged into the one before
        gate.set()
        _wait(lambda: len(runs) == 2)
        time.sleep(0.3)
        assert len(runs) == 2
        assert rq.redis.llen(rq.nudge_list(nudged_job)) == 0
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_the_consumer_outlives_a_redis_error(app: Any, rq: RQBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    real_blpop, failures = rq.redis.blpop, []

    def flaky_blpop(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise ConnectionError("redis restarting")
        return real_blpop(*args, **kwargs)

    monkeypatch.setattr(rq.redis, "blpop", flaky_blpop)
    stop = threading.Event()
    thread = threading.Thread(target=consume_nudges, args=(app, nudged_job, stop), kwargs={"block": 0.1})
    thread.start()
    try:
        rq.signal(nudged_job)
        _wait(lambda: len(runs) == 1)
        assert failures == [1]
    finally:
        stop.set()
        thread.join(5)
