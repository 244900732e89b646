"""`concurrency.ProcessThread`: the webhook committer's and the nudger's thread, checked on every webhook with a
pid flag instead of Thread.is_alive() (a lock under gevent)."""
from __future__ import annotations

import os
import threading

import pytest

from inbox import jobs
from inbox.concurrency import ProcessThread


def test_one_thread_per_process_started_again_in_a_fork_and_after_it_ended() -> None:
    started: list[int] = []
    release = threading.Event()

    def target() -> None:
        started.append(threading.get_ident())
        release.wait(10)

    runner = ProcessThread(target, "test-process-thread")
    for _ in range(5):
        runner.ensure()
    first = runner.thread
    assert first.name == "test-process-thread" and first.daemon and first.is_alive()

    runner._running_in = os.getpid() + 1  # what a child forked from this process sees: its parent's pid
    runner.ensure()
    second = runner.thread
    assert second is not first and second.is_alive()

    release.set()  # both targets return: the flag is cleared as the thread ends
    first.join(10)
    second.join(10)
    assert runner._running_in is None
    release.clear()
    runner.ensure()
    assert runner.thread is not second and runner.thread.is_alive()
    assert len(started) == 3
    release.set()
    runner.thread.join(10)


def test_the_nudger_starts_its_thread_through_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    nudger = jobs._Nudger()
    sent: list[tuple[object, str]] = []
    done = threading.Event()

    def fake_send(func: object, queue: str) -> None:
        sent.append((func, queue))
        done.set()

    monkeypatch.setattr(jobs, "_send_nudge", fake_send)
    nudger.nudge(print, "ingest")
    assert done.wait(10)
    assert sent == [(print, "ingest")] and nudger._thread._running_in == os.getpid()
