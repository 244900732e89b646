"""Job functions: module-level, taking ids. The same functions run on RQ workers and embedded threads."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from inbox.db import db

log = logging.getLogger(__name__)


def task(func: Callable[..., Any]) -> Callable[..., Any]:
    """Release the thread's session after the job, whatever happens (RQ's SimpleWorker reuses the thread)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            db.session.remove()
    return wrapper


@task
def drain_webhook_events() -> int:
    """Nudge: process every pending raw webhook event (see services.ingest)."""
    from inbox.jobs import clear_nudge
    from inbox.services.ingest import drain_webhook_events as drain

    clear_nudge(drain_webhook_events)
    return drain()


@task
def send_message(message_id: int) -> str | None:
    """Send one outbound message to its platform, at most once (see services.delivery)."""
    from inbox.services.delivery import deliver_message

    return deliver_message(message_id)


@task
def reconcile() -> dict[str, int]:
    from inbox.services.reconciler import reconcile_once

    return reconcile_once()
