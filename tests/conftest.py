"""Shared fixtures: an app on its own database (SQLite file, or a fresh PostgreSQL database when
RELAIS_TEST_DB=postgresql), a fake Meta Graph server, HTTP clients and signed-in agents.

Nothing assumes an empty server: each run creates its own database / Redis key prefix and removes them.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests import factories
from tests.services import postgres_admin_url, require_or_skip_postgres

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    backend = os.environ.get("RELAIS_TEST_DB", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'relais.db'}"
        return
    require_or_skip_postgres()
    import psycopg

    name = f"relais_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_admin_url(database=name, driver="postgresql+psycopg")
    finally:
        from inbox.db import db
        if db.engine is not None:
            db.engine.dispose()
        with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def fake_meta() -> Iterator[Any]:
    from inbox.demo.fake_meta import FakeMeta

    fake = FakeMeta()
    yield fake
    fake.stop()


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")


@pytest.fixture(scope="session")
def app(database_url: str, fake_meta: Any) -> Iterator[Any]:
    from config import load_settings
    from inbox import create_app, jobs, realtime

    migrate(database_url)
    settings = load_settings({"RELAIS_ENV": "test", "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex}) \
        .with_overrides(database_url=database_url, meta_graph_base_url=fake_meta.base_url,
                        login_rate_limit="1000 per minute", reconcile_interval_seconds=0.5,
                        profile_lookup_batch_ms=50.0)  # gathered as in production, without a second's wait
    application = create_app(settings=settings)
    application.config["TESTING"] = True
    yield application
    # stop the periodic loops before the database goes away
    reconciler_stop = application.extensions.get("relais.reconciler_stop")
    if reconciler_stop is not None:
        reconciler_stop.set()
    timer = application.extensions.get("relais.sla_timer")
    if timer is not None:
        timer.stop()
    realtime.stop(application)
    jobs.shutdown()


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that used the app starts from its own rows: tables are emptied after it."""
    yield
    if "app" in request.fixturenames:
        from inbox.background import BACKGROUND_LOCK

        app = request.getfixturevalue("app")
        with BACKGROUND_LOCK:
            wait_for_jobs(app)
            factories.empty_database()
            # rows the per-process caches hold are gone with the tables: the next test must not route to a
            # channel or start an SLA clock on a policy of this one (a foreign-key error, or a wrong channel)
            from inbox.services import channels, sla, team_names
            sla.invalidate_policy_cache()
            channels.invalidate_cache()
            team_names.forget()
        fake = request.getfixturevalue("fake_meta")
        fake.reset()


def wait_for_jobs(app: Any, timeout: float = 10.0) -> None:
    """Wait until the embedded job threads have nothing queued or running and no periodic loop (reconciler,
    SLA timer) is halfway through an iteration."""
    from inbox.background import BACKGROUND_LOCK

    backend = app.extensions.get("relais.jobs")
    if backend is None or not hasattr(backend, "idle"):
        return
    deadline = time.monotonic() + timeout
    stable = 0
    while time.monotonic() < deadline:
        with BACKGROUND_LOCK:
            stable = stable + 1 if backend.idle() else 0
        if stable >= 3:
            return
        time.sleep(0.02)
    raise AssertionError("background jobs did not finish in time")


@pytest.fixture(autouse=True)
def _gathered_jobs_stay_in_their_test() -> Iterator[None]:
    """Name lookups gathered during a test (`jobs.gather`, a 50 ms window) are enqueued when it ends, not in the
    middle of the next test."""
    yield
    from inbox.jobs import flush_gathered
    flush_gathered()


@pytest.fixture
def jobs_done(app: Any) -> Callable[[], None]:
    return lambda: wait_for_jobs(app)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def world(app: Any) -> factories.World:
    """A brand with a Facebook page and an API channel, a team serving it, an admin, a supervisor, two agents
    of that team and an outsider agent (a team serving another brand)."""
    with app.app_context():
        return factories.build_world()


@pytest.fixture
def login(app: Any) -> Callable[..., Any]:
    """login(agent_email) -> a test client signed in as that agent, with `.csrf` set."""
    def _login(email: str, password: str = factories.PASSWORD) -> Any:
        c = app.test_client()
        response = c.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        c.csrf = response.get_json()["csrf_token"]
        return c
    return _login


@pytest.fixture
def background_held(app: Any) -> Iterator[None]:
    """The app's periodic loops (reconciler, SLA timer) held off for the test: nothing drains, wakes a snoozed
    conversation or compacts counters behind its back (inbox.background.BACKGROUND_LOCK, re-entrant)."""
    from inbox.background import BACKGROUND_LOCK

    with BACKGROUND_LOCK:
        yield


@pytest.fixture(scope="session")
def live_server(app: Any) -> Iterator[str]:
    """The app served over real HTTP + WebSocket on a free loopback port (threaded werkzeug)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="relais-live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def token_for(app: Any) -> Callable[[str], str]:
    """token_for(email) -> a clear API token of that agent."""
    def _token(email: str) -> str:
        from sqlalchemy import select

        from inbox.db import db
        from inbox.models import Agent
        from inbox.services.auth import create_api_token

        with app.app_context():
            agent = db.session.execute(select(Agent).where(Agent.email == email)).scalar_one()
            _, clear = create_api_token(db.session, agent, "tests")
            db.session.commit()
            return clear
    return _token


def _recorded_statements(app: Any, *, any_thread: bool) -> Iterator[list[str]]:
    import threading

    from sqlalchemy import event

    from inbox.db import db

    seen: list[str] = []
    with app.app_context():
        engine = db.engine
    me = threading.get_ident()

    def _count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if any_thread or threading.get_ident() == me:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", _count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _count)


@pytest.fixture
def caches_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-process caches that expire after a few seconds (the live SLA policies, the channels by page, the
    channels' credentials, the team names) kept for the whole test. A test that counts statements would otherwise
    count one more whenever a slow box (a clean-clone CI run) let one expire between the two things it compares: it
    happened to the drain's count ([8, 9, 8]) and to a page dump's ({1: 1, 6: 2})."""
    from inbox.services import channels, ingest, sla, team_names

    monkeypatch.setattr(sla, "POLICY_CACHE_SECONDS", 3600.0)
    monkeypatch.setattr(team_names, "TTL", 3600.0)
    monkeypatch.setattr(ingest._ChannelCache, "ttl", 3600.0)
    monkeypatch.setattr(channels._CredentialCache, "ttl", 3600.0)


@pytest.fixture
def statements(app: Any, caches_held: None) -> Iterator[list[str]]:
    """Every SQL statement sent from this thread while the test runs (the test client runs requests in this
    thread; background jobs do not count), with the short-lived caches held (`caches_held`)."""
    yield from _recorded_statements(app, any_thread=False)


@pytest.fixture
def all_statements(app: Any, caches_held: None) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the test runs, from any thread (a live server's Socket.IO handlers
    run in threads of their own): hold the background loops off (`background_held`) to count only the test's."""
    yield from _recorded_statements(app, any_thread=True)


@pytest.fixture
def rq_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An RQ backend on the test Redis under a key prefix of its own, installed as inbox.jobs' backend. Every key
    it made is deleted afterwards, RQ's own included (`rq:scheduled:<prefix>...`, and the `rq:job:<id>` hashes
    its registries name, which do not carry the prefix)."""
    import inbox.jobs
    from inbox.jobs import RQBackend
    from tests.procs import purge_redis_prefix
    from tests.services import redis_url, require_or_skip_redis

    require_or_skip_redis()
    backend = RQBackend(None, redis_url(), f"relais-test-{uuid.uuid4().hex}:")  # type: ignore[arg-type]
    monkeypatch.setattr(inbox.jobs, "_backend", backend)
    yield backend
    purge_redis_prefix(backend.redis, backend.prefix)
    backend.redis.close()
