"""Flask-SocketIO's concurrency follows the server the app runs in: gevent under a gevent-patched server
(`gunicorn -k gevent`, the production web worker), threading otherwise (embedded server, gthread, tests)."""
from __future__ import annotations

import subprocess
import sys

from inbox.realtime import async_mode

PROBE = "from inbox.realtime import async_mode; print(async_mode())"


def test_threading_without_gevent() -> None:
    assert async_mode() == "threading"


def test_gevent_when_the_server_patched_the_standard_library() -> None:
    # a fresh interpreter: patching this test process would change every other test's sockets
    out = subprocess.run([sys.executable, "-c", "from gevent import monkey; monkey.patch_all(); " + PROBE],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "gevent", out.stderr
    plain = subprocess.run([sys.executable, "-c", "import gevent; " + PROBE], capture_output=True, text=True,
                           timeout=60, check=True)
    assert plain.stdout.strip() == "threading", plain.stderr  # gevent imported but not patched: threads


TICKER = r"""
from gevent import monkey; monkey.patch_all()
import time, gevent
from argon2 import PasswordHasher
from inbox.concurrency import off_hub

hasher = PasswordHasher()
hashed = hasher.hash("correct horse battery")
gaps, stop = [], [False]

def ticker():
    last = time.perf_counter()
    while not stop[0]:
        gevent.sleep(0.002)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now

def run(verify):
    gaps.clear(); stop[0] = False
    g = gevent.spawn(ticker); gevent.sleep(0.01)
    t0 = time.perf_counter()
    for _ in range(3):
        verify(hashed, "correct horse battery")
    took = time.perf_counter() - t0
    stop[0] = True; g.join()
    return took, max(gaps)

inline = run(hasher.verify)
offloaded = run(lambda h, p: off_hub(hasher.verify, h, p))
print(f"{inline[0]} {inline[1]} {offloaded[0]} {offloaded[1]}")
"""


def test_password_hashing_under_gevent_does_not_hold_the_other_greenlets() -> None:
    """Three argon2 verifications (tens of ms each, on purpose): inline, the hub is held for each of them;
    through off_hub, a 2 ms ticker greenlet keeps ticking meanwhile."""
    out = subprocess.run([sys.executable, "-c", TICKER], capture_output=True, text=True, timeout=120, check=True)
    inline_s, inline_gap, off_s, off_gap = map(float, out.stdout.split())
    assert inline_gap >= inline_s / 3 * 0.8, out.stdout  # the proof the check can fail: inline blocks the ticker
    assert off_gap < inline_gap / 2, out.stdout
