"""Presence: whether an agent is really there, kept apart from what they chose.

`Agent.availability` is what teammates see and what assignment uses. The agent chooses it (online / busy /
offline). Presence only takes an agent offline when they are gone (the last socket closed more than
DISCONNECT_GRACE ago, or no heartbeat for HEARTBEAT_TIMEOUT: a web process died with its sockets) and then
remembers what to restore (`AgentState.restore_availability`): a socket connecting again, or a heartbeat,
puts back `online` or `busy`; an agent who chose offline stays offline. Live sockets are counted in
`AgentState.connections` over all web processes; the sid -> agent map below only holds this process's own
sockets. The console sends a `heartbeat` socket event about every 30 s.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import case, literal, select, update
from sqlalchemy.orm import Session

from inbox.db import db, insert_for, utcnow
from inbox.jobs import enqueue_after_commit, gather_after_commit
from inbox.models import Agent, AgentState
from inbox.services import admin as account
from inbox.services.assignment import _state

DISCONNECT_GRACE = timedelta(seconds=30)
HEARTBEAT_TIMEOUT = timedelta(minutes=5)

_sockets: dict[str, int] = {}
_sockets_lock = threading.Lock()


def _pick_up_after_commit(session: Session, agent: Agent) -> None:
    if agent.availability == "online":
        from inbox.jobs.tasks import pick_up_backlog
        enqueue_after_commit(session, pick_up_backlog, agent.id)


def set_availability(session: Session, agent: Agent, availability: str) -> Agent:
    """The agent chooses online / busy / offline. Publishes agent.updated when it changes; going online
    enqueues, after commit, the pickup of their teams' waiting conversations."""
    account.update_profile(session, agent, availability=availability)
    state = _state(session, agent.id)
    state.restore_availability = None
    if availability == "offline":
        state.offline_since = state.offline_since or utcnow()
    else:
        state.offline_since = None
    _pick_up_after_commit(session, agent)
    return agent


def _restore(session: Session, agent: Agent, state: AgentState) -> None:
    """Back after presence took the agent offline: restore what they had chosen."""
    if agent.availability == "offline" and state.restore_availability in ("online", "busy"):
        account.update_profile(session, agent, availability=state.restore_availability)
        state.offline_since = None
        _pick_up_after_commit(session, agent)
    state.restore_availability = None


def socket_connected(session: Session, agent: Agent, sid: str) -> None:
    """A socket of `agent` connected (in the caller's transaction): counted, last_seen_at, availability
    restored if presence had taken it (never overriding busy or a chosen offline)."""
    with _sockets_lock:
        _sockets[sid] = agent.id
    # one statement (the state row created on first need, counted, and what presence would restore): when every
    # console reconnects at once, after a web process restarts, each connect paid four (bench figure 10)
    counted = insert_for(session, AgentState).values(agent_id=agent.id, connections=1, languages=[])
    restore = session.execute(counted.on_conflict_do_update(
        index_elements=["agent_id"],
        set_={"connections": AgentState.connections + 1, "disconnected_at": None})
        .returning(AgentState.restore_availability)).scalar_one()
    agent.last_seen_at = utcnow()
    if restore is not None:  # presence had taken the agent offline: put back what they had chosen
        state = session.get(AgentState, agent.id, populate_existing=True)
        assert state is not None
        _restore(session, agent, state)


# Disconnects within this many seconds share one presence check (one job for every agent whose grace ends then): a
# web process restarting, or a proxy dropping its websockets, disconnects every agent of it at once, and one job
# per agent, 30 s later, was hundreds of jobs in a burst on the worker that drains the webhooks (bench figure 2: the
# same 500 agents reconnecting, the worker's CPU per message 1.42-1.46 -> 1.93-2.15 ms in the runs those jobs fell
# in, 2026-11-25). An agent goes offline at most this much later than its grace period.
CHECK_WINDOW_S = 1.0
CHECK_CHUNK = 500  # agents per check job


def socket_disconnected(sid: str) -> None:
    """A socket closed: uncounted; when it was the agent's last one, a check runs after the grace period (with the
    other agents disconnected within CHECK_WINDOW_S of it; the reconciler's `expire` catches a check lost with its
    process)."""
    with _sockets_lock:
        agent_id = _sockets.pop(sid, None)
    if agent_id is None:
        return
    from inbox.jobs.tasks import check_presence
    with db.transaction() as session:
        # one UPDATE (its right-hand sides read the row as it was): uncounted, and when that was the last socket
        # (or none was counted), disconnected now
        connections = AgentState.connections
        session.execute(update(AgentState).where(AgentState.agent_id == agent_id).values(
            connections=case((connections > 0, connections - 1), else_=0),
            disconnected_at=case((connections <= 1, literal(utcnow(), AgentState.disconnected_at.type)),
                                 else_=AgentState.disconnected_at))
            .execution_options(synchronize_session=False))
        gather_after_commit(session, check_presence, [agent_id], window=CHECK_WINDOW_S, chunk=CHECK_CHUNK,
                            delay=DISCONNECT_GRACE.total_seconds() + 0.2)


def heartbeat(sid: str) -> None:
    """The console says it is still there: last_seen_at, and a socket presence had given up on counts again."""
    with _sockets_lock:
        agent_id = _sockets.get(sid)
    if agent_id is None:
        return
    with db.transaction() as session:
        agent = session.get(Agent, agent_id)
        if agent is None:
            return
        agent.last_seen_at = utcnow()
        state = _state(session, agent_id)
        if state.connections < 1:
            state.connections = 1
            state.disconnected_at = None
        _restore(session, agent, state)


def _go_offline(session: Session, agent: Agent, state: AgentState, now: datetime) -> None:
    state.restore_availability = agent.availability
    state.offline_since = now
    account.update_profile(session, agent, availability="offline")


def check(agent_ids: int | list[int], now: datetime | None = None) -> int:
    """After the grace period: offline each of `agent_ids` that still has no socket (one statement finds them; in
    the usual case, agents that came back, it finds none). How many went offline."""
    ids = sorted({agent_ids} if isinstance(agent_ids, int) else set(agent_ids))
    if not ids:
        return 0
    now = now or utcnow()
    went = 0
    with db.transaction() as session:
        gone = session.execute(update(AgentState).where(
            AgentState.agent_id.in_(ids), AgentState.connections == 0,
            AgentState.disconnected_at <= now - DISCONNECT_GRACE)
            .values(disconnected_at=None).returning(AgentState.agent_id)
            .execution_options(synchronize_session=False)).scalars().all()
        for agent_id in sorted(gone):
            agent = session.get(Agent, agent_id)
            state = session.get(AgentState, agent_id, populate_existing=True)
            if agent is None or state is None or agent.availability == "offline":
                continue
            _go_offline(session, agent, state, now)
            went += 1
    return went


def expire(now: datetime | None = None) -> int:
    """The reconciler's presence step: agents gone past the grace period (a lost check job) or silent past
    the heartbeat timeout go offline; `offline_since` is kept for every offline agent, whoever set it."""
    now = now or utcnow()
    count = 0
    with db.transaction() as session:
        silent = list(session.execute(
            select(Agent, AgentState).join(AgentState, AgentState.agent_id == Agent.id)
            .where(Agent.availability != "offline",
                   ((AgentState.connections == 0) & (AgentState.disconnected_at <= now - DISCONNECT_GRACE))
                   | ((AgentState.connections > 0) & (Agent.last_seen_at < now - HEARTBEAT_TIMEOUT))).limit(500)))
        for agent, state in silent:
            state.connections = 0
            state.disconnected_at = None
            _go_offline(session, agent, state, now)
            count += 1
        unmarked = session.execute(
            select(Agent.id).outerjoin(AgentState, AgentState.agent_id == Agent.id)
            .where(Agent.availability == "offline", AgentState.offline_since.is_(None)).limit(500)).scalars().all()
        for agent_id in unmarked:
            _state(session, agent_id).offline_since = now
        back = session.execute(select(AgentState.agent_id).join(Agent, Agent.id == AgentState.agent_id).where(
            AgentState.offline_since.is_not(None), Agent.availability != "offline")).scalars().all()
        if back:
            session.execute(update(AgentState).where(AgentState.agent_id.in_(back))
                            .values(offline_since=None).execution_options(synchronize_session=False))
    return count
