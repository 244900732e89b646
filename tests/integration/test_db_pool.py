"""The PostgreSQL connection pool keeps what a burst needs (DATABASE_POOL_SIZE) instead of opening and closing
connections: each new one costs PostgreSQL a backend process and loses the prepared statements.

Runs on PostgreSQL (RELAIS_TEST_DB=postgresql); on SQLite the pool settings do not apply and the tests skip."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

import pytest
from sqlalchemy import event, text

from inbox.db import db, make_engine


def _postgresql_only() -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL pool settings (RELAIS_TEST_DB=postgresql)")


def _burst(engine: Any, width: int) -> None:
    """`width` threads each holding a connection at the same moment, then giving it back."""
    barrier = threading.Barrier(width, timeout=30)
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                barrier.wait()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(width)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def test_the_app_engine_follows_the_pool_settings(app: Any) -> None:
    with app.app_context():
        _postgresql_only()
        settings = app.extensions["relais.settings"]
        assert db.engine.pool.size() == settings.database_pool_size == 20
        assert db.engine.pool._max_overflow == settings.database_max_overflow == 10


def test_a_burst_within_the_pool_size_reuses_the_connections_of_the_previous_one(app: Any) -> None:
    with app.app_context():
        _postgresql_only()
        engine = make_engine(db.engine.url.render_as_string(hide_password=False))  # the defaults, its own pool
        opened: list[int] = []
        event.listen(engine, "connect", lambda *_args: opened.append(1))
        try:
            _burst(engine, 20)
            assert len(opened) == 20
            _burst(engine, 20)
            assert len(opened) == 20, "a second burst of the same width opened new connections"
            assert engine.pool.checkedin() == 20
            _burst(engine, 25)  # beyond the pool: the overflow is opened, then closed when returned
            assert len(opened) == 25 and engine.pool.checkedin() == 20
        finally:
            engine.dispose()


def _backend_pid(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


@contextlib.contextmanager
def _one_connection(ping_after_idle: float) -> Iterator[Any]:
    """An engine of its own with a pool of one connection, pinged after `ping_after_idle` seconds idle."""
    _postgresql_only()
    engine = make_engine(db.engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0,
                         ping_after_idle=ping_after_idle)
    try:
        yield engine
    finally:
        engine.dispose()


def _terminate(pid: int) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()


def test_only_a_connection_idle_for_a_while_is_pinged(app: Any, tmp_path: Any) -> None:
    """pool_pre_ping cost every transaction a round trip (a drain's, a request's). A connection checked in less than
    `ping_after_idle` seconds ago is handed out as it is; one idle longer is pinged first (libpq's protocol trace)."""
    from tests.helpers import protocol_trace, round_trips

    with app.app_context(), _one_connection(0.2) as engine:
        _backend_pid(engine)
        with protocol_trace(engine, tmp_path) as traces:
            _backend_pid(engine)  # just checked in: no ping
            time.sleep(0.3)
            _backend_pid(engine)  # idle 0.3 s: pinged
        sent = [round_trips(trace) for trace in traces]
        assert sent[0] == [["BEGIN"], ["SELECT pg_backend_pid()"], ["ROLLBACK"]], sent
        assert sent[1] == [[";"], ["BEGIN"], ["SELECT pg_backend_pid()"], ["ROLLBACK"]], sent


def test_a_connection_closed_while_idle_is_replaced_before_it_is_used(app: Any) -> None:
    """The database closed an idle connection (a restart, an idle timeout on the way): the ping finds it, and the
    pool hands out a new connection instead of failing the request or the drain that asked for one."""
    with app.app_context(), _one_connection(0.05) as engine:
        first = _backend_pid(engine)
        _terminate(first)
        time.sleep(0.1)
        assert _backend_pid(engine) != first


def test_a_connection_closed_right_after_its_use_fails_once_then_the_pool_recovers(app: Any) -> None:
    """What no longer pinging a connection used less than a second ago risks: the database closed it within that
    second. Its next statement fails as a disconnect (the request or the drain fails; a drain's webhooks are durable
    and drained again); SQLAlchemy invalidates the pool, and the next checkout gets a new connection."""
    from sqlalchemy.exc import DBAPIError

    with app.app_context(), _one_connection(60) as engine:
        first = _backend_pid(engine)
        _terminate(first)
        with pytest.raises(DBAPIError) as failed:
            _backend_pid(engine)
        assert failed.value.connection_invalidated
        assert _backend_pid(engine) != first
