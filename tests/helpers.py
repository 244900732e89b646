"""Small helpers shared by integration tests: signed webhooks and waiting for conditions."""
from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Callable, Iterator

from inbox.demo.fake_meta import sign_meta
from tests.factories import APP_SECRET


def signed_meta(payload: dict[str, Any] | bytes, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return raw, {"X-Hub-Signature-256": sign_meta(secret, raw), "Content-Type": "application/json"}


def post_meta(client: Any, payload: dict[str, Any] | bytes, secret: str = APP_SECRET) -> Any:
    raw, headers = signed_meta(payload, secret)
    return client.post("/webhooks/meta", data=raw, headers=headers)


def store_verified(payload: dict[str, Any], fingerprint: str | None = None) -> int:
    """Stores a verified Meta webhook as the ack path does (group-committed, status pending, the app secret's
    fingerprint unless `fingerprint`), without nudging a drain; returns the raw event's id."""
    from inbox.demo.fake_meta import meta_json
    from inbox.services.webhook_store import store_webhook_event
    from inbox.webhooks import app_secret_fingerprint

    return store_webhook_event(source="meta", body=meta_json(payload), headers={}, verification="valid",
                               status="pending", detail=fingerprint or app_secret_fingerprint(APP_SECRET))


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    from tests.procs import wait_for

    return wait_for(condition, timeout, "condition not met in time", interval=interval)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def delivery_status(app: Any, message_id: int) -> str | None:
    """The message's delivery status as stored now (outside any request's session)."""
    from inbox.db import db
    from inbox.models import Message

    with app.app_context():
        db.session.expire_all()
        message = db.session.get(Message, message_id)
        return message.delivery_status if message else None


def on_live(sio: Any, handler: Callable[[str, dict[str, Any]], None]) -> None:
    """Call `handler(event name, envelope)` for every event a python-socketio client receives: the server sends
    them in `events` frames (lists of {"event", "seq", "data"})."""
    sio.on("events", lambda frame: [handler(envelope["event"], envelope) for envelope in frame])


def selects(statements: list[str]) -> int:
    """How many of the recorded statements (the `statements` fixture) read: SELECT or WITH."""
    return sum(1 for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH")))


POISON = "poison"  # a message text the drain fails on once `poison_drain` is in place


def poison_drain(monkeypatch: Any) -> None:
    """Make the drain fail on any message whose text is POISON (raised where it notes the message on its
    conversation, after the conversation is opened): the batch falls back to one event at a time."""
    from inbox.services import ingest

    real_note_inbounds = ingest.note_inbounds  # the set-based pass's, and one at a time's through note_inbound

    def note_inbounds(conversation: Any, messages: list[tuple[Any, str | None]]) -> None:
        if any(preview == POISON for _at, preview in messages):
            raise RuntimeError("cannot apply this one")
        real_note_inbounds(conversation, messages)

    monkeypatch.setattr(ingest, "note_inbounds", note_inbounds)


def prepared_at_each_request(engine: Any, request: Callable[[], None], *, tries: int = 200,
                             enough: int = 9) -> list[set[str]]:
    """PostgreSQL: calls `request` (one HTTP request from this thread) until one pooled connection has served
    `enough` of them, and returns what that connection held prepared (pg_prepared_statements) at the start of
    each of its requests, in order. The periodic loops are kept off the pool meanwhile."""
    import threading
    from collections import defaultdict

    from sqlalchemy import event

    from inbox.background import BACKGROUND_LOCK

    me, starting = threading.get_ident(), [False]
    at_start: dict[int, list[set[str]]] = defaultdict(list)  # connection -> prepared statements, per request

    def first_statement(conn: Any, *_args: Any) -> None:
        if threading.get_ident() == me and starting[0]:
            starting[0] = False
            raw = conn.connection.dbapi_connection
            at_start[id(raw)].append({row[0] for row in raw.execute("SELECT statement FROM pg_prepared_statements")})

    event.listen(engine, "before_cursor_execute", first_statement)
    try:
        with BACKGROUND_LOCK:
            for _ in range(tries):
                starting[0] = True
                request()
                if max(len(requests) for requests in at_start.values()) >= enough:
                    break
    finally:
        event.remove(engine, "before_cursor_execute", first_statement)
    requests = max(at_start.values(), key=len)
    assert len(requests) >= enough, f"no connection served {enough} requests in {tries}"
    return requests


def captured_lookups(monkeypatch: Any) -> list[list[list[int]]]:
    """The name-lookup jobs enqueued from now on (each one's [[identity_id, channel_id], ...]), kept here instead
    of run; every other job is enqueued as usual."""
    import inbox.jobs as jobs_module
    from inbox.jobs import tasks

    jobs: list[list[list[int]]] = []
    original = jobs_module.enqueue

    def capture(func: Any, *args: Any, **kwargs: Any) -> None:
        if func is tasks.fetch_contact_profiles:
            jobs.append(args[0])
        else:
            original(func, *args, **kwargs)

    monkeypatch.setattr(jobs_module, "enqueue", capture)
    return jobs


@contextlib.contextmanager
def protocol_trace(engine: Any, path: Any) -> Iterator[list[list[str]]]:
    """libpq's trace of the PostgreSQL protocol (PQtrace, through psycopg's `pgconn.trace`) of every connection
    this thread checks out of `engine` while the block runs, each checkout's frontend and backend messages as lines
    ("F\\t26\\tParse\\t..."). A round trip ends with the server's ReadyForQuery (`round_trips`). Written to `path`
    (a file per checkout), read when the connection is checked in."""
    from psycopg import pq
    from sqlalchemy import event

    me, traces, files = threading.get_ident(), [], {}

    def start(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if threading.get_ident() == me:
            file = open(path / f"trace-{len(traces) + len(files)}.txt", "w+")  # noqa: SIM115 - closed at checkin
            files[id(dbapi_connection)] = file
            dbapi_connection.pgconn.trace(file.fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def stop(dbapi_connection: Any, _record: Any) -> None:
        file = files.pop(id(dbapi_connection), None)
        if file is not None:
            dbapi_connection.pgconn.untrace()
            file.seek(0)
            traces.append(file.read().splitlines())
            file.close()

    event.listen(engine, "checkout", start, insert=True)  # before the engine's own (its ping)
    event.listen(engine, "checkin", stop)
    try:
        yield traces
    finally:
        event.remove(engine, "checkout", start)
        event.remove(engine, "checkin", stop)


def round_trips(trace: list[str]) -> list[list[str]]:
    """A protocol trace cut into round trips: what the client sent in each (a simple query's text, an unprepared
    statement's text, a prepared one's name), up to the server's ReadyForQuery that ends it."""
    trips: list[list[str]] = []
    sent: list[str] = []
    parsed = ""  # the statement psycopg just prepared: the Bind that follows its Parse is that statement's run
    for line in trace:
        if line.count("\t") < 2:  # a statement's text goes on over several lines
            continue
        origin, _length, kind, rest = (line.split("\t", 3) + [""])[:4]
        if origin == "F" and kind == "Query":
            sent.append(rest.strip().strip('"')[:60])
        elif origin == "F" and kind == "Parse":
            name, text = rest.split('"')[1], rest.split('"')[3]  # ' "<name>" "<text>" ...': up to a quote in it
            sent.append(text[:60])
            parsed = name
        elif origin == "F" and kind == "Bind" and rest.split()[1] != '""':
            if rest.split()[1].strip('"') != parsed:
                sent.append(f"prepared {rest.split()[1]}")
            parsed = ""
        elif origin == "B" and kind == "ReadyForQuery":
            trips.append(sent)
            sent, parsed = [], ""
    return trips


@contextlib.contextmanager
def two_drains_first_held(app: Any, monkeypatch: Any) -> Iterator[list[BaseException]]:
    """Two drains as two worker processes run them (the per-process drain lock bypassed), each of a batch of one, in
    threads named "drain-first" and "drain-second": the first is held just before its commit (its transaction and
    its locks open) and the second started once it holds. The block runs meanwhile; on leaving it the first is
    released and both are joined. Yields the errors the drains raised (check them after the block)."""
    from inbox.db import db
    from inbox.services import ingest

    holding, release = threading.Event(), threading.Event()
    original = ingest._commit_with_outcomes

    def held_commit(session: Any, events: Any) -> None:
        if threading.current_thread().name == "drain-first":
            holding.set()
            release.wait(15)  # the transaction (and the conversation's lock) stays open until released
        original(session, events)

    monkeypatch.setattr(ingest, "_commit_with_outcomes", held_commit)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                assert ingest._drain_one_batch(1) == 1
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, name=f"drain-{n}") for n in ("first", "second")]
    threads[0].start()
    try:
        assert holding.wait(10), errors  # the first drain applied its event and holds its transaction open
        threads[1].start()
        yield errors
    finally:
        release.set()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(20)
