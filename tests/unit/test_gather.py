"""`jobs.gather`: items given within a window share ONE job (in chunks), instead of a job per caller; the
embedded backend is not idle while items wait."""
from __future__ import annotations

import time
from typing import Any

import pytest

import inbox.jobs as jobs


def looked_up(items: list[Any]) -> None:
    """Stands for fetch_contact_profiles: never run here, only enqueued."""


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(jobs, "enqueue", lambda func, *args, **kwargs: calls.append((func, args, kwargs)))
    monkeypatch.setattr(jobs, "_gatherers", {})
    return calls


def _wait(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_items_given_within_the_window_share_one_job(enqueued: list[Any]) -> None:
    for pair in ([1, 10], [2, 10], [3, 11]):
        jobs.gather(looked_up, [pair], queue="default", window=0.1)
    assert enqueued == [] and jobs.gathering()
    _wait(lambda: enqueued)
    time.sleep(0.15)
    assert enqueued == [(looked_up, ([[1, 10], [2, 10], [3, 11]],), {"queue": "default", "delay": 0.0})]
    assert not jobs.gathering()
    jobs.gather(looked_up, [[4, 10]], queue="default", window=0.1)  # after the window: a new job
    _wait(lambda: len(enqueued) == 2)
    assert enqueued[1][1] == ([[4, 10]],)


def test_a_large_gathering_is_enqueued_in_chunks(enqueued: list[Any]) -> None:
    jobs.gather(looked_up, [[i, 1] for i in range(5)], window=0.05, chunk=2)
    _wait(lambda: len(enqueued) == 3)
    assert [args[0] for _func, args, _kw in enqueued] == [[[0, 1], [1, 1]], [[2, 1], [3, 1]], [[4, 1]]]


def test_a_zero_window_enqueues_at_once_and_nothing_is_gathered_for_no_items(enqueued: list[Any]) -> None:
    jobs.gather(looked_up, [], window=1.0)
    jobs.gather(looked_up, [[1, 1]], window=0)
    assert enqueued == [(looked_up, ([[1, 1]],), {"queue": "default", "delay": 0.0})] and not jobs.gathering()


def test_the_embedded_backend_is_not_idle_while_items_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_gatherers", {})
    backend = jobs.EmbeddedBackend(None)  # type: ignore[arg-type]  (not started: no job threads)
    monkeypatch.setattr(jobs, "enqueue", lambda *args, **kwargs: None)
    assert backend.idle()
    jobs.gather(looked_up, [[1, 1]], window=0.1)
    assert not backend.idle()
    _wait(backend.idle)


def test_flush_gathered_enqueues_at_once(enqueued: list[Any]) -> None:
    jobs.gather(looked_up, [[7, 1]], window=10.0)
    jobs.flush_gathered()
    assert enqueued == [(looked_up, ([[7, 1]],), {"queue": "default", "delay": 0.0})] and not jobs.gathering()
    time.sleep(0.05)
    assert len(enqueued) == 1  # the cancelled window enqueues nothing more


def test_a_delayed_gathering_is_one_job_enqueued_with_its_delay(enqueued: list[Any]) -> None:
    """Presence checks: the agents disconnected within the window share one job, run after the grace period."""
    for agent_id in (5, 3, 9):
        jobs.gather(looked_up, [agent_id], queue="default", window=0.05, chunk=500, delay=30.2)
    _wait(lambda: enqueued)
    time.sleep(0.1)
    assert enqueued == [(looked_up, ([5, 3, 9],), {"queue": "default", "delay": 30.2})]
    jobs.gather(looked_up, [1], queue="default", window=0.05)  # another delay: its own gathering
    _wait(lambda: len(enqueued) == 2)
    assert enqueued[1] == (looked_up, ([1],), {"queue": "default", "delay": 0.0})
