"""Serving processes freeze the objects alive once the app is built (`inbox.concurrency.freeze_startup_heap`),
so a full garbage collection does not walk the whole app on the request path (190 ms at 500 webhooks/s on the
benchmark box, bench/RESULTS.md). Checked in fresh interpreters: this test process must not freeze itself."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.procs import ROOT, app_environ

PROBE = r"""
import gc
{setup}
frozen = gc.get_freeze_count()
gc.collect()
print(gc.get_threshold()[0], frozen, len(gc.get_objects()))
"""


def _heap_after(setup: str, tmp_path: Path) -> tuple[int, int, int]:
    env = app_environ({"RELAIS_ENV": "test", "SECRET_KEY": "gc-freeze-test-" + "x" * 24,
                       "DATABASE_URL": f"sqlite:///{tmp_path / 'gc.db'}", "REDIS_URL": "",
                       "RELAIS_EMBEDDED_WORKER": "0"})
    done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    threshold, frozen, tracked = (int(x) for x in done.stdout.split()[-3:])
    return threshold, frozen, tracked


def test_the_web_entry_point_freezes_the_built_app(tmp_path: Path) -> None:
    threshold, frozen, tracked = _heap_after("import wsgi", tmp_path)
    assert frozen > 50_000  # the app's objects, out of the collector's reach
    assert tracked < frozen / 5  # what a full collection still walks: a fraction of it
    assert threshold == 700  # the web keeps CPython's thresholds: its pauses are on the ack's path


def test_a_worker_freezes_the_built_app_and_collects_less_often(tmp_path: Path) -> None:
    """What `python -m inbox.jobs.worker` calls once the app is built (its drain holds a batch's objects)."""
    from inbox.concurrency import BATCH_GC_THRESHOLDS

    threshold, frozen, tracked = _heap_after("from inbox import create_app\napp = create_app(role='worker')\n"
                                             "from inbox.concurrency import freeze_startup_heap\n"
                                             "freeze_startup_heap(batch_work=True)", tmp_path)
    assert frozen > 50_000 and tracked < frozen / 5
    assert threshold == BATCH_GC_THRESHOLDS[0] > 700


def test_without_it_a_full_collection_walks_the_whole_app(tmp_path: Path) -> None:
    threshold, frozen, tracked = _heap_after("from inbox import create_app\napp = create_app()", tmp_path)
    assert frozen == 0 and threshold == 700
    assert tracked > 50_000
