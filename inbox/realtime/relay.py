"""Carries committed live events to the sockets of every serving process, coalesced under load.

Each committed transaction's events leave as ONE message: a Redis PUBLISH on `<REDIS_PREFIX>live` when Redis is
configured (so web processes, RQ workers and the SLA timer all reach every web process), otherwise an
in-process queue (the embedded mode: one process). Every serving process runs one relay thread. It takes what
has arrived while it was delivering the previous round, groups the envelopes by their rooms and emits ONE
`events` frame per group: `[{"event", "seq", "data"}, ...]` in seq order.

Why: the cost of a live update is per frame and per socket (a queue put, a thread wake-up and a websocket write
each), not per byte. One frame per event made 500 agents x 200 msg/s x 2 events a burst no Python process can
write. With rounds, an idle system still sends each commit at once (a round of one), and a busy one sends
bigger frames instead of more frames: a socket gets at most one frame per round however fast events arrive.

A process with no socket connected (one that only takes webhooks) reads the channel but decodes nothing. The
relay's CPU work (decoding a round, a frame to hundreds of sockets) is cut by yields, so that under gevent a
webhook waiting for its ack is not held behind a whole round.

The same channel carries control messages (a JSON object instead of a list): `{"control": "access",
"agent_ids": [...]}` after a commit that changed who may see what (team membership, role, deactivation, revoked
token), so every serving process re-checks those agents' open sockets at once, in order with the events.

Redis pub/sub keeps nothing: events published while a web process is cut from Redis never reach its sockets.
The database has them (`realtime_events`), so when the relay's subscription comes back it tells its sockets
`resync`, and each client asks for what it missed with `resume` (its last seq), like after a reconnect.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

import orjson

from inbox.concurrency import gevent_patched, with_queued

log = logging.getLogger(__name__)

FRAME_MAX = 250          # envelopes per frame: bounds a frame's size when a round is large
DECODE_CHUNK = 25        # published messages decoded between two yields to the other greenlets (gevent)
ROUND_MAX = 1000         # published messages (commits) taken in one round
RECONNECT_DELAY = (0.2, 5.0)  # Redis subscription retry: first and longest wait, doubling in between

Envelope = dict[str, Any]
Message = list[Envelope] | dict[str, Any]   # one commit's events, or a control message
Emit = Callable[[str, Any, list[str]], None]
OnControl = Callable[[dict[str, Any]], None]


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dump_json(value: Any) -> str:
    """The JSON of a published message or event payload: compact, UTF-8 (not \\u-escaped), a value JSON does not
    know (e.g. a datetime) as its str(). orjson: the drain serialises every live event it commits (a 2,000-message
    batch of 10-entry webhooks, 2,600 events), and the standard library's encoder cost 7% of its CPU more."""
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()


def envelopes(rows: list[Any]) -> list[Envelope]:
    """The wire form of committed events (`realtime.PendingEvent` with its id): what one commit publishes."""
    return [{"event": r.name, "seq": r.id, "data": r.payload, "rooms": list(r.rooms)} for r in rows]


def envelopes_json(rows: list[Any]) -> str:
    """`dump_json(envelopes(rows))`, with each payload's JSON taken from `payload_json` where the commit already
    serialised it (PostgreSQL: `realtime._write_pending`) rather than serialised a second time."""
    parts = []
    for r in rows:
        data = r.payload_json if r.payload_json is not None else dump_json(r.payload)
        rooms = dump_json(list(r.rooms))
        parts.append(f'{{"event":{dump_json(r.name)},"seq":{int(r.id)},"data":{data},"rooms":{rooms}}}')
    return "[" + ",".join(parts) + "]"


def frames(batches: list[list[Envelope]]) -> list[tuple[list[str], list[Envelope]]]:
    """Group the envelopes of several commits by their rooms, keeping seq order inside each group.

    Returns (rooms, envelopes) pairs, at most FRAME_MAX envelopes each; "rooms" is dropped from the envelopes
    (a client never needs to know which rooms an event went to)."""
    groups: dict[tuple[str, ...], list[Envelope]] = {}
    for batch in batches:
        for item in batch:
            rooms = tuple(item["rooms"])
            groups.setdefault(rooms, []).append({k: v for k, v in item.items() if k != "rooms"})
    out = []
    for rooms, items in groups.items():
        items.sort(key=lambda e: e["seq"])
        for start in range(0, len(items), FRAME_MAX):
            out.append((list(rooms), items[start:start + FRAME_MAX]))
    return out


class Relay:
    """The publishing side (any process) and, in serving processes, the delivering thread."""

    def __init__(self, *, redis_url: str | None, channel: str, emit: Emit | None,
                 on_control: OnControl | None = None, has_sockets: Callable[[], bool] | None = None) -> None:
        self.channel = channel
        self._emit = emit
        self._on_control = on_control
        self._has_sockets = has_sockets
        self._redis: Any = None
        self._local: queue.Queue[Message] | None = None
        if redis_url:
            from redis import Redis
            # named, so an operator (or a test) can find this process's subscription in CLIENT LIST
            self._redis = Redis.from_url(redis_url, client_name=f"relais-live-relay:{channel}")
        elif emit is not None:
            self._local = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0      # delivered rounds, frames and envelopes: what bench and tests read
        self.frames = 0
        self.delivered = 0
        self.skipped = 0     # published messages not decoded: no socket was connected to this process

    # -------------------------------------------------------------- publishing
    def publish(self, message: Message) -> None:
        """Send one commit's envelopes (or a control message) to every serving process; never raises (the
        events are in the database)."""
        if not message:
            return
        if self._local is not None:
            self._local.put(message)
            return
        if self._redis is not None:
            self._publish_text(dump_json(message), len(message))
        # else no Redis and no sockets here (a CLI command): clients get these by replay

    def publish_events(self, rows: list[Any]) -> None:
        """`publish(envelopes(rows))` for one commit's events (`realtime.PendingEvent`s with their ids); to Redis,
        the JSON of each payload serialised at the commit is reused."""
        if not rows:
            return
        if self._local is not None:
            self._local.put(envelopes(rows))
        elif self._redis is not None:
            self._publish_text(envelopes_json(rows), len(rows))

    def _publish_text(self, text: str, count: int) -> None:
        try:
            self._redis.publish(self.channel, text)
        except Exception:  # a live push failing must never undo committed work; clients catch up by seq
            log.exception("could not publish a live message (%d item(s))", count)

    # -------------------------------------------------------------- delivering
    def start(self) -> "Relay":
        if self._emit is not None and self._thread is None:
            target = self._run_local if self._local is not None else self._run_redis
            self._thread = threading.Thread(target=target, name="relais-live-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def deliver(self, messages: list[Message]) -> None:
        """One round: the events of consecutive commits as frames; a control message is applied in its place
        (events committed before an access change go to the old rooms, those after it to the new ones)."""
        assert self._emit is not None
        batches: list[list[Envelope]] = []
        for message in messages:
            if isinstance(message, dict):
                self._send(batches)
                batches = []
                self._control(message)
            else:
                batches.append(message)
        self._send(batches)
        self.rounds += 1

    def _send(self, batches: list[list[Envelope]]) -> None:
        assert self._emit is not None
        for n, (rooms, items) in enumerate(frames(batches)):
            if n:
                _yield()  # a frame to a room of 500 sockets is CPU work: let a webhook's ack in between
            try:
                self._emit("events", items, rooms)
            except Exception:  # one bad frame must not stop the relay
                log.exception("could not deliver %d live event(s) to %s", len(items), rooms)
                continue
            self.frames += 1
            self.delivered += len(items)

    def _control(self, message: dict[str, Any]) -> None:
        if self._on_control is None:
            return
        try:
            self._on_control(message)
        except Exception:
            log.exception("live relay: control message %s failed", message.get("control"))

    def _run_local(self) -> None:
        assert self._local is not None
        while not self._stop.is_set():
            try:
                first = self._local.get(timeout=0.5)
            except queue.Empty:
                continue
            self.deliver(with_queued(first, self._local, ROUND_MAX))

    def _run_redis(self) -> None:
        delay, subscribed_before = RECONNECT_DELAY[0], False
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                if subscribed_before:  # events published while we were cut off are only in the database
                    log.warning("live relay: Redis subscription restored; asking clients to resume")
                    self._emit_safely("resync", {}, None)
                subscribed_before, delay = True, RECONNECT_DELAY[0]
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    raw = [message["data"]]
                    while len(raw) < ROUND_MAX:
                        more = pubsub.get_message(timeout=0.0)
                        if more is None:
                            break
                        raw.append(more["data"])
                    if self._has_sockets is not None and not self._has_sockets():
                        self.skipped += len(raw)  # nobody to tell here (e.g. a webhooks-only process)
                        continue
                    self.deliver(self._decode(raw))
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("live relay: Redis subscription lost; retrying in %.1fs", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_DELAY[1])
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001  (closing a dead connection)
                    pass

    @staticmethod
    def _decode(raw: list[bytes]) -> list[Message]:
        """The round's messages, decoded a chunk at a time with a yield in between: a round can hold hundreds of
        commits whose conversation JSON takes milliseconds to decode, during which, under gevent, no other
        greenlet of the process (a webhook waiting for its ack) would run."""
        messages: list[Message] = []
        for start in range(0, len(raw), DECODE_CHUNK):
            if start:
                _yield()
            messages.extend(orjson.loads(data) for data in raw[start:start + DECODE_CHUNK])
        return messages

    def _emit_safely(self, name: str, data: Any, rooms: list[str] | None) -> None:
        try:
            assert self._emit is not None
            self._emit(name, data, rooms)  # type: ignore[arg-type]
        except Exception:
            log.exception("could not emit %s", name)


def _yield() -> None:
    """Under gevent, let the process's other greenlets run; threads need nothing (the GIL switches by itself)."""
    if gevent_patched():
        import gevent

        gevent.sleep(0)
