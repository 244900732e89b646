"""PostgreSQL / Redis for tests: found, or skipped with a clear reason, or failed when REQUIRE_SERVICES=1."""
from __future__ import annotations

import os

import pytest

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def _required() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "") not in ("", "0")


def postgres_admin_url(database: str | None = None, driver: str = "postgresql") -> str:
    base = os.environ.get("TEST_POSTGRES_URL", PG_DEFAULT)
    if database:
        base = base.rsplit("/", 1)[0] + "/" + database
    if driver != "postgresql":
        base = base.replace("postgresql://", driver + "://", 1)
    return base


def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", REDIS_DEFAULT)


def postgres_available() -> str | None:
    try:
        import psycopg
        with psycopg.connect(postgres_admin_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available", with its reason
        return f"PostgreSQL not reachable at {postgres_admin_url()}: {exc}"


def redis_available() -> str | None:
    try:
        import redis
        redis.Redis.from_url(redis_url(), socket_connect_timeout=3).ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"Redis not reachable at {redis_url()}: {exc}"


def _skip_or_fail(reason: str) -> None:
    if _required():
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def require_or_skip_postgres() -> None:
    reason = postgres_available()
    if reason:
        _skip_or_fail(reason)


def require_or_skip_redis() -> None:
    reason = redis_available()
    if reason:
        _skip_or_fail(reason)
