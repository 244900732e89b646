"""An API token's last use is recorded, at most once a minute, for read-only clients too.

Tokens list `last_used_at` so an agent can tell which integrations are alive and revoke the dead ones. A client
that only reads (GET) must have it recorded as well as one that writes, without every request writing.
Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from inbox.db import db, utcnow
from inbox.models import ApiToken
from tests.helpers import bearer


def _last_used(app: Any) -> datetime | None:
    """The token's last_used_at as committed (read outside any request)."""
    with app.app_context():
        value = db.session.execute(select(ApiToken.last_used_at)).scalar_one()
        db.session.remove()
        return value


def _updates(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("UPDATE")]


def test_a_read_only_client_has_its_token_use_recorded_once_a_minute(app: Any, client: Any, world: Any,
                                                                      token_for: Any, statements: list[str]) -> None:
    token = token_for(world.agent)
    before = utcnow()
    statements.clear()
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    first = _last_used(app)
    assert first is not None and first >= before
    assert len(_updates(statements)) == 1

    statements.clear()
    for url in ("/api/v1/conversations", "/api/v1/auth/me"):  # within the minute: nothing written
        assert client.get(url, headers=bearer(token)).status_code == 200
    assert _updates(statements) == []
    assert _last_used(app) == first

    with app.app_context():  # a minute later
        db.session.execute(update(ApiToken).values(last_used_at=first - timedelta(seconds=61)))
        db.session.commit()
        db.session.remove()
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    assert _last_used(app) > first


def test_a_token_use_is_recorded_even_when_the_request_fails(app: Any, client: Any, world: Any,
                                                             token_for: Any) -> None:
    token = token_for(world.agent)
    assert client.get("/api/v1/conversations/424242", headers=bearer(token)).status_code == 404
    assert _last_used(app) is not None
