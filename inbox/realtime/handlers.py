"""Socket.IO: authenticated connect, server-chosen rooms, catch-up by seq."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import request, session
from flask_socketio import ConnectionRefusedError, emit, join_room
from sqlalchemy import select

from inbox.db import db
from inbox.models import Agent, RealtimeEvent
from inbox.realtime import socketio
from inbox.realtime.relay import FRAME_MAX
from inbox.services import access, presence
from inbox.services.auth import agent_for_token

log = logging.getLogger(__name__)
REPLAY_LIMIT = 2000
# events committed slightly out of seq order: replay a little before the client's last seq (it dedupes)
REPLAY_OVERLAP = timedelta(seconds=5)


def _authenticate(auth: Any) -> Agent | None:
    token = auth.get("token") if isinstance(auth, dict) else None
    if token:
        return agent_for_token(db.session, str(token))
    agent_id = session.get("agent_id")
    if agent_id is None:
        return None
    agent = db.session.get(Agent, agent_id)
    if agent is None or not agent.is_active or session.get("sv") != agent.session_version:
        return None
    return agent


@socketio.on("connect")
def on_connect(auth: Any = None) -> None:
    try:
        agent = _authenticate(auth)
        if agent is None:
            raise ConnectionRefusedError("unauthorized")
        rooms = access.rooms_for(db.session, agent)
        for room in rooms:
            join_room(room)
        presence.socket_connected(db.session, agent, request.sid)
        db.session.commit()
        socketio.server.save_session(request.sid, {"agent_id": agent.id}, namespace="/")
        emit("session", {"agent_id": agent.id, "rooms": rooms})
        last_seq = auth.get("last_seq") if isinstance(auth, dict) else None
        if isinstance(last_seq, int) and last_seq >= 0:
            replay(set(rooms), last_seq)
    finally:
        db.session.remove()


def _socket_agent() -> Agent | None:
    """The agent this socket authenticated as at connect (cookie or token), if still active."""
    agent_id = socketio.server.get_session(request.sid, namespace="/").get("agent_id")
    agent = db.session.get(Agent, agent_id) if agent_id is not None else None
    return agent if agent is not None and agent.is_active else None


@socketio.on("resume")
def on_resume(data: Any = None) -> None:
    """A client asks again for what it missed: {"last_seq": n}."""
    try:
        agent = _socket_agent()
        if agent is None or not isinstance(data, dict) or not isinstance(data.get("last_seq"), int):
            return
        replay(set(access.rooms_for(db.session, agent)), data["last_seq"])
    finally:
        db.session.remove()


def replay(rooms: set[str], last_seq: int) -> int:
    """Emit to this client every stored event after `last_seq` in its rooms, in seq order."""
    anchor = db.session.get(RealtimeEvent, last_seq) if last_seq else None
    query = select(RealtimeEvent).order_by(RealtimeEvent.id).limit(REPLAY_LIMIT)
    if anchor is not None:
        query = query.where(RealtimeEvent.created_at >= anchor.created_at - REPLAY_OVERLAP)
    else:
        query = query.where(RealtimeEvent.id > last_seq)
    batch = [{"event": row.name, "seq": row.id, "data": row.payload, "replay": True}
             for row in db.session.execute(query).scalars()
             if not (row.id <= last_seq and anchor is None) and access.event_visible_to(row.rooms, rooms)]
    for start in range(0, len(batch), FRAME_MAX):  # the same `events` frames as live delivery
        emit("events", batch[start:start + FRAME_MAX], to=request.sid)
    return len(batch)


@socketio.on("disconnect")
def on_disconnect(*_args: Any) -> None:
    try:
        presence.socket_disconnected(request.sid)  # the last socket: offline after a grace period
    finally:
        db.session.remove()


@socketio.on("heartbeat")
def on_heartbeat(*_args: Any) -> None:
    """The console is still there (every ~30 s): last_seen_at."""
    presence.heartbeat(request.sid)
