"""Socket.IO: authenticated connect, server-chosen rooms, watched conversations, catch-up by seq.

Rooms: `agent:<id>` and `brand:<id>` / `admins` from the agent's access at connect (list-level events), and
`conversation:<id>` for each conversation the client asks to `watch` (thread events: message.created/updated/
deleted), each one checked like GET /api/conversations/<id>. A client sends the conversations it watches in its
handshake `auth` too (`{"last_seq": n, "seen": [...], "watch": [ids]}`), so a reconnect rejoins them before the
replay and the replay includes their missed thread events."""
from __future__ import annotations

import bisect
import logging
import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterable, Iterator

from flask import Flask, request, session
from flask_socketio import ConnectionRefusedError
from socketio import packet as sio_packet
from sqlalchemy import Integer, Text, bindparam, cast, func, literal_column, select, union_all

from inbox.db import among, db
from inbox.models import Agent, ApiToken, RealtimeEvent
from inbox.realtime import socketio
from inbox.realtime.relay import FRAME_MAX, dump_json
from inbox.services import access, presence
from inbox.services.auth import token_for
from inbox.settings import get_settings

log = logging.getLogger(__name__)
# A replay sends at most REPLAY_MAX events of the socket's rooms after its last seq, looking through at most
# REPLAY_SCAN events of every room; past either, the console fetches its views again (cheaper than thousands of
# events, and bounded when hundreds of consoles reconnect at once).
REPLAY_MAX = 2000
REPLAY_SCAN = 100_000
# events committed slightly out of seq order: replay a little before the client's last seq (it dedupes), the latest
# REPLAY_OVERLAP_MAX of them (the console remembers its last ~2000 seqs and counts older ones as seen)
REPLAY_OVERLAP = timedelta(seconds=5)
REPLAY_OVERLAP_MAX = 1000
WATCH_MAX = 20  # conversations one socket may watch at once (the console watches the one it shows)
_CONVERSATION_ROOM = "conversation:"

# The rooms this module put each socket of this process in. python-socketio's own `rooms(sid)` walks every room
# of the namespace (one per watched conversation, thousands) and raises "dictionary changed size during
# iteration" when another thread joins a room meanwhile: the 500-agent benchmark's simultaneous connects hit it.
_socket_rooms: dict[str, set[str]] = {}
_rooms_lock = threading.Lock()


def _rooms_of(sid: str) -> set[str]:
    with _rooms_lock:
        return set(_socket_rooms.get(sid, ()))


def _move(sid: str, leave: set[str], enter: set[str]) -> None:
    """Leave and join rooms, and remember it."""
    server = socketio.server
    for room in leave:
        server.leave_room(sid, room, namespace="/")
    for room in enter:
        server.enter_room(sid, room, namespace="/")
    with _rooms_lock:
        rooms = _socket_rooms.setdefault(sid, set())
        rooms.difference_update(leave)
        rooms.update(enter)


def _watched(sid: str) -> set[str]:
    return {r for r in _rooms_of(sid) if r.startswith(_CONVERSATION_ROOM)}


def _authenticate(auth: Any) -> tuple[Agent | None, dict[str, Any]]:
    """The agent, and how it authenticated (kept in the socket's session, re-checked on access changes)."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if token:
        found = token_for(db.session, str(token))
        return (found[1], {"token_id": found[0].id}) if found else (None, {})
    agent_id = session.get("agent_id")
    if agent_id is None:
        return None, {}
    agent = db.session.get(Agent, agent_id)
    if agent is None or not agent.is_active or session.get("sv") != agent.session_version:
        return None, {}
    return agent, {"sv": agent.session_version}


class _CatchUpSlots:
    """How many sockets of this web process run their connect (or `resume`) at once: SOCKET_CATCH_UP_CONCURRENCY,
    the others waiting their turn, first come first served (0: no limit).

    Why: when every console of a web process comes back at once (it restarted, a proxy dropped its websockets),
    hundreds of connects (authentication, rooms, presence, the replay's reads) shared the process's CPU, so each
    took as long as all of them, and the sockets already back waited behind them for their live events (the relay
    runs on the same process). Served in turns, the first consoles are back in a fraction of that time, and the
    relay passes between two connects instead of behind all of them (bench figure 10). The semaphore is made at first
    use, after gunicorn's gevent worker has patched `threading`, so waiting yields to the other greenlets. A socket
    waits at most CATCH_UP_WAIT_MAX_S (connects held up by a slow database must not hold the others forever)."""

    def __init__(self) -> None:
        self._semaphore: threading.Semaphore | None = None
        self._size = 0
        self._lock = threading.Lock()

    def _for(self, size: int) -> threading.Semaphore:
        with self._lock:
            if self._semaphore is None or self._size != size:
                self._semaphore, self._size = threading.BoundedSemaphore(size), size
            return self._semaphore

    @contextmanager
    def held(self) -> Iterator[None]:
        size = get_settings().socket_catch_up_concurrency
        if not size:
            yield
            return
        semaphore = self._for(size)
        taken = semaphore.acquire(timeout=CATCH_UP_WAIT_MAX_S)  # past it, served anyway: a wait, never a refusal
        try:
            yield
        finally:
            if taken:
                semaphore.release()


CATCH_UP_WAIT_MAX_S = 30.0
_catch_up_slots = _CatchUpSlots()


@socketio.on("connect")
def on_connect(auth: Any = None) -> None:
    try:
        with _catch_up_slots.held():
            _connect(auth)
    except BaseException:
        with _rooms_lock:  # refused or failed: no disconnect will follow to forget it
            _socket_rooms.pop(request.sid, None)
        raise
    finally:
        db.session.remove()


def _connect(auth: Any) -> None:
    agent, how = _authenticate(auth)
    if agent is None:
        raise ConnectionRefusedError("unauthorized")
    requested = _requested_ids(auth.get("watch")) if isinstance(auth, dict) else None
    rooms, visible = access.socket_access(db.session, agent, requested or [])
    _move(request.sid, set(), set(rooms))
    watched = _watch(visible)
    presence.socket_connected(db.session, agent, request.sid)
    db.session.commit()
    socketio.server.save_session(request.sid, {"agent_id": agent.id, **how}, namespace="/")
    _emit_here("session", {"agent_id": agent.id, "rooms": rooms, "watching": watched}, request.sid)
    last_seq = auth.get("last_seq") if isinstance(auth, dict) else None
    if isinstance(last_seq, int) and last_seq >= 0:
        replay(set(rooms) | {_CONVERSATION_ROOM + str(c) for c in watched}, last_seq, _seen_ranges(auth.get("seen")))


def _socket_agent_id() -> int | None:
    """The id of the agent this socket authenticated as at connect (cookie or token)."""
    return socketio.server.get_session(request.sid, namespace="/").get("agent_id")


def _socket_agent() -> Agent | None:
    """The agent this socket authenticated as at connect, if still active."""
    agent_id = _socket_agent_id()
    agent = db.session.get(Agent, agent_id) if agent_id is not None else None
    return agent if agent is not None and agent.is_active else None


def _requested_ids(value: Any) -> list[int] | None:
    """The conversation ids of a watch request: a list of positive ints, at most WATCH_MAX; None if malformed."""
    if not isinstance(value, list) or len(value) > WATCH_MAX:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return None
    return sorted(set(value))


def _watch(allowed: Iterable[int]) -> list[int]:
    """Make this socket watch exactly the conversations `allowed` (those it asked for and may see); returns
    their ids in order."""
    ids = sorted(allowed)
    wanted = {_CONVERSATION_ROOM + str(c) for c in ids}
    current = _watched(request.sid)
    _move(request.sid, current - wanted, wanted - current)
    return ids


def _outside_a_transaction() -> None:
    """Start this thread's session in autocommit on PostgreSQL, for a handler that runs one SELECT: psycopg sends
    no BEGIN before it, and the session's end no ROLLBACK after it, which would also make psycopg forget the
    connection's prepared statements (see db.end_request). SQLAlchemy sets the connection back to its isolation
    level when it returns to the pool, so no connection is handed out in autocommit. SQLite's transactions are
    begun by the engine itself (inbox/db.py) and cost no round trip: left as they are."""
    if db.dialect == "postgresql":
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@socketio.on("watch")
def on_watch(data: Any = None) -> dict[str, Any]:
    """The conversations this socket shows: {"conversation_ids": [ids]} (replaces the previous set; [] for none).

    Acknowledged with {"watching": [ids]} (the ones it may see; the others are left out, as a 404 would) or
    {"error": "..."}. The console fetches the thread after the acknowledgement, so nothing falls in between.
    Answered with one SELECT (access.watchable_conversation_ids), which checks the agent too: a malformed request
    runs it with no ids, so an agent deactivated since connecting is told "unauthorized" first, as before."""
    agent_id = _socket_agent_id()
    if agent_id is None:
        return {"error": "unauthorized"}
    ids = _requested_ids(data.get("conversation_ids")) if isinstance(data, dict) else None
    try:
        _outside_a_transaction()
        allowed = access.watchable_conversation_ids(db.session, agent_id, ids or [])
    finally:
        db.session.remove()
    if allowed is None:
        return {"error": "unauthorized"}
    if ids is None:
        return {"error": f"conversation_ids must be a list of at most {WATCH_MAX} conversation ids"}
    return {"watching": _watch(allowed)}


@socketio.on("resume")
def on_resume(data: Any = None) -> None:
    """A client asks again for what it missed: {"last_seq": n, "seen": [...]} (see `_seen_ranges`)."""
    if not isinstance(data, dict) or not isinstance(data.get("last_seq"), int):
        return
    try:
        with _catch_up_slots.held():
            agent = _socket_agent()
            if agent is None:
                return
            watched = {int(r[len(_CONVERSATION_ROOM):]) for r in _watched(request.sid)}
            rooms, visible = access.socket_access(db.session, agent, watched)
            replay(set(rooms) | {_CONVERSATION_ROOM + str(c) for c in visible}, data["last_seq"],
                   _seen_ranges(data.get("seen")))
    finally:
        db.session.remove()


SEEN_MAX = 2100  # items of a client's `seen` (the console's SeqTracker remembers 2,000 seqs, and its floor)


def _seen_ranges(value: Any) -> list[tuple[int, int]]:
    """The seqs a client says it has seen, from its handshake's or `resume`'s "seen": a list of seqs and [first,
    last] ranges (inclusive), at most SEEN_MAX; anything else is no information (the whole overlap is replayed, as
    for a client that sends none). Sorted ranges."""
    if not isinstance(value, list) or len(value) > SEEN_MAX:
        return []
    ranges = []
    for item in value:
        if type(item) is int:
            ranges.append((item, item))
        elif isinstance(item, list) and len(item) == 2 and all(type(v) is int for v in item) and item[0] <= item[1]:
            ranges.append((item[0], item[1]))
        else:
            return []
    return sorted(ranges)


def _in_ranges(seq: int, ranges: list[tuple[int, int]], starts: list[int]) -> bool:
    k = bisect.bisect_right(starts, seq) - 1
    return k >= 0 and ranges[k][0] <= seq <= ranges[k][1]


def replay(rooms: set[str], last_seq: int, seen: list[tuple[int, int]] | None = None) -> int:
    """Emit to this client the stored events of its rooms that came after `last_seq`, in seq order, preceded by
    those of the REPLAY_OVERLAP before it that it has not seen (events commit slightly out of seq order: one may
    have come after the client's last; `seen`, see `_seen_ranges`, leaves out the others, which in a busy inbox
    are most of the replay), then `replayed` {"complete": true, "missed": n}. When the replay cannot be whole (more
    than REPLAY_MAX events of its rooms, more than REPLAY_SCAN events in all, or `last_seq` no longer kept) it
    sends none of them and `replayed` {"complete": false, "missed": null}: the console then fetches its list and
    its open thread again. Never a silent cut. How many events were missed."""
    complete, texts, missed = _missed(sorted(rooms), last_seq, seen or [])
    # the connection back to the pool before the writes: when hundreds of consoles reconnect at once, each socket's
    # greenlet waits its turn between two writes, and held its connection (and transaction) meanwhile
    db.session.remove()
    if texts:
        server = socketio.server
        eio_sid = server.manager.eio_sid_from_sid(request.sid, "/")
        for start in range(0, len(texts), FRAME_MAX):  # the same `events` frames as live delivery
            server.eio.send(eio_sid, _events_packet(texts[start:start + FRAME_MAX]))
    _emit_here("replayed", {"complete": complete, "missed": missed if complete else None}, request.sid)
    return missed


def _emit_here(name: str, data: Any, sid: str) -> None:
    """Emit to a socket of this process (a handler's own, or one `refresh_sockets` found here) directly, in order
    with the replay's frames, and not through the message queue (a Redis PUBLISH each, then every web process's
    listener decoding it to find the one socket): a storm of reconnects sent two per console that way."""
    socketio.server.emit(name, data, to=sid, namespace="/", ignore_queue=True)


def _events_packet(texts: list[str]) -> str:
    """The Socket.IO EVENT packet of an `events` frame of replayed events, from each event's JSON text."""
    return f'{sio_packet.EVENT}["events",[{",".join(texts)}]]'


class _ReplayStatements:
    """The replay's three SELECTs, built once per dialect and run on the session's connection (Core rows: ints and
    texts, no ORM loading, which was 45% of the replay's reads when 500 consoles reconnected at once, bench figure
    10). Their parameters: `last` (the client's last seq), `rooms` (the socket's), and:
      head     the newest seq, the created_at of `last` (is it still kept?), and how many events of the rooms came
               after `last` (at most `limit`, among the REPLAY_SCAN seqs after it: `scan_end`): one round trip, and
               all that an incomplete replay reads;
      overlap  the seqs of the rooms' events of REPLAY_OVERLAP before `last` (`cutoff`), above the client's
               `floor` (all seen up to there), the latest `overlap_max` (REPLAY_OVERLAP_MAX) of them;
      texts    the replay itself, seq, name and payload's stored JSON text: the rooms' events after `last` up to the
               head's newest (later ones come live: the socket joined its rooms first), and the overlap's `unseen`."""

    def __init__(self, dialect: str) -> None:
        ev = RealtimeEvent
        visible = access.in_rooms(dialect, ev.rooms, "rooms")
        last = bindparam("last", type_=Integer)
        after = select(literal_column("1")).where(ev.id > last, ev.id <= bindparam("scan_end", type_=Integer),
                                                  visible).limit(bindparam("limit", type_=Integer)).subquery()
        self.head = select(func.max(ev.id),
                           select(ev.created_at).where(ev.id == last).scalar_subquery(),
                           select(func.count()).select_from(after).scalar_subquery())
        cutoff = bindparam("cutoff", type_=ev.created_at.type)
        first = select(func.min(ev.id)).where(ev.created_at >= cutoff,
                                              ev.created_at <= bindparam("anchor_at", type_=ev.created_at.type))
        self.overlap = (select(ev.id).where(ev.id >= first.scalar_subquery(), ev.id <= last,
                                            ev.id > bindparam("floor", type_=Integer),
                                            ev.created_at >= cutoff, visible)
                        .order_by(ev.id.desc()).limit(bindparam("overlap_max", type_=Integer)))
        columns = (ev.id.label("seq"), ev.name, cast(ev.payload, Text))
        self.texts = union_all(  # each part on the primary key (an OR of the two could make SQLite scan the table)
            select(*columns).where(among(dialect, ev.id, name="unseen")),
            select(*columns).where(ev.id > last, ev.id <= bindparam("newest", type_=Integer), visible),
        ).order_by(literal_column("seq"))


_replay_statements: dict[str, _ReplayStatements] = {}
_event_names: dict[str, str] = {}  # an event's name -> its JSON text


def _missed(rooms: list[str], last_seq: int, seen: list[tuple[int, int]]) -> tuple[bool, list[str], int]:
    """Whether the replay is whole; its events' replay JSON, of `rooms` (tested by the database): the overlap's that
    `seen` does not cover, then those after `last_seq`, in seq order; and how many came after `last_seq`. The
    texts are written from the payloads' stored JSON: no payload is decoded, built into objects and encoded again
    (per socket, 50 us of the web process per event replayed, bench figure 10). An incomplete replay costs one
    round trip and reads no event."""
    statements = _replay_statements.get(db.dialect)
    if statements is None:
        statements = _replay_statements[db.dialect] = _ReplayStatements(db.dialect)
    connection = db.session.connection()
    newest, anchor_at, count = connection.execute(statements.head, {
        "last": last_seq, "rooms": rooms, "scan_end": last_seq + REPLAY_SCAN, "limit": REPLAY_MAX + 1}).one()
    if (last_seq and anchor_at is None) or (newest or 0) - last_seq > REPLAY_SCAN or count > REPLAY_MAX:
        return False, [], 0
    unseen: list[int] = []
    if anchor_at is not None:
        floor = seen[0][1] if seen and seen[0][0] <= 0 else 0  # the console's [0, floor]: everything below
        ids = connection.execute(statements.overlap, {
            "last": last_seq, "rooms": rooms, "anchor_at": anchor_at, "cutoff": anchor_at - REPLAY_OVERLAP,
            "floor": floor, "overlap_max": REPLAY_OVERLAP_MAX}).scalars().all()
        starts = [first_seen for first_seen, _last in seen]
        unseen = sorted(i for i in ids if not _in_ranges(i, seen, starts))
    if not count and not unseen:
        return True, [], 0
    rows = connection.execute(statements.texts, {"last": last_seq, "rooms": rooms, "newest": newest or 0,
                                                 "unseen": unseen}).all()
    texts = []
    for seq, name, payload in rows:
        name_json = _event_names.get(name)
        if name_json is None:
            name_json = _event_names[name] = dump_json(name)
        texts.append(f'{{"event":{name_json},"seq":{seq},"data":{payload},"replay":true}}')
    return True, texts, count


@socketio.on("disconnect")
def on_disconnect(*_args: Any) -> None:
    with _rooms_lock:
        _socket_rooms.pop(request.sid, None)
    try:
        presence.socket_disconnected(request.sid)  # the last socket: offline after a grace period
    finally:
        db.session.remove()


@socketio.on("heartbeat")
def on_heartbeat(*_args: Any) -> None:
    """The console is still there (every ~30 s): last_seen_at."""
    presence.heartbeat(request.sid)


# ---------------------------------------------------------------- access changes (relay control messages)
def control_handler(app: Flask) -> Callable[[dict[str, Any]], None]:
    """What this serving process does with a relay control message (inbox/realtime/relay.py)."""
    def handle(message: dict[str, Any]) -> None:
        if message.get("control") != "access":
            return
        with app.app_context():
            try:
                for agent_id in message.get("agent_ids", []):
                    refresh_sockets(int(agent_id))
            finally:
                db.session.remove()
    return handle


def _still_allowed(agent: Agent | None, saved: dict[str, Any]) -> bool:
    if agent is None or not agent.is_active:
        return False
    if "sv" in saved and saved["sv"] != agent.session_version:  # signed out everywhere (password, deactivation)
        return False
    if "token_id" in saved:
        token = db.session.get(ApiToken, saved["token_id"])
        return token is not None and token.revoked_at is None
    return True


def refresh_sockets(agent_id: int) -> int:
    """Bring this process's sockets of `agent_id` in line with the agent's access now: leave the rooms they lost,
    join the ones they gained (and tell the client with `session`), or disconnect the socket if it may no longer
    be open. Returns how many sockets were looked at."""
    server = socketio.server
    sids = [sid for sid, _eio in server.manager.get_participants("/", f"agent:{agent_id}")]
    if not sids:
        return 0
    agent = db.session.get(Agent, agent_id)
    active = agent is not None and agent.is_active
    closing = [sid for sid in sids if not _still_allowed(agent, server.get_session(sid, namespace="/"))]
    watched = {sid: _watched(sid) for sid in sids}
    watched_ids = {int(r[len(_CONVERSATION_ROOM):]) for rs in watched.values() for r in rs}
    rooms: set[str] = set()
    still_visible: set[str] = set()
    if active:
        assert agent is not None
        granted, visible = access.socket_access(db.session, agent, watched_ids)
        rooms, still_visible = set(granted), {_CONVERSATION_ROOM + str(c) for c in visible}
    # end the read before touching sockets: a disconnect runs its handler (presence writes) in this thread, and
    # SQLite would wait on the write lock this session's transaction holds
    db.session.remove()
    for sid in sids:
        if sid in closing:
            log.info("disconnecting socket %s of agent %s: access withdrawn", sid, agent_id)
            server.disconnect(sid, namespace="/")
            continue
        current = _rooms_of(sid) - watched[sid]
        # a watched conversation of a brand no longer served is left with the brand
        _move(sid, (watched[sid] - still_visible) | (current - rooms), rooms - current)
        if current != rooms:
            _emit_here("session", {"agent_id": agent_id, "rooms": sorted(rooms)}, sid)
    return len(sids)
