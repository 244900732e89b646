"""How a request's transaction ends: COMMIT when it succeeded and wrote nothing, ROLLBACK otherwise.

For a transaction that only read, COMMIT and ROLLBACK are the same to the database, but psycopg forgets every
prepared statement of the connection (and its counts towards preparing them) on ROLLBACK: ending reads with
ROLLBACK meant the list pages were parsed and planned again on every request. A request that wrote (flushed,
or sent any statement but a SELECT), left changes unflushed, or failed is still rolled back: only the routes
that commit (`commit_after`) write. Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql (the
prepared statements test is PostgreSQL's).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import event, text, update

from inbox.db import db
from inbox.errors import Conflict
from inbox.models import Brand
from inbox.services import admin
from tests.helpers import bearer, prepared_at_each_request


@pytest.fixture
def endings(app: Any) -> Iterator[list[str]]:
    """"commit" / "rollback" for every transaction this thread ends (the test client runs requests here)."""
    seen: list[str] = []
    me = threading.get_ident()
    with app.app_context():
        engine = db.engine
    listeners = {name: (lambda _conn, name=name: seen.append(name) if threading.get_ident() == me else None)
                 for name in ("commit", "rollback")}
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)


def test_a_read_ends_with_commit(client: Any, world: Any, token_for: Any, endings: list[str]) -> None:
    token = token_for(world.agent)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200  # records the token's use
    for url in ("/api/v1/conversations", "/api/v1/brands", "/api/v1/conversations?q=bonjour"):
        endings.clear()
        assert client.get(url, headers=bearer(token)).status_code == 200
        assert endings == ["commit"], url


def _orm_flush(session: Any, brand: Brand) -> None:
    brand.name = "Written"
    session.flush()


def _unflushed(_session: Any, brand: Brand) -> None:
    brand.name = "Written"


def _core_update(session: Any, brand: Brand) -> None:
    session.execute(update(Brand).where(Brand.id == brand.id).values(name="Written"))


def _text_update(session: Any, brand: Brand) -> None:
    session.execute(text("UPDATE brands SET name = 'Written' WHERE id = :id"), {"id": brand.id})


@pytest.mark.parametrize("write", [_orm_flush, _unflushed, _core_update, _text_update])
@pytest.mark.parametrize("fails", [False, True])
def test_a_read_route_that_wrote_is_rolled_back(app: Any, client: Any, world: Any, token_for: Any,
                                                endings: list[str], monkeypatch: pytest.MonkeyPatch,
                                                write: Callable[[Any, Brand], None], fails: bool) -> None:
    """A GET route (no commit) whose service wrote, then answered or failed: nothing it wrote is kept."""
    token = token_for(world.admin)
    client.get("/api/v1/auth/me", headers=bearer(token))  # the token's use recorded beforehand

    def list_brands(session: Any, _actor: Any) -> list[Brand]:
        brand = session.get(Brand, world.brand_id)
        write(session, brand)
        if fails:
            raise Conflict("refused after writing")
        return [brand]

    monkeypatch.setattr(admin, "list_brands", list_brands)
    endings.clear()
    assert client.get("/api/v1/brands", headers=bearer(token)).status_code == (409 if fails else 200)
    assert endings == ["rollback"]
    with app.app_context():
        assert db.session.get(Brand, world.brand_id).name == "Maison Lune"
        db.session.remove()


def test_list_pages_stay_prepared_across_requests(app: Any, client: Any, world: Any, token_for: Any) -> None:
    """The same list page, requested again and again: on each pooled connection, its statements are prepared
    after psycopg's threshold (5 executions) and stay prepared for the following requests. Seen from the server
    (pg_prepared_statements), at the start of each request, on the connection serving it."""
    if db.dialect != "postgresql":
        pytest.skip("prepared statements are psycopg's (PostgreSQL)")
    token = token_for(world.agent)
    client.get("/api/v1/auth/me", headers=bearer(token))  # the token's use recorded beforehand
    with app.app_context():
        engine = db.engine

    def request() -> None:
        assert client.get("/api/v1/conversations?sort=newest", headers=bearer(token)).status_code == 200

    requests = prepared_at_each_request(engine, request)
    for before, after in zip(requests, requests[1:]):
        assert before <= after, before - after  # nothing prepared is dropped between requests
    page = requests[-1]
    assert any("FROM api_tokens" in statement for statement in page), page
    assert any("FROM conversations" in statement for statement in page), page
