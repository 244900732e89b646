"""Live events to agents' screens.

`publish(session, name, data, rooms)` records the event with the caller's transaction: written to
`realtime_events` as it commits (the row id is the `seq`), handed to the relay only after the commit; nothing is
written or leaves for a rolled-back one. The relay
(`relay.py`) carries each commit's events to every serving process and emits them as `events` frames
(`[{"event", "seq", "data"}, ...]`), coalesced per room set. Rooms are chosen by the server: `agent:<id>`,
`brand:<id>`, `admins` (joined at connect, from the agent's access), and `conversation:<id>` (joined through a
`watch` request, after the same access check as the REST route).

In a gevent web process (production), the relay writes each frame to the room's websockets itself, encoded once
(`direct.py`), instead of through python-socketio's per-socket queue and writer greenlet; elsewhere (threads:
tests, the embedded server) python-socketio sends it.

A conversation event's data is the conversation's JSON in its wire form (`wire.py`: null members, empty lists
and `last_message.at` left out; the console restores them).

Who gets what: list-level events (`conversation.*`, `sla.*`, `contact.updated`) go to the brand's agents and the
admins, so every queue view stays live; a conversation's thread events (`message.*`) go only to the sockets that
have that conversation open. A thread event is the bulky one (full text, attachments, author) and only the open thread
uses it: sending it to every agent of a brand multiplied a busy brand's live bytes by its agent count.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from flask import Flask
from flask_socketio import SocketIO
from socketio.packet import Packet
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from inbox.db import DumpedJSON, insert_rows, unnest_insert, utcnow
from inbox.models import RealtimeEvent
from inbox.realtime.direct import Writer, websocket_class
from inbox.realtime.relay import Relay, dump_json
from inbox.realtime.wire import COMPACTED, compact_conversation

log = logging.getLogger(__name__)

socketio = SocketIO()
_PENDING = "relais.pending_events"
_ACCESS = "relais.access_changed"
_relay: Relay | None = None  # this process's relay: publishes commits; in serving processes, also delivers


def async_mode() -> str:
    """"gevent" inside a gevent-patched server (`gunicorn -k gevent`, the production web process: a websocket
    costs a greenlet, and a frame to it a greenlet switch), otherwise "threading" (the embedded server, tests,
    gthread). Flask-SocketIO must use the concurrency the server gives it; it is chosen here, not configured, so
    the two can never disagree."""
    from inbox.concurrency import gevent_patched

    return "gevent" if gevent_patched() else "threading"


class _Packet(Packet):
    """python-socketio's packet, minus its search for binary data in the `events` frames: before sending a frame it
    walks every value of every event (~2 ms for a frame of 57 conversation events on the bench box, more than
    encoding it), and these frames are JSON from the database or Redis, which holds no bytes."""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if type(data) is list and data and data[0] == "events":
            return False
        return super().data_is_binary(data)


_writer: Writer | None = None  # gevent web processes without websocket compression: frames written by the relay


def _emit_local(name: str, data: Any, rooms: list[str] | None) -> None:
    if _writer is not None and name == "events" and rooms:
        _writer.emit(name, data, rooms)
    else:
        socketio.emit(name, data, to=rooms, namespace="/")


def _has_sockets() -> bool:
    """Whether any Socket.IO client is connected to this process (the relay decodes nothing otherwise)."""
    engine = getattr(socketio.server, "eio", None)
    return engine is None or bool(getattr(engine, "sockets", True))


def init_app(app: Flask, *, serve: bool = True) -> None:
    global _relay, _writer
    settings = app.extensions["relais.settings"]
    if _relay is not None:  # a new app in the same process (tests): one relay at a time
        _relay.stop()
    on_control = None
    if serve:
        from inbox.realtime.handlers import control_handler
        on_control = control_handler(app)
    _relay = Relay(redis_url=settings.redis_url, channel=settings.redis_prefix + "live",
                   emit=_emit_local if serve else None, on_control=on_control, has_sockets=_has_sockets)
    app.extensions["relais.relay"] = _relay
    if serve:
        socketio.init_app(
            app,
            async_mode=async_mode(),         # no message_queue: the relay carries events between processes
            manage_session=False,            # read the Flask session cookie of the handshake
            cors_allowed_origins=None,       # same origin only (the console is served by this app)
            ping_interval=20,
            ping_timeout=20,
            logger=False,
            engineio_logger=False,
            serializer=_Packet,
        )
        from inbox.realtime import handlers  # noqa: F401  (registers the socket handlers)
        _writer = None
        if not settings.websocket_compression:
            app.wsgi_app = _without_websocket_compression(app.wsgi_app)  # type: ignore[method-assign]
            if socketio.server.eio.async_mode == "gevent":
                _writer = _direct_writer(socketio.server)
        app.extensions["relais.live_writer"] = _writer
        _relay.start()


def _direct_writer(server: Any) -> Writer:
    """The relay's frames written to the websockets by the relay itself (`direct.py`): engineio's gevent websocket
    wrapper is swapped for one that the writer can reach from the Engine.IO socket."""
    eio = server.eio
    eio._async = dict(eio._async, websocket=websocket_class(eio._async["websocket"]))
    return Writer(server)


def _without_websocket_compression(wsgi_app: Any) -> Any:
    """Drop the client's permessage-deflate offer from the websocket handshake (simple-websocket accepts it
    whenever it is offered). A live frame goes to every socket of a room, and deflate compresses each copy again
    in Python: at 500 sockets it was ~70% of the web process's send cost (bench figure 2's profile). Live JSON
    is small per agent; WEBSOCKET_COMPRESSION=1 turns compression back on for slow agent links."""
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/socket.io"):
            environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return wsgi_app(environ, start_response)
    return app


def stop(app: Flask) -> None:
    """Stop this app's relay thread (tests, before the database goes away)."""
    relay = app.extensions.get("relais.relay")
    if relay is not None:
        relay.stop()


def conversation_rooms(brand_id: int) -> list[str]:
    """Who sees a conversation's events live: its brand's agents and the admins."""
    return [f"brand:{brand_id}", "admins"]


def message_rooms(conversation_id: int) -> list[str]:
    """Who sees a conversation's thread events live: the sockets watching it (handlers.on_watch)."""
    return [f"conversation:{conversation_id}"]


class PendingEvent:
    """A published event until its transaction commits: then a `realtime_events` row (`id`: its seq). `payload_json`
    is its payload serialised once at the commit, on PostgreSQL, for the row and for the relay's message."""

    __slots__ = ("name", "rooms", "payload", "created_at", "id", "payload_json")

    def __init__(self, name: str, rooms: list[str], payload: dict[str, Any]) -> None:
        self.name, self.rooms, self.payload, self.created_at = name, rooms, payload, utcnow()
        self.id: int | None = None
        self.payload_json: str | None = None


def publish(session: Session, name: str, data: dict[str, Any], rooms: list[str]) -> PendingEvent:
    """Record `name` with `data` for `rooms`; it is written with the commit of `session` (`_write_pending`) and
    emitted as {"seq", "data"} once that commit is done. A conversation event's data is recorded and sent in
    its wire form (`wire.compact_conversation`: without its null members and empty lists)."""
    if name in COMPACTED:
        data = compact_conversation(data)
    event = PendingEvent(name, rooms, data)
    session.info.setdefault(_PENDING, []).append(event)
    return event


def access_changed(session: Session, agent_ids: Iterable[int]) -> None:
    """Once `session` commits, every serving process re-checks these agents' open sockets: rooms follow their
    new access (team, brands, role), and a deactivated agent, a signed-out session or a revoked token is
    disconnected. Without this, an open socket would keep the access it had when it connected."""
    session.info.setdefault(_ACCESS, set()).update(int(a) for a in agent_ids)


def pending_count(session: Session) -> int:
    return len(session.info.get(_PENDING, []))


def discard_after(session: Session, count: int) -> None:
    """Forget events recorded after the first `count` (their savepoint was rolled back)."""
    pending = session.info.get(_PENDING)
    if pending is not None:
        del pending[count:]


@sa_event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    """Writes the transaction's events, in publish order, with ONE INSERT as it commits (`db.insert_rows`).

    Not ORM objects: the unit of work's per-object bookkeeping and its multi-row INSERT (a new statement text
    for every event count) cost more than building the events (bench figure 1's drain profile). Written at
    the commit rather than as published, the seqs also follow the commit order more closely.

    On PostgreSQL each payload is serialised here once (`payload_json`), for its row and for the message the relay
    publishes to Redis after the commit (`Relay.publish_events`), instead of once by psycopg and again by the relay.
    Events a caller already wrote (`pending_insert`, in its pipelined commit) have their id: they are skipped."""
    if session.in_nested_transaction():  # a savepoint is released: its events wait for the real commit
        return
    pending = [e for e in session.info.get(_PENDING, ()) if e.id is None]
    if pending:
        _record_ids(pending, insert_rows(session, RealtimeEvent, _rows(session, pending), returning=("id",)))


def pending_insert(session: Session) -> tuple[tuple[str, Any], Callable[[list[Any]], None]] | None:
    """The INSERT of the transaction's unwritten events (PostgreSQL: `db.unnest_insert`), and what records their
    ids from its rows, for a caller that sends it with its COMMIT (`db.pipelined`); None when there are none."""
    pending = [e for e in session.info.get(_PENDING, ()) if e.id is None]
    if not pending:
        return None
    statement = unnest_insert(session.get_bind().dialect, RealtimeEvent.__table__, _rows(session, pending),
                              returning=("id",))
    return statement, lambda rows: _record_ids(pending, rows)


def _rows(session: Session, pending: list[Any]) -> list[dict[str, Any]]:
    if session.get_bind().dialect.name == "postgresql":
        for e in pending:
            e.payload_json = dump_json(e.payload)
        return [{"name": e.name, "rooms": e.rooms, "payload": DumpedJSON(e.payload_json), "created_at": e.created_at}
                for e in pending]
    return [{"name": e.name, "rooms": e.rooms, "payload": e.payload, "created_at": e.created_at} for e in pending]


def _record_ids(pending: list[Any], rows: list[Any]) -> None:
    # the ids are assigned in row order (one statement, rows inserted in order): ascending, they are the rows'
    for event, id_ in zip(pending, sorted(id_ for id_, in rows), strict=True):
        event.id = id_


@sa_event.listens_for(Session, "after_commit")
def _emit_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint committed: the real commit is still to come
        return
    pending = session.info.pop(_PENDING, None)
    changed = session.info.pop(_ACCESS, None)
    if _relay is None:
        return
    if pending:
        _relay.publish_events([row for row in pending if row.id is not None])
    if changed:
        _relay.publish({"control": "access", "agent_ids": sorted(changed)})


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)
        session.info.pop(_ACCESS, None)
