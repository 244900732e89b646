"""Live events to agents' screens.

`publish(session, name, data, rooms)` records the event in the caller's transaction (its row id is the `seq`)
and emits it to the rooms only after that transaction commits; nothing is emitted for a rolled-back one.
Rooms are chosen by the server: `agent:<id>`, `brand:<id>`, `admins`, `conversation:<id>`.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask_socketio import SocketIO
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.models import RealtimeEvent

log = logging.getLogger(__name__)

socketio = SocketIO()
_PENDING = "relais.pending_events"
_emitter: Any = None  # the SocketIO server, or a write-only Redis manager in worker processes


def init_app(app: Flask, *, serve: bool = True) -> None:
    global _emitter
    settings = app.extensions["relais.settings"]
    channel = settings.redis_prefix + "socketio"
    if serve:
        socketio.init_app(
            app,
            async_mode="threading",
            message_queue=settings.redis_url,
            channel=channel,
            manage_session=False,            # read the Flask session cookie of the handshake
            cors_allowed_origins=None,       # same origin only (the console is served by this app)
            ping_interval=20,
            ping_timeout=20,
            logger=False,
            engineio_logger=False,
        )
        from inbox.realtime import handlers  # noqa: F401  (registers the socket handlers)
        _emitter = socketio
    else:
        import socketio as sio

        _emitter = sio.RedisManager(settings.redis_url, channel=channel, write_only=True) \
            if settings.redis_url else None


def conversation_rooms(brand_id: int, conversation_id: int | None = None) -> list[str]:
    rooms = [f"brand:{brand_id}", "admins"]
    if conversation_id is not None:
        rooms.append(f"conversation:{conversation_id}")
    return rooms


def publish(session: Session, name: str, data: dict[str, Any], rooms: list[str]) -> RealtimeEvent:
    """Record `name` with `data` for `rooms`; it is emitted as {"seq", "data"} once `session` commits."""
    row = RealtimeEvent(name=name, rooms=rooms, payload=data, created_at=utcnow())
    session.add(row)
    session.info.setdefault(_PENDING, []).append(row)
    return row


def pending_count(session: Session) -> int:
    return len(session.info.get(_PENDING, []))


def discard_after(session: Session, count: int) -> None:
    """Forget events recorded after the first `count` (their savepoint was rolled back)."""
    pending = session.info.get(_PENDING)
    if pending is not None:
        for row in pending[count:]:
            if row in session:
                session.expunge(row)
        del pending[count:]


def emit_now(name: str, payload: dict[str, Any], rooms: list[str]) -> None:
    if _emitter is None:
        return
    try:
        _emitter.emit(name, payload, to=rooms, namespace="/")
    except Exception:  # a live push failing must never undo committed work; clients catch up by seq
        log.exception("could not emit %s", name)


@sa_event.listens_for(Session, "after_commit")
def _emit_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint committed: the real commit is still to come
        return
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    for row in pending:
        if row.id is None:
            continue
        emit_now(row.name, {"seq": row.id, "data": row.payload}, row.rooms)


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)
