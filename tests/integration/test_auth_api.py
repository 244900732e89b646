"""Signing in and out, CSRF, API tokens, password changes and the login rate limit, through the HTTP API."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from sqlalchemy import select

from inbox.crypto import sha256_hex
from inbox.db import db
from inbox.extensions import limiter
from inbox.models import Agent, ApiToken, RealtimeEvent
from tests.factories import PASSWORD, World


def error_code(response: Any) -> str:
    return response.get_json()["error"]["code"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_the_agent_and_a_csrf_token_and_me_agrees(client: Any, world: World) -> None:
    response = client.post("/api/v1/auth/login", json={"email": world.agent, "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert body["agent"]["email"] == world.agent
    assert body["agent"]["role"] == "agent"
    assert body["agent"]["team_ids"] == [world.team_id]
    assert "password_hash" not in body["agent"]
    assert len(body["csrf_token"]) >= 32

    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.get_json() == {"agent": body["agent"], "csrf_token": body["csrf_token"]}


def test_login_ignores_email_case(client: Any, world: World) -> None:
    response = client.post("/api/v1/auth/login", json={"email": world.agent.upper(), "password": PASSWORD})
    assert response.status_code == 200


def test_session_cookie_is_httponly_and_samesite_lax(client: Any, world: World) -> None:
    response = client.post("/api/v1/auth/login", json={"email": world.agent, "password": PASSWORD})
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("relais_session="))
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in flags
    assert flags["samesite"] == "SameSite=Lax"
    assert "expires" in flags  # permanent session: survives a browser restart, bounded by the lifetime


@pytest.mark.parametrize("email, password", [
    ("agent@relais.test", "wrong password!"),
    ("nobody@relais.test", PASSWORD),
])
def test_bad_credentials_get_the_same_401(client: Any, world: World, email: str, password: str) -> None:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert response.get_json() == {"error": {"code": "unauthorized", "message": "wrong email or password",
                                             "fields": {}}}
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_deactivated_agent_cannot_sign_in(app: Any, client: Any, world: World) -> None:
    with app.app_context():
        db.session.get(Agent, world.agent_ids[world.agent]).is_active = False
        db.session.commit()
    response = client.post("/api/v1/auth/login", json={"email": world.agent, "password": PASSWORD})
    assert response.status_code == 401


def test_login_validation_names_the_fields(client: Any, world: World) -> None:
    response = client.post("/api/v1/auth/login", json={"email": "not-an-email", "remember": True})
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"email", "password", "remember"}
    response = client.post("/api/v1/auth/login", data="email=a", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 422 and "_schema" in response.get_json()["error"]["fields"]


def test_login_replaces_the_previous_session(client: Any, world: World) -> None:
    first = client.post("/api/v1/auth/login", json={"email": world.agent, "password": PASSWORD}).get_json()
    second = client.post("/api/v1/auth/login", json={"email": world.agent2, "password": PASSWORD}).get_json()
    me = client.get("/api/v1/auth/me").get_json()
    assert me["agent"]["email"] == world.agent2
    assert second["csrf_token"] != first["csrf_token"] and me["csrf_token"] == second["csrf_token"]


def test_session_writes_need_the_csrf_token(login: Any, world: World) -> None:
    client = login(world.agent)
    refused = client.patch("/api/v1/auth/me", json={"availability": "busy"})
    assert refused.status_code == 403 and error_code(refused) == "csrf_failed"
    wrong = client.patch("/api/v1/auth/me", json={"availability": "busy"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403 and error_code(wrong) == "csrf_failed"
    assert client.get("/api/v1/auth/me").get_json()["agent"]["availability"] == "online"

    accepted = client.patch("/api/v1/auth/me", json={"availability": "busy"}, headers={"X-CSRF-Token": client.csrf})
    assert accepted.status_code == 200 and accepted.get_json()["availability"] == "busy"


def test_update_me_changes_profile_and_announces_availability(app: Any, login: Any, world: World) -> None:
    client = login(world.agent)
    response = client.patch("/api/v1/auth/me", json={"availability": "offline", "name": "  Léa Dupont ",
                                                     "language": "fr"}, headers={"X-CSRF-Token": client.csrf})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["availability"], body["name"], body["language"]) == ("offline", "Léa Dupont", "fr")
    with app.app_context():
        event = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name == "agent.updated")
                                   .order_by(RealtimeEvent.id.desc()).limit(1)).scalar_one()
        assert event.payload == {"id": world.agent_ids[world.agent], "name": "Léa Dupont",
                                 "availability": "offline"}
        assert f"brand:{world.brand_id}" in event.rooms and f"brand:{world.other_brand_id}" not in event.rooms
    cleared = client.patch("/api/v1/auth/me", json={"language": None}, headers={"X-CSRF-Token": client.csrf})
    assert cleared.get_json()["language"] is None


@pytest.mark.parametrize("body, field", [
    ({"availability": "away"}, "availability"),
    ({"name": ""}, "name"),
    ({"role": "admin"}, "role"),
    ({}, "_schema"),
])
def test_update_me_validation_names_the_field(login: Any, world: World, body: dict, field: str) -> None:
    client = login(world.agent)
    response = client.patch("/api/v1/auth/me", json=body, headers={"X-CSRF-Token": client.csrf})
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_logout_ends_the_session(login: Any, world: World) -> None:
    client = login(world.agent)
    assert client.post("/api/v1/auth/logout").status_code == 403  # a write like any other: CSRF first
    response = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": client.csrf})
    assert response.status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def test_api_token_is_shown_once_stored_hashed_and_works_without_csrf(app: Any, login: Any, world: World) -> None:
    client = login(world.agent)
    response = client.post("/api/v1/auth/tokens", json={"name": "Zapier"}, headers={"X-CSRF-Token": client.csrf})
    assert response.status_code == 201
    created = response.get_json()
    clear = created["token"]
    assert created["name"] == "Zapier" and clear.startswith(created["prefix"]) and len(clear) > 40

    with app.app_context():
        row = db.session.get(ApiToken, created["id"])
        assert row.token_hash == sha256_hex(clear)
        stored = [getattr(row, column.key) for column in ApiToken.__table__.columns]
        assert clear not in [str(value) for value in stored]

    listed = client.get("/api/v1/auth/tokens").get_json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0] and "token_hash" not in listed[0]

    anonymous = app.test_client()
    me = anonymous.get("/api/v1/auth/me", headers=bearer(clear))
    assert me.status_code == 200
    assert me.get_json()["agent"]["email"] == world.agent and me.get_json()["csrf_token"] is None
    write = anonymous.patch("/api/v1/auth/me", json={"availability": "busy"}, headers=bearer(clear))
    assert write.status_code == 200  # no cookie, no CSRF: a bearer token cannot be ridden by another site
    with app.app_context():
        assert db.session.get(ApiToken, created["id"]).last_used_at is not None


def test_revoked_and_unknown_tokens_are_refused(app: Any, login: Any, world: World) -> None:
    client = login(world.agent)
    created = client.post("/api/v1/auth/tokens", json={"name": "CRM"},
                          headers={"X-CSRF-Token": client.csrf}).get_json()
    other = login(world.agent2)
    assert other.delete(f"/api/v1/auth/tokens/{created['id']}",
                        headers={"X-CSRF-Token": other.csrf}).status_code == 404  # not theirs

    assert client.delete(f"/api/v1/auth/tokens/{created['id']}",
                         headers={"X-CSRF-Token": client.csrf}).status_code == 204
    assert client.delete(f"/api/v1/auth/tokens/{created['id']}",
                         headers={"X-CSRF-Token": client.csrf}).status_code == 204  # idempotent
    assert client.get("/api/v1/auth/tokens").get_json() == []

    anonymous = app.test_client()
    refused = anonymous.get("/api/v1/auth/me", headers=bearer(created["token"]))
    assert refused.status_code == 401 and error_code(refused) == "unauthorized"
    assert anonymous.get("/api/v1/auth/me", headers=bearer("rls_made-up")).status_code == 401


def test_a_deactivated_agents_token_stops_working(app: Any, login: Any, world: World) -> None:
    client = login(world.agent)
    token = client.post("/api/v1/auth/tokens", json={"name": "CRM"},
                        headers={"X-CSRF-Token": client.csrf}).get_json()["token"]
    with app.app_context():
        db.session.get(Agent, world.agent_ids[world.agent]).is_active = False
        db.session.commit()
    assert app.test_client().get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401


def test_password_change_signs_out_other_sessions_and_keeps_this_one(login: Any, client: Any, world: World) -> None:
    laptop, phone = login(world.agent), login(world.agent)
    response = laptop.post("/api/v1/auth/password", json={"current_password": PASSWORD,
                                                          "new_password": "a brand new passphrase"},
                           headers={"X-CSRF-Token": laptop.csrf})
    assert response.status_code == 200
    new_csrf = response.get_json()["csrf_token"]
    assert new_csrf and new_csrf != laptop.csrf

    assert phone.get("/api/v1/auth/me").status_code == 401
    assert laptop.get("/api/v1/auth/me").get_json()["csrf_token"] == new_csrf
    stale = laptop.patch("/api/v1/auth/me", json={"availability": "busy"}, headers={"X-CSRF-Token": laptop.csrf})
    assert stale.status_code == 403
    fresh = laptop.patch("/api/v1/auth/me", json={"availability": "busy"}, headers={"X-CSRF-Token": new_csrf})
    assert fresh.status_code == 200

    assert client.post("/api/v1/auth/login", json={"email": world.agent, "password": PASSWORD}).status_code == 401
    assert client.post("/api/v1/auth/login", json={"email": world.agent,
                                                   "password": "a brand new passphrase"}).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"current_password": "not my password", "new_password": "a brand new passphrase"}, "current_password"),
    ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
    ({"new_password": "a brand new passphrase"}, "current_password"),
])
def test_password_change_validation_names_the_field(login: Any, world: World, body: dict, field: str) -> None:
    client = login(world.agent)
    response = client.post("/api/v1/auth/password", json=body, headers={"X-CSRF-Token": client.csrf})
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]
    assert client.get("/api/v1/auth/me").status_code == 200  # nothing changed, still signed in


# ---------- the login rate limit ----------
@pytest.fixture
def strict_login_limit(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app's settings with LOGIN_RATE_LIMIT="3 per minute" and empty counters; restored afterwards.
    The limit is read per request, so no second app is needed; the counters start at zero, so the window
    (which opens at the first counted attempt) cannot roll over during the test."""
    settings = app.extensions["relais.settings"]
    monkeypatch.setitem(app.extensions, "relais.settings", settings.with_overrides(login_rate_limit="3 per minute"))
    limiter.reset()
    yield
    limiter.reset()


def _attempt(client: Any, email: str, password: str, address: str = "203.0.113.7") -> Any:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_failed_logins_from_one_address_are_limited(client: Any, world: World, strict_login_limit: None) -> None:
    for email in (world.agent, world.agent2, world.supervisor):
        assert _attempt(client, email, "wrong password!").status_code == 401
    response = _attempt(client, world.admin, PASSWORD)
    assert response.status_code == 429
    assert error_code(response) == "rate_limited"
    assert set(response.get_json()["error"]) >= {"code", "message", "fields"}
    assert _attempt(client, world.admin, PASSWORD, address="198.51.100.9").status_code == 200


def test_failed_logins_for_one_email_are_limited_across_addresses(client: Any, world: World,
                                                                  strict_login_limit: None) -> None:
    for n in range(3):
        assert _attempt(client, world.agent, "wrong password!", address=f"198.51.100.{n + 1}").status_code == 401
    assert _attempt(client, world.agent, PASSWORD, address="198.51.100.50").status_code == 429
    assert _attempt(client, world.agent2, PASSWORD, address="198.51.100.51").status_code == 200


def test_successful_logins_are_not_counted(client: Any, world: World, strict_login_limit: None) -> None:
    for _ in range(5):
        assert _attempt(client, world.agent, PASSWORD).status_code == 200

