"""One lock held by each iteration of this process's periodic loops (reconciler, SLA timer).

Production never contends on it (each loop iteration is short); tests hold it while they empty the database
or wait for background work, so a loop is never caught halfway through a test boundary."""
from __future__ import annotations

import threading

BACKGROUND_LOCK = threading.RLock()
