"""Delayed jobs never run before their delay: RQ's scheduler keeps whole seconds, so `RQBackend.enqueue` rounds the
due time up to the second (`jobs.scheduled_at`). Before, `enqueue_in(1.7 s)` could be moved to its queue 0.7 s
after it was enqueued, and a send retry then found its message not yet due (bench figure 3)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from rq.registry import ScheduledJobRegistry

import inbox.jobs
from inbox.jobs import RQBackend, scheduled_at


def delayed_job() -> None:
    """Never runs here: only scheduled."""


@pytest.mark.parametrize(("now", "delay", "expected"), [
    (1000.2, 1.7, 1002),   # 1001.9 -> the next whole second
    (1000.0, 2.0, 1002),   # already whole: unchanged
    (1000.9, 0.05, 1001),
    (1000.999, 600.0, 1601),
])
def test_the_due_time_is_rounded_up_to_the_second(now: float, delay: float, expected: int) -> None:
    due = scheduled_at(now, delay)
    assert due == datetime.fromtimestamp(expected, timezone.utc)
    assert now + delay <= due.timestamp() < now + delay + 1


@pytest.fixture
def rq(rq_backend: RQBackend) -> RQBackend:
    return rq_backend


def test_a_delayed_job_is_scheduled_no_earlier_than_its_delay(rq: RQBackend) -> None:
    queue = rq.queues[inbox.jobs.SEND]
    registry = ScheduledJobRegistry(queue=queue)
    for delay in (0.3, 1.7, 2.0):
        known = set(registry.get_job_ids())
        before = time.time()
        rq.enqueue(inbox.jobs.SEND, delayed_job, (), delay)
        (job_id,) = set(registry.get_job_ids()) - known
        score = rq.redis.zscore(registry.key, job_id)
        # RQ moves the job once the current whole second reaches its score: never before the delay has passed
        assert score >= before + delay, (delay, score - before)
        assert score < time.time() + delay + 1
