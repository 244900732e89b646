"""The PostgreSQL connection pool keeps what a burst needs (DATABASE_POOL_SIZE) instead of opening and closing
connections: each new one costs PostgreSQL a backend process and loses the prepared statements.

Runs on PostgreSQL (RELAIS_TEST_DB=postgresql); on SQLite the pool settings do not apply and the tests skip."""
from __future__ import annotations

import threading
from typing import Any

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
