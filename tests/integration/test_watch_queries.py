"""A socket's `watch` (the console opening a conversation) is answered with ONE SELECT that checks the agent and
picks the conversations it may see, with the same access as before: its teams' brands, everything for an admin,
nothing (but "unauthorized") for an agent deactivated since connecting. On PostgreSQL that SELECT runs outside a
transaction (no BEGIN, no ROLLBACK) and is one prepared statement whatever the number of ids. Runs on SQLite,
and on PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from sqlalchemy import event

from inbox.db import db
from inbox.models import Agent, Contact, Conversation
from inbox.realtime import handlers
from tests.helpers import selects
from tests.procs import LiveEvents

MALFORMED = (None, {}, {"conversation_ids": "1"}, {"conversation_ids": [0]}, {"conversation_ids": [True]},
             {"conversation_ids": ["1"]}, {"conversation_ids": list(range(1, 50))}, [1])
MALFORMED_ERROR = {"error": "conversation_ids must be a list of at most 20 conversation ids"}
MISSING = 987654


@dataclass
class Sent:
    statement: str
    in_transaction: bool  # what the driver said right after it (PostgreSQL; always False on SQLite)


@pytest.fixture
def watch_statements(app: Any) -> Iterator[list[Sent]]:
    """Every SQL statement sent while the server handles a socket `watch` event, from whichever thread runs it
    (Flask-SocketIO names the event in the handler's request context)."""
    from flask import has_request_context, request

    seen: list[Sent] = []
    with app.app_context():
        engine = db.engine

    def _note(conn, _cursor, statement, _parameters, _context, _executemany) -> None:  # noqa: ANN001
        if has_request_context() and (getattr(request, "event", None) or {}).get("message") == "watch":
            driver = conn.connection.dbapi_connection
            status = getattr(getattr(driver, "info", None), "transaction_status", None)
            seen.append(Sent(statement, status is not None and status.name != "IDLE"))

    event.listen(engine, "after_cursor_execute", _note)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", _note)


def _conversations(world: Any, brand_id: int, channel_id: int, n: int) -> list[int]:
    ids = []
    with db.transaction() as session:
        for i in range(n):
            contact = Contact(name=f"Client {brand_id}-{i}")
            session.add(contact)
            session.flush()
            conversation = Conversation(kind="dm", status="open", brand_id=brand_id, channel_id=channel_id,
                                        contact_id=contact.id, thread_key=f"dm:watch:{contact.id}")
            session.add(conversation)
            session.flush()
            ids.append(conversation.id)
    return ids


@pytest.fixture
def conversations(app: Any, world: Any) -> tuple[list[int], list[int]]:
    """Three conversations of the world's brand, and two of the other brand (the outsider's)."""
    with app.app_context():
        return (_conversations(world, world.brand_id, world.page_channel_id, 3),
                _conversations(world, world.other_brand_id, world.other_page_channel_id, 2))


def _watched(socket: LiveEvents) -> set[int]:
    """The conversations the server has this socket watch (its rooms)."""
    return {int(r.split(":")[1]) for r in handlers._rooms_of(socket.sio.get_sid()) if r.startswith("conversation:")}


def _one_select(sent: list[Sent]) -> None:
    """One SELECT and nothing else: on PostgreSQL outside a transaction (no BEGIN before it, nothing to end after
    it); SQLite's transaction is begun by the engine itself (a local call, no round trip)."""
    statements = [s.statement for s in sent]
    assert selects(statements) == 1, statements
    others = [s for s in statements if not s.lstrip().upper().startswith("SELECT")]
    assert others == ([] if db.dialect == "postgresql" else ["BEGIN IMMEDIATE"]), statements
    assert not any(s.in_transaction for s in sent), "PostgreSQL: the SELECT ran in a transaction"


def test_a_watch_runs_one_select(app, live_server, world, token_for, conversations, watch_statements) -> None:
    ours, theirs = conversations
    socket = LiveEvents().connect(live_server, auth={"token": token_for(world.agent)})
    try:
        watch_statements.clear()
        requested = [*ours, *theirs, MISSING]
        assert socket.sio.call("watch", {"conversation_ids": requested}, timeout=5) == {"watching": ours}
        _one_select(watch_statements)
        # a malformed request checks the agent with the same statement
        watch_statements.clear()
        assert socket.sio.call("watch", {"conversation_ids": "1"}, timeout=5) == MALFORMED_ERROR
        _one_select(watch_statements)
    finally:
        socket.disconnect()


def test_who_may_watch_what_is_unchanged(app, live_server, world, token_for, conversations) -> None:
    ours, theirs = conversations
    requested = {"conversation_ids": [*ours, *theirs, MISSING]}
    sockets = {email: LiveEvents().connect(live_server, auth={"token": token_for(email)})
               for email in (world.agent, world.outsider, world.admin, world.supervisor)}
    try:
        # their teams' brands; an admin everything; a conversation that does not exist is left out for all
        for email, expected in ((world.agent, ours), (world.supervisor, ours), (world.outsider, theirs),
                                (world.admin, sorted(ours + theirs))):
            assert sockets[email].sio.call("watch", requested, timeout=5) == {"watching": expected}, email
            assert _watched(sockets[email]) == set(expected), email
        assert sockets[world.outsider].sio.call("watch", {"conversation_ids": ours}, timeout=5) == {"watching": []}
        assert _watched(sockets[world.outsider]) == set()

        agent = sockets[world.agent]
        assert agent.sio.call("watch", {"conversation_ids": [ours[1]]}, timeout=5) == {"watching": [ours[1]]}
        assert _watched(agent) == {ours[1]}, "the new set replaces the previous one"
        for bad in MALFORMED:
            assert agent.sio.call("watch", bad, timeout=5) == MALFORMED_ERROR, bad
        assert _watched(agent) == {ours[1]}, "a refused request changes nothing"
        assert agent.sio.call("watch", {"conversation_ids": []}, timeout=5) == {"watching": []}
        assert _watched(agent) == set()

        with db.transaction() as session:  # deactivated behind the socket's back (no access message)
            session.get(Agent, world.agent_ids[world.agent]).is_active = False
        for request in (requested, {"conversation_ids": []}, {"conversation_ids": "1"}):
            assert agent.sio.call("watch", request, timeout=5) == {"error": "unauthorized"}, request
        assert _watched(agent) == set()
    finally:
        for socket in sockets.values():
            socket.disconnect()


def test_the_watch_statement_is_prepared_once_whatever_the_number_of_ids(app, live_server, world, token_for,
                                                                         conversations, watch_statements) -> None:
    """PostgreSQL: one text for any number of ids, which psycopg prepares after its threshold (5 executions on a
    connection) and keeps: nothing rolls the connection back in between. Seen from the server
    (pg_prepared_statements) at the start of each watch, on the connection serving it. The connection goes back
    to the pool out of autocommit."""
    if db.dialect != "postgresql":
        pytest.skip("prepared statements are psycopg's (PostgreSQL)")
    from flask import request

    from inbox.background import BACKGROUND_LOCK

    with app.app_context():
        engine = db.engine
    at_start: list[tuple[Any, set[str]]] = []  # (driver connection, what it held prepared), per watch

    def _prepared(conn, *_args) -> None:  # noqa: ANN001
        if (getattr(request, "event", None) or {}).get("message") == "watch":
            driver = conn.connection.dbapi_connection
            held = driver.execute("SELECT statement FROM pg_prepared_statements")
            at_start.append((driver, {row[0] for row in held}))

    ours, theirs = conversations
    requested = [*ours, *theirs, MISSING]
    socket = LiveEvents().connect(live_server, auth={"token": token_for(world.admin)})
    event.listen(engine, "before_cursor_execute", _prepared)
    try:
        with BACKGROUND_LOCK:  # the periodic loops off the pool: the watches get its last used connection
            for n in range(12):
                ids = requested[:1 + n % len(requested)]
                assert socket.sio.call("watch", {"conversation_ids": ids}, timeout=5) == {
                    "watching": sorted(set(ids) - {MISSING})}
            # back in the pool (before the acknowledgement) in its usual isolation level
            assert not any(driver.autocommit for driver, _ in at_start)
    finally:
        event.remove(engine, "before_cursor_execute", _prepared)
        socket.disconnect()
    assert len({s.statement for s in watch_statements}) == 1, {s.statement for s in watch_statements}
    connection = max({c for c, _ in at_start}, key=lambda c: sum(d is c for d, _ in at_start))
    watches = [prepared for c, prepared in at_start if c is connection]
    assert len(watches) > 6, "the watches rotated through the pool's connections"
    for before, after in zip(watches, watches[1:]):
        assert before <= after, before - after  # nothing prepared is dropped between watches
    assert any("FROM agents LEFT OUTER JOIN conversations" in statement for statement in watches[-1]), watches[-1]
