"""Settings come from the environment, parsed and checked in one place: a bad value names its variable."""
from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from config import BASE_DIR, DEFAULT_GRAPH_BASE_URL, ConfigError, load_settings

PRODUCTION = {"RELAIS_ENV": "production", "SECRET_KEY": "x" * 40,
              "RELAIS_ENCRYPTION_KEY": Fernet.generate_key().decode()}


def test_defaults_make_a_working_development_setup() -> None:
    settings = load_settings({})
    assert settings.env == "development"
    assert settings.database_url == f"sqlite:///{BASE_DIR / 'instance' / 'relais.db'}"
    assert settings.is_sqlite and settings.embedded and settings.redis_url is None
    assert settings.port == 5000 and settings.public_base_url == "http://127.0.0.1:5000"
    assert settings.meta_graph_base_url == DEFAULT_GRAPH_BASE_URL
    assert settings.session_cookie_secure is False
    assert settings.login_rate_limit == "10 per minute"
    assert settings.api_webhook_tolerance_seconds == 300
    assert (settings.send_max_attempts, settings.event_max_attempts) == (6, 5)
    assert settings.reconcile_interval_seconds == 10.0
    assert settings.embedded_worker is True
    assert settings.redis_prefix == "relais:"
    assert settings.admin_email is None and settings.admin_password is None
    assert settings.secret_key  # a development key, so the app starts with no configuration at all


def test_empty_values_count_as_unset() -> None:
    assert load_settings({"PORT": "", "REDIS_URL": "", "SESSION_COOKIE_SECURE": ""}) == load_settings({})


def test_development_encryption_key_is_derived_from_the_secret_key_and_is_a_valid_fernet_key() -> None:
    first = load_settings({"SECRET_KEY": "one"}).encryption_key
    assert first == load_settings({"SECRET_KEY": "one"}).encryption_key  # a restart still reads credentials
    assert first != load_settings({"SECRET_KEY": "two"}).encryption_key
    token = Fernet(first.encode()).encrypt(b"page token")
    assert Fernet(first.encode()).decrypt(token) == b"page token"


@pytest.mark.parametrize("variable, value", [
    ("RELAIS_ENV", "staging"),
    ("PORT", "eighty"),
    ("PORT", "0"),
    ("PORT", "70000"),
    ("API_WEBHOOK_TOLERANCE_SECONDS", "5m"),
    ("API_WEBHOOK_TOLERANCE_SECONDS", "0"),
    ("SEND_MAX_ATTEMPTS", "many"),
    ("SEND_MAX_ATTEMPTS", "0"),
    ("EVENT_MAX_ATTEMPTS", "1.5"),
    ("RECONCILE_INTERVAL_SECONDS", "soon"),
    ("RECONCILE_INTERVAL_SECONDS", "0"),
    ("SESSION_COOKIE_SECURE", "maybe"),
    ("RELAIS_EMBEDDED_WORKER", "2"),
    ("DATABASE_URL", "mysql://db/relais"),
    ("DATABASE_URL", "relais.db"),
    ("REDIS_URL", "localhost:6379"),
    ("PUBLIC_BASE_URL", "relais.example.com"),
    ("META_GRAPH_BASE_URL", "ftp://graph.example.com"),
    ("RELAIS_ENCRYPTION_KEY", "not-a-fernet-key"),
    ("RELAIS_ENCRYPTION_KEY", base64.urlsafe_b64encode(b"sixteen byte key").decode()),
])
def test_a_bad_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings({variable: value})
    assert str(excinfo.value).startswith(variable + ":")


def test_a_bad_login_rate_limit_is_refused_naming_its_variable() -> None:
    with pytest.raises(ConfigError, match="^LOGIN_RATE_LIMIT:"):
        load_settings({"LOGIN_RATE_LIMIT": "ten a minute"})


@pytest.mark.parametrize("variable, value, attribute, expected", [
    ("PORT", " 8080 ", "port", 8080),
    ("SESSION_COOKIE_SECURE", "Yes", "session_cookie_secure", True),
    ("SESSION_COOKIE_SECURE", "off", "session_cookie_secure", False),
    ("RELAIS_EMBEDDED_WORKER", "0", "embedded_worker", False),
    ("RECONCILE_INTERVAL_SECONDS", "0.5", "reconcile_interval_seconds", 0.5),
    ("EVENT_MAX_ATTEMPTS", "9", "event_max_attempts", 9),
    ("LOGIN_RATE_LIMIT", "5 per minute", "login_rate_limit", "5 per minute"),
    ("REDIS_URL", "redis://cache:6379/2", "redis_url", "redis://cache:6379/2"),
    ("REDIS_PREFIX", "staging:", "redis_prefix", "staging:"),
    ("PUBLIC_BASE_URL", "https://relais.example.com/", "public_base_url", "https://relais.example.com"),
    ("RELAIS_ADMIN_EMAIL", "boss@example.com", "admin_email", "boss@example.com"),
])
def test_good_values_are_parsed(variable: str, value: str, attribute: str, expected: object) -> None:
    assert getattr(load_settings({variable: value}), attribute) == expected


def test_the_public_url_follows_the_port_unless_given() -> None:
    assert load_settings({"PORT": "8000"}).public_base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize("given, expected", [
    ("postgres://u:p@db:5432/relais", "postgresql+psycopg://u:p@db:5432/relais"),
    ("postgresql://u:p@db/relais", "postgresql+psycopg://u:p@db/relais"),
    ("postgresql+psycopg://u@db/relais", "postgresql+psycopg://u@db/relais"),
    ("sqlite:////var/lib/relais.db", "sqlite:////var/lib/relais.db"),
])
def test_database_urls_are_normalised_to_the_psycopg_driver(given: str, expected: str) -> None:
    settings = load_settings({"DATABASE_URL": given})
    assert settings.database_url == expected
    assert settings.is_sqlite is expected.startswith("sqlite")


def test_production_requires_a_secret_key() -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    with pytest.raises(ConfigError, match="^SECRET_KEY:.*required"):
        load_settings(environ)


def test_production_refuses_a_short_secret_key() -> None:
    with pytest.raises(ConfigError, match="^SECRET_KEY:.*too short"):
        load_settings({**PRODUCTION, "SECRET_KEY": "short-secret"})


def test_production_requires_an_encryption_key() -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != "RELAIS_ENCRYPTION_KEY"}
    with pytest.raises(ConfigError, match="^RELAIS_ENCRYPTION_KEY:.*required"):
        load_settings(environ)


def test_production_defaults_to_secure_cookies() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.env == "production"
    assert settings.session_cookie_secure is True
    assert settings.encryption_key == PRODUCTION["RELAIS_ENCRYPTION_KEY"]
    assert load_settings({**PRODUCTION, "SESSION_COOKIE_SECURE": "0"}).session_cookie_secure is False


def test_an_encryption_key_given_in_development_is_used_as_is() -> None:
    key = Fernet.generate_key().decode()
    assert load_settings({"RELAIS_ENCRYPTION_KEY": f" {key} "}).encryption_key == key


def test_overrides_refuse_unknown_settings() -> None:
    settings = load_settings({})
    assert settings.with_overrides(port=6000).port == 6000
    with pytest.raises(ConfigError, match="unknown settings: prot"):
        settings.with_overrides(prot=6000)


def test_proxy_hops_is_a_small_integer() -> None:
    assert load_settings({"PROXY_HOPS": "1"}).proxy_hops == 1
    with pytest.raises(ConfigError, match="^PROXY_HOPS:"):
        load_settings({"PROXY_HOPS": "many"})


def test_secret_key_is_required_outside_development() -> None:
    assert load_settings({}).secret_key  # development: a local default
    with pytest.raises(ConfigError, match="^SECRET_KEY:.*required"):
        load_settings({"RELAIS_ENV": "test"})


def test_ingest_linger_is_bounded_milliseconds() -> None:
    assert load_settings({}).ingest_linger_ms == 5.0
    assert load_settings({"INGEST_LINGER_MS": "0"}).ingest_linger_ms == 0.0
    for bad in ("-1", "101", "soon"):
        with pytest.raises(ConfigError, match="^INGEST_LINGER_MS:"):
            load_settings({"INGEST_LINGER_MS": bad})


def test_ingest_drain_batch_is_a_bounded_integer() -> None:
    assert load_settings({}).ingest_drain_batch == 400
    assert load_settings({"INGEST_DRAIN_BATCH": "50"}).ingest_drain_batch == 50
    for bad in ("0", "5001", "many"):
        with pytest.raises(ConfigError, match="^INGEST_DRAIN_BATCH:"):
            load_settings({"INGEST_DRAIN_BATCH": bad})


def test_ingest_drain_lanes_are_a_bounded_integer() -> None:
    assert load_settings({}).ingest_drain_lanes == 2
    assert load_settings({"INGEST_DRAIN_LANES": "1"}).ingest_drain_lanes == 1
    for bad in ("0", "9", "two"):
        with pytest.raises(ConfigError, match="^INGEST_DRAIN_LANES:"):
            load_settings({"INGEST_DRAIN_LANES": bad})


def test_database_pool_sizes_are_bounded_integers() -> None:
    settings = load_settings({})
    assert (settings.database_pool_size, settings.database_max_overflow) == (20, 10)
    settings = load_settings({"DATABASE_POOL_SIZE": "5", "DATABASE_MAX_OVERFLOW": "0"})
    assert (settings.database_pool_size, settings.database_max_overflow) == (5, 0)
    for variable, bad in (("DATABASE_POOL_SIZE", "0"), ("DATABASE_POOL_SIZE", "many"),
                          ("DATABASE_MAX_OVERFLOW", "-1"), ("DATABASE_MAX_OVERFLOW", "501")):
        with pytest.raises(ConfigError, match=f"^{variable}:"):
            load_settings({variable: bad})
