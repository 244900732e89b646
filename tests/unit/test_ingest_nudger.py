"""`inbox.jobs.nudge` with Redis: nudges are sent from one background thread, merged, never lost."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import inbox.jobs
from inbox.jobs import INGEST, _Nudger


def drain() -> None:
    """Stands for the drain job (only its identity matters here)."""


def test_a_burst_of_nudges_is_merged_and_the_last_one_is_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[Any, str, float]] = []
    release = threading.Event()

    def send(func: Any, queue: str) -> None:
        release.wait(5)  # a slow Redis: the nudges meanwhile must pile up, not block their callers
        sent.append((func, queue, time.monotonic()))

    monkeypatch.setattr(inbox.jobs, "_send_nudge", send)
    nudger = _Nudger()
    started = time.monotonic()
    for _ in range(200):
        nudger.nudge(drain, INGEST)
    last_nudge = time.monotonic()
    assert last_nudge - started < 1.0  # no caller waited on the slow enqueue
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not sent or sent[-1][2] < last_nudge):
        time.sleep(0.01)
    assert sent and sent[-1][2] >= last_nudge  # an enqueue attempt after the last nudge
    assert len(sent) <= 3 and {(f, q) for f, q, _t in sent} == {(drain, INGEST)}


def test_a_failing_enqueue_does_not_stop_later_nudges(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def send(func: Any, queue: str) -> None:
        calls.append(queue)
        if len(calls) == 1:
            raise ConnectionError("redis down")

    monkeypatch.setattr(inbox.jobs, "_send_nudge", send)
    nudger = _Nudger()
    nudger.nudge(drain, INGEST)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not calls:
        time.sleep(0.01)
    nudger.nudge(drain, INGEST)
    while time.monotonic() < deadline and len(calls) < 2:
        time.sleep(0.01)
    assert calls == [INGEST, INGEST]
