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

    # cleared after the drain's linger, just before it claims: a webhook stored until then is in this drain, one
    # stored after it nudges a new run
    return drain(before_claim=lambda: clear_nudge(drain_webhook_events))


@task
def send_message(message_id: int) -> str | None:
    """Send one outbound message to its platform, at most once (see services.delivery); in a worker, on its
    pool of send threads (`inbox.jobs.JobPool`): the job returns at once, the message's status tells."""
    from inbox.jobs import SEND, in_pool
    from inbox.services.delivery import deliver_message

    return in_pool(SEND, deliver_message, message_id, job=send_message)


@task
def reconcile() -> dict[str, int]:
    from inbox.services.reconciler import reconcile_once

    return reconcile_once()


@task
def pick_up_backlog(agent_id: int) -> int:
    """An agent came online or has room again: waiting conversations of their teams (services.assignment)."""
    from inbox.db import db as database
    from inbox.services.assignment import pick_up_backlog as pick_up

    with database.transaction() as session:
        return pick_up(session, agent_id)


@task
def assign_waiting(team_id: int) -> int:
    """Offer a team's waiting unassigned conversations to its agents, per its policy."""
    from inbox.db import db as database
    from inbox.services.assignment import assign_waiting as sweep

    with database.transaction() as session:
        return sweep(session, team_id)


@task
def check_presence(agent_ids: list[int] | int) -> int:
    """After the disconnect grace period: offline the agents that have no socket left (services.presence; the
    agents disconnected within a second share a job; a lone id is a job queued before they did)."""
    from inbox.services.presence import check

    return check(agent_ids)


@task
def fetch_contact_profiles(pairs: list[list[int]], attempt: int = 0) -> int:
    """Fill in customers' names and pictures from the platform: [[identity_id, channel_id], ...]
    (see services.profiles). Rate-limited: the rest is looked up again later, with backoff (at least the
    platform's Retry-After), up to profiles.MAX_ATTEMPTS times. Returns how many were found."""
    from adapters.http import backoff_seconds
    from inbox.jobs import enqueue
    from inbox.services import profiles

    found, rest, retry_after = profiles.fetch_contact_profiles(pairs)
    if rest:
        if attempt + 1 < profiles.MAX_ATTEMPTS:
            delay = backoff_seconds(attempt + 1, retry_after, base=15.0, cap=600.0)
            log.info("profile lookups rate-limited: %d left, again in %.0fs", len(rest), delay)
            enqueue(fetch_contact_profiles, rest, attempt + 1, delay=delay)
        else:
            log.warning("profile lookups still rate-limited after %d attempts: %d left as PSIDs", attempt + 1,
                        len(rest))
    return found


@task
def cover_open_conversations() -> int:
    """After an SLA policy change: clocks for the open conversations that had none (see services.sla)."""
    from inbox.services.sla import cover_open_conversations as cover

    return cover()


@task
def refresh_running_clocks() -> int:
    """After an SLA policy or calendar change: re-evaluate the running clocks, in batches (see services.sla)."""
    from inbox.services.sla import refresh_running

    return refresh_running()
