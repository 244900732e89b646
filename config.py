"""Every setting Relais reads from the environment, parsed and checked in one place.

`load_settings()` returns a frozen `Settings`; a bad value raises `ConfigError` naming the variable.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

BASE_DIR = Path(__file__).resolve().parent
DEFAULT_GRAPH_BASE_URL = "https://graph.facebook.com/v21.0"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}: expected a boolean (1/0, true/false, yes/no), got {raw!r}")


def _int(name: str, raw: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ConfigError(f"{name}: {value} is outside {minimum}..{maximum}")
    return value


def _float(name: str, raw: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: {value} is below {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: {value} is above {maximum}")
    return value


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    value = raw.strip()
    if not any(value.startswith(s + "://") for s in schemes):
        expected = " or ".join(s + "://" for s in schemes)
        raise ConfigError(f"{name}: expected a URL starting with {expected}, got {raw!r}")
    return value


def _rate_limit(name: str, raw: str) -> str:
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a rate limit like '10 per minute' or '5/minute;100/hour', got {raw!r}") \
            from None
    return raw.strip()


def _fernet_key(name: str, raw: str) -> str:
    """Accept a Fernet key (32 url-safe base64 bytes) as given."""
    try:
        decoded = base64.urlsafe_b64decode(raw.strip().encode())
    except (ValueError, TypeError):
        decoded = b""
    if len(decoded) != 32:
        raise ConfigError(f"{name}: expected a Fernet key (32 bytes, url-safe base64); "
                          "generate one with: python -c 'from cryptography.fernet import Fernet; "
                          "print(Fernet.generate_key().decode())'")
    return raw.strip()


@dataclass(frozen=True)
class Settings:
    env: str = "development"                  # RELAIS_ENV: development | production | test
    secret_key: str = ""                      # SECRET_KEY
    database_url: str = ""                    # DATABASE_URL
    redis_url: str | None = None              # REDIS_URL (None = embedded mode)
    redis_prefix: str = "relais:"             # REDIS_PREFIX: namespaces RQ queues, Socket.IO channel, locks
    encryption_key: str = ""                  # RELAIS_ENCRYPTION_KEY (Fernet) for channel credentials
    public_base_url: str = "http://127.0.0.1:5000"   # PUBLIC_BASE_URL
    port: int = 5000                          # PORT
    meta_graph_base_url: str = DEFAULT_GRAPH_BASE_URL  # META_GRAPH_BASE_URL
    api_webhook_tolerance_seconds: int = 300  # API_WEBHOOK_TOLERANCE_SECONDS
    session_cookie_secure: bool = False       # SESSION_COOKIE_SECURE
    login_rate_limit: str = "10 per minute"   # LOGIN_RATE_LIMIT (flask-limiter syntax)
    proxy_hops: int = 0                       # PROXY_HOPS: trusted reverse proxies setting X-Forwarded-*
    reconcile_interval_seconds: float = 10.0  # RECONCILE_INTERVAL_SECONDS
    send_max_attempts: int = 6                # SEND_MAX_ATTEMPTS
    send_concurrency: int = 8                 # SEND_CONCURRENCY: platform calls a process makes at once (sends)
    event_max_attempts: int = 5               # EVENT_MAX_ATTEMPTS: raw webhook events then dead-letter
    ingest_linger_ms: float = 5.0             # INGEST_LINGER_MS: a small drain waits this long so batches form
    #                                           (only while webhooks keep coming: services.ingest.LINGER_AFTER)
    ingest_drain_lanes: int = 2               # INGEST_DRAIN_LANES: a backlog's batches applied at once per process
    ingest_drain_batch: int = 400             # INGEST_DRAIN_BATCH: raw webhooks a drain transaction claims at most
    #                                           (on PostgreSQL; SQLite, one writer, at most 200)
    profile_lookup_batch_ms: float = 1000.0   # PROFILE_LOOKUP_BATCH_MS: new customers' name lookups gathered per job
    database_pool_size: int = 20              # DATABASE_POOL_SIZE: PostgreSQL connections a process keeps open
    database_max_overflow: int = 10           # DATABASE_MAX_OVERFLOW: extra ones in a burst, closed after use
    embedded_worker: bool = True              # RELAIS_EMBEDDED_WORKER: run jobs in-process when no REDIS_URL
    websocket_compression: bool = False       # WEBSOCKET_COMPRESSION: permessage-deflate on live-event sockets
    socket_catch_up_concurrency: int = 8      # SOCKET_CATCH_UP_CONCURRENCY: socket connects (and resumes) a web
    #                                           process serves at once, the others waiting their turn; 0: no limit
    admin_email: str | None = None            # RELAIS_ADMIN_EMAIL
    admin_password: str | None = None         # RELAIS_ADMIN_PASSWORD
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_overrides(self, **overrides: Any) -> "Settings":
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting. Raises ConfigError naming the variable at the first bad value."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    mode = (get("RELAIS_ENV") or "development").lower()
    if mode not in {"development", "production", "test"}:
        raise ConfigError(f"RELAIS_ENV: expected development, production or test, got {mode!r}")

    secret_key = get("SECRET_KEY")
    if secret_key is None:
        if mode != "development":
            raise ConfigError(f"SECRET_KEY: required unless RELAIS_ENV=development (here {mode}); "
                              "use a long random string")
        secret_key = "dev-insecure-secret-key-change-me"
    elif mode == "production" and len(secret_key) < 24:
        raise ConfigError("SECRET_KEY: too short for production (use at least 24 random characters)")

    raw_key = get("RELAIS_ENCRYPTION_KEY")
    if raw_key is not None:
        encryption_key = _fernet_key("RELAIS_ENCRYPTION_KEY", raw_key)
    elif mode == "production":
        raise ConfigError("RELAIS_ENCRYPTION_KEY: required in production (a Fernet key)")
    else:  # development/test: derived from SECRET_KEY so a restart can still read stored credentials
        derived = hashlib.sha256(b"relais-credentials:" + secret_key.encode()).digest()
        encryption_key = base64.urlsafe_b64encode(derived).decode()

    database_url = get("DATABASE_URL")
    if database_url is None:
        database_url = f"sqlite:///{BASE_DIR / 'instance' / 'relais.db'}"
    else:
        database_url = _url("DATABASE_URL", database_url, ("sqlite", "postgresql", "postgresql+psycopg", "postgres"))
        if database_url.startswith("postgres://"):
            database_url = "postgresql://" + database_url[len("postgres://"):]
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]

    redis_url = get("REDIS_URL")
    if redis_url is not None:
        redis_url = _url("REDIS_URL", redis_url, ("redis", "rediss", "unix"))

    port = _int("PORT", get("PORT") or "5000", minimum=1, maximum=65535)
    public_base_url = get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}"
    public_base_url = _url("PUBLIC_BASE_URL", public_base_url, ("http", "https")).rstrip("/")

    return Settings(
        env=mode,
        secret_key=secret_key,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=get("REDIS_PREFIX") or "relais:",
        encryption_key=encryption_key,
        public_base_url=public_base_url,
        port=port,
        meta_graph_base_url=_url("META_GRAPH_BASE_URL", get("META_GRAPH_BASE_URL") or DEFAULT_GRAPH_BASE_URL,
                                 ("http", "https")).rstrip("/"),
        api_webhook_tolerance_seconds=_int("API_WEBHOOK_TOLERANCE_SECONDS",
                                           get("API_WEBHOOK_TOLERANCE_SECONDS") or "300", minimum=1),
        session_cookie_secure=_bool("SESSION_COOKIE_SECURE",
                                    get("SESSION_COOKIE_SECURE") or ("1" if mode == "production" else "0")),
        login_rate_limit=_rate_limit("LOGIN_RATE_LIMIT", get("LOGIN_RATE_LIMIT") or "10 per minute"),
        proxy_hops=_int("PROXY_HOPS", get("PROXY_HOPS") or "0", minimum=0, maximum=5),
        reconcile_interval_seconds=_float("RECONCILE_INTERVAL_SECONDS", get("RECONCILE_INTERVAL_SECONDS") or "10",
                                          minimum=0.05),
        send_max_attempts=_int("SEND_MAX_ATTEMPTS", get("SEND_MAX_ATTEMPTS") or "6", minimum=1),
        send_concurrency=_int("SEND_CONCURRENCY", get("SEND_CONCURRENCY") or "8", minimum=1, maximum=64),
        event_max_attempts=_int("EVENT_MAX_ATTEMPTS", get("EVENT_MAX_ATTEMPTS") or "5", minimum=1),
        ingest_linger_ms=_float("INGEST_LINGER_MS", get("INGEST_LINGER_MS") or "5", minimum=0.0, maximum=100.0),
        ingest_drain_lanes=_int("INGEST_DRAIN_LANES", get("INGEST_DRAIN_LANES") or "2", minimum=1, maximum=8),
        ingest_drain_batch=_int("INGEST_DRAIN_BATCH", get("INGEST_DRAIN_BATCH") or "400", minimum=1, maximum=5000),
        profile_lookup_batch_ms=_float("PROFILE_LOOKUP_BATCH_MS", get("PROFILE_LOOKUP_BATCH_MS") or "1000",
                                       minimum=0.0, maximum=60000.0),
        database_pool_size=_int("DATABASE_POOL_SIZE", get("DATABASE_POOL_SIZE") or "20", minimum=1, maximum=500),
        database_max_overflow=_int("DATABASE_MAX_OVERFLOW", get("DATABASE_MAX_OVERFLOW") or "10", minimum=0,
                                   maximum=500),
        embedded_worker=_bool("RELAIS_EMBEDDED_WORKER", get("RELAIS_EMBEDDED_WORKER") or "1"),
        websocket_compression=_bool("WEBSOCKET_COMPRESSION", get("WEBSOCKET_COMPRESSION") or "0"),
        socket_catch_up_concurrency=_int("SOCKET_CATCH_UP_CONCURRENCY", get("SOCKET_CATCH_UP_CONCURRENCY") or "8",
                                         minimum=0, maximum=1000),
        admin_email=get("RELAIS_ADMIN_EMAIL"),
        admin_password=get("RELAIS_ADMIN_PASSWORD"),
    )
