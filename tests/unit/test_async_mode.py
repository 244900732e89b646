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
