"""Administration through the HTTP API: brands, channels and their secrets, teams, agents, the webhook log."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from inbox.db import db, utcnow
from inbox.demo.conversations import THREADS
from inbox.models import Agent, Channel, WebhookEvent
from inbox.services.channels import credentials
from tests.factories import APP_SECRET, PASSWORD, World

NEW_PAGE = {"page_id": "3000000003", "access_token": "EAAB-brand-new-page-token", "app_secret": "s3cr3t-app-secret"}


def send(client: Any, method: str, url: str, body: Any = None) -> Any:
    """A write from a signed-in browser: JSON body and the session's CSRF token."""
    return client.open(url, method=method, json=body, headers={"X-CSRF-Token": client.csrf})


def fields_of(response: Any) -> dict[str, Any]:
    return response.get_json()["error"]["fields"]


@pytest.fixture
def admin(login: Any, world: World) -> Any:
    return login(world.admin)


# ---------- brands ----------
def test_admin_creates_lists_and_renames_brands(admin: Any, world: World) -> None:
    created = send(admin, "POST", "/api/v1/brands", {"name": "  Café Brûlé "})
    assert created.status_code == 201
    brand = created.get_json()
    assert brand["name"] == "Café Brûlé"
    names = [b["name"] for b in admin.get("/api/v1/brands").get_json()]
    assert names == sorted(["Café Brûlé", "Maison Lune", "Vélo Vert"])

    renamed = send(admin, "PATCH", f"/api/v1/brands/{brand['id']}", {"name": "Café Noir"})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Café Noir"
    assert admin.get(f"/api/v1/brands/{brand['id']}").get_json()["name"] == "Café Noir"


def test_brand_names_are_unique_whatever_the_case(admin: Any, world: World) -> None:
    response = send(admin, "POST", "/api/v1/brands", {"name": "maison lune"})
    assert response.status_code == 409 and fields_of(response) == {"name": ["already exists"]}
    other = send(admin, "PATCH", f"/api/v1/brands/{world.other_brand_id}", {"name": "MAISON LUNE"})
    assert other.status_code == 409


def test_agents_see_only_the_brands_their_teams_serve(login: Any, world: World) -> None:
    agent, outsider = login(world.agent), login(world.outsider)
    assert [b["id"] for b in agent.get("/api/v1/brands").get_json()] == [world.brand_id]
    assert [b["id"] for b in outsider.get("/api/v1/brands").get_json()] == [world.other_brand_id]
    assert agent.get(f"/api/v1/brands/{world.other_brand_id}").status_code == 404
    assert send(agent, "POST", "/api/v1/brands", {"name": "Mine"}).status_code == 403
    assert send(login(world.supervisor), "PATCH", f"/api/v1/brands/{world.brand_id}",
                {"name": "Renamed"}).status_code == 403


# ---------- channels ----------
def test_a_new_page_shows_its_secrets_once_then_masked(app: Any, admin: Any, world: World) -> None:
    response = send(admin, "POST", "/api/v1/channels", {"brand_id": world.brand_id, "kind": "facebook_page",
                                                        "name": "Lune Instagram", "config": NEW_PAGE})
    assert response.status_code == 201
    created = response.get_json()
    verify_token = created["secrets"]["verify_token"]
    assert len(verify_token) >= 24  # generated, since none was given
    assert set(created["secrets"]) == {"verify_token"}
    assert created["webhook"] == {"callback_url": "http://127.0.0.1:5000/webhooks/meta"}
    assert (created["kind"], created["external_id"], created["status"]) == ("facebook_page", "3000000003", "active")
    assert created["config"] == {"page_id": "3000000003"}
    assert NEW_PAGE["access_token"] not in json.dumps(created)
    assert NEW_PAGE["app_secret"] not in json.dumps(created)

    for shown in (admin.get(f"/api/v1/channels/{created['id']}").get_json(),
                  next(c for c in admin.get("/api/v1/channels").get_json() if c["id"] == created["id"])):
        text = json.dumps(shown)
        assert "secrets" not in shown
        for secret in (NEW_PAGE["access_token"], NEW_PAGE["app_secret"], verify_token):
            assert secret not in text
        assert shown["credentials"]["access_token"].startswith("EAAB") and "…" in shown["credentials"]["access_token"]
        assert set(shown["credentials"]) == {"access_token", "app_secret", "verify_token"}
        assert shown["webhook"] == created["webhook"] and shown["status_detail"] is None

    with app.app_context():
        channel = db.session.get(Channel, created["id"])
        row = json.dumps({c.key: str(getattr(channel, c.key)) for c in Channel.__table__.columns})
        for secret in (NEW_PAGE["access_token"], NEW_PAGE["app_secret"], verify_token):
            assert secret not in row  # encrypted at rest
        assert credentials(channel)["access_token"] == NEW_PAGE["access_token"]


def test_the_meta_handshake_accepts_the_new_pages_verify_token(admin: Any, client: Any, world: World) -> None:
    created = send(admin, "POST", "/api/v1/channels", {"brand_id": world.brand_id, "kind": "facebook_page",
                                                       "name": "Lune IG", "config": NEW_PAGE}).get_json()
    response = client.get("/webhooks/meta", query_string={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                                          "hub.verify_token": created["secrets"]["verify_token"]})
    assert response.status_code == 200 and response.get_data(as_text=True) == "1158201444"


def test_an_api_channel_gets_a_webhook_secret_and_inbound_url(admin: Any, world: World) -> None:
    response = send(admin, "POST", "/api/v1/channels", {"brand_id": world.other_brand_id, "kind": "api",
                                                        "name": "Vélo shop", "config": {
                                                            "webhook_url": "http://127.0.0.1:9/hook"}})
    assert response.status_code == 201
    created = response.get_json()
    secret = created["secrets"]["webhook_secret"]
    assert len(secret) >= 32
    assert created["webhook"] == {"inbound_url": f"http://127.0.0.1:5000/webhooks/api/{created['id']}"}
    assert created["config"] == {"webhook_url": "http://127.0.0.1:9/hook"}
    shown = admin.get(f"/api/v1/channels/{created['id']}").get_json()
    assert secret not in json.dumps(shown) and set(shown["credentials"]) == {"webhook_secret"}


def test_connecting_a_page_twice_is_a_conflict(admin: Any, world: World) -> None:
    config = {**NEW_PAGE, "page_id": "1000000001"}  # the world's page
    response = send(admin, "POST", "/api/v1/channels", {"brand_id": world.other_brand_id, "kind": "facebook_page",
                                                        "name": "Again", "config": config})
    assert response.status_code == 409
    assert fields_of(response) == {"config.page_id": ["already connected"]}


@pytest.mark.parametrize("body, expected_fields", [
    ({"kind": "facebook_page", "name": "P", "config": {}},
     {"config.page_id", "config.access_token", "config.app_secret"}),
    ({"kind": "facebook_page", "name": "P", "config": {**NEW_PAGE, "page_id": "lune"}}, {"config.page_id"}),
    ({"kind": "facebook_page", "name": "P", "config": {**NEW_PAGE, "page_token": "x"}}, {"config.page_token"}),
    ({"kind": "facebook_page", "name": "P", "config": {**NEW_PAGE, "webhook_url": "https://a.example"}},
     {"config.webhook_url"}),
    ({"kind": "api", "name": "A", "config": {"webhook_url": "ftp://example.com"}}, {"config.webhook_url"}),
    ({"kind": "api", "name": "A", "config": {"page_id": "123"}}, {"config.page_id"}),
    ({"kind": "telegram", "name": "T", "config": {}}, {"kind"}),
    ({"kind": "api", "name": "", "config": {}}, {"name"}),
    ({"kind": "api", "name": "A", "config": {}, "secret": "x"}, {"secret"}),
    ({"kind": "api", "config": {}}, {"name"}),
])
def test_channel_validation_names_the_fields(admin: Any, world: World, body: dict, expected_fields: set) -> None:
    response = send(admin, "POST", "/api/v1/channels", {"brand_id": world.brand_id, **body})
    assert response.status_code == 422, response.get_json()
    assert set(fields_of(response)) == expected_fields


def test_a_channel_needs_an_existing_brand(admin: Any, world: World) -> None:
    response = send(admin, "POST", "/api/v1/channels", {"brand_id": 987654, "kind": "api", "name": "A"})
    assert response.status_code == 422 and set(fields_of(response)) == {"brand_id"}


def test_rotating_page_credentials(app: Any, admin: Any, client: Any, world: World) -> None:
    url = f"/api/v1/channels/{world.page_channel_id}"
    response = send(admin, "PATCH", url, {"name": "Maison Lune Messenger", "config": {
        "access_token": "EAAB-rotated-token-123", "verify_token": "a-new-verify-token"}})
    assert response.status_code == 200
    shown = response.get_json()
    assert shown["name"] == "Maison Lune Messenger"
    assert "EAAB-rotated-token-123" not in json.dumps(shown) and shown["credentials"]["access_token"] == "EAAB…23"
    with app.app_context():
        stored = credentials(db.session.get(Channel, world.page_channel_id))
        assert stored == {"access_token": "EAAB-rotated-token-123", "app_secret": APP_SECRET,
                          "verify_token": "a-new-verify-token"}
    handshake = {"hub.mode": "subscribe", "hub.challenge": "7"}
    assert client.get("/webhooks/meta", query_string={**handshake, "hub.verify_token": "a-new-verify-token"}) \
        .status_code == 200
    assert client.get("/webhooks/meta", query_string={**handshake, "hub.verify_token": "test-verify-token"}) \
        .status_code == 403
    refused = send(admin, "PATCH", url, {"config": {"page_id": "42"}})
    assert refused.status_code == 422 and set(fields_of(refused)) == {"config.page_id"}


def test_disabling_and_re_enabling_a_channel_clears_its_error(app: Any, admin: Any, world: World) -> None:
    with app.app_context():
        channel = db.session.get(Channel, world.page_channel_id)
        channel.status, channel.status_detail = "error", "token expired"
        db.session.commit()
    url = f"/api/v1/channels/{world.page_channel_id}"
    assert admin.get(url).get_json()["status_detail"] == "token expired"
    assert send(admin, "PATCH", url, {"status": "disabled"}).get_json()["status"] == "disabled"
    enabled = send(admin, "PATCH", url, {"status": "active"}).get_json()
    assert (enabled["status"], enabled["status_detail"]) == ("active", None)
    assert send(admin, "PATCH", url, {"status": "error"}).status_code == 422
    assert send(admin, "PATCH", url, {}).status_code == 422


def test_api_channel_settings_and_secret_rotation(app: Any, admin: Any, world: World) -> None:
    url = f"/api/v1/channels/{world.api_channel_id}"
    patched = send(admin, "PATCH", url, {"config": {"webhook_url": "https://shop.example.com/relais"}})
    assert patched.get_json()["config"] == {"webhook_url": "https://shop.example.com/relais"}
    wrong_kind = send(admin, "PATCH", url, {"config": {"access_token": "EAAB-nope"}})
    assert wrong_kind.status_code == 422 and set(fields_of(wrong_kind)) == {"config.access_token"}

    rotated = send(admin, "POST", url + "/rotate-secret")
    assert rotated.status_code == 200
    secret = rotated.get_json()["secrets"]["webhook_secret"]
    assert secret != world.api_secret and len(secret) >= 32
    assert secret not in json.dumps(admin.get(url).get_json())
    with app.app_context():
        assert credentials(db.session.get(Channel, world.api_channel_id))["webhook_secret"] == secret
    page = send(admin, "POST", f"/api/v1/channels/{world.page_channel_id}/rotate-secret")
    assert page.status_code == 409


def test_channels_are_for_admins_only(login: Any, world: World) -> None:
    for email in (world.agent, world.supervisor):
        client = login(email)
        assert client.get("/api/v1/channels").status_code == 403
        assert client.get(f"/api/v1/channels/{world.page_channel_id}").status_code == 403
        assert send(client, "POST", "/api/v1/channels", {"brand_id": world.brand_id, "kind": "api",
                                                         "name": "x"}).status_code == 403
    assert login(world.admin).get("/api/v1/channels/987654").status_code == 404


# ---------- teams ----------
def test_team_crud_and_access_follows_membership(admin: Any, login: Any, world: World) -> None:
    outsider = login(world.outsider)
    assert [b["id"] for b in outsider.get("/api/v1/brands").get_json()] == [world.other_brand_id]
    outsider_id = world.agent_ids[world.outsider]

    created = send(admin, "POST", "/api/v1/teams", {"name": "SAV", "brand_ids": [world.brand_id, world.other_brand_id],
                                                    "member_ids": [outsider_id]})
    assert created.status_code == 201
    team = created.get_json()
    assert team["brand_ids"] == sorted([world.brand_id, world.other_brand_id])
    assert team["member_ids"] == [outsider_id]
    assert sorted(b["id"] for b in outsider.get("/api/v1/brands").get_json()) == sorted(
        [world.brand_id, world.other_brand_id])

    patched = send(admin, "PATCH", f"/api/v1/teams/{team['id']}", {"name": "Après-vente", "brand_ids": [world.brand_id],
                                                                   "member_ids": []})
    assert patched.status_code == 200
    assert (patched.get_json()["name"], patched.get_json()["brand_ids"], patched.get_json()["member_ids"]) == (
        "Après-vente", [world.brand_id], [])
    assert [b["id"] for b in outsider.get("/api/v1/brands").get_json()] == [world.other_brand_id]
    assert admin.get(f"/api/v1/teams/{team['id']}").get_json()["name"] == "Après-vente"

    assert send(admin, "DELETE", f"/api/v1/teams/{team['id']}").status_code == 204
    assert admin.get(f"/api/v1/teams/{team['id']}").status_code == 404
    assert {t["name"] for t in admin.get("/api/v1/teams").get_json()} == {"Community", "Vélo team"}


def test_a_team_is_renamed_alone_and_its_members_changed_alone(admin: Any, world: World) -> None:
    """PATCH changes what it names and nothing else: a name alone renames the team (it was ignored), members
    alone keep its name (the name was set to nothing: the team could not be saved)."""
    team = send(admin, "POST", "/api/v1/teams", {"name": "SAV", "brand_ids": [world.brand_id]}).get_json()
    renamed = send(admin, "PATCH", f"/api/v1/teams/{team['id']}", {"name": "Service après-vente"})
    assert renamed.status_code == 200, renamed.get_json()
    assert (renamed.get_json()["name"], renamed.get_json()["brand_ids"]) == ("Service après-vente", [world.brand_id])
    member = world.agent_ids[world.outsider]
    staffed = send(admin, "PATCH", f"/api/v1/teams/{team['id']}", {"member_ids": [member]})
    assert staffed.status_code == 200, staffed.get_json()
    assert (staffed.get_json()["name"], staffed.get_json()["member_ids"]) == ("Service après-vente", [member])
    assert send(admin, "PATCH", f"/api/v1/teams/{team['id']}", {"name": "community"}).status_code == 409
    assert admin.get(f"/api/v1/teams/{team['id']}").get_json()["name"] == "Service après-vente"


@pytest.mark.parametrize("body, status, field", [
    ({"name": "community"}, 409, "name"),
    ({"name": "New", "brand_ids": [987654]}, 422, "brand_ids"),
    ({"name": "New", "member_ids": [987654]}, 422, "member_ids"),
    ({"name": "New", "member_ids": ["one"]}, 422, "member_ids.0"),
    ({"brand_ids": []}, 422, "name"),
])
def test_team_validation_names_the_field(admin: Any, world: World, body: dict, status: int, field: str) -> None:
    response = send(admin, "POST", "/api/v1/teams", body)
    assert response.status_code == status
    assert field in fields_of(response)


def test_supervisors_read_their_own_teams_and_agents_none(login: Any, world: World) -> None:
    supervisor = login(world.supervisor)
    assert [t["id"] for t in supervisor.get("/api/v1/teams").get_json()] == [world.team_id]
    assert supervisor.get(f"/api/v1/teams/{world.team_id}").status_code == 200
    assert supervisor.get(f"/api/v1/teams/{world.other_team_id}").status_code == 404
    assert send(supervisor, "PATCH", f"/api/v1/teams/{world.team_id}", {"name": "Mine"}).status_code == 403
    assert send(supervisor, "DELETE", f"/api/v1/teams/{world.team_id}").status_code == 403
    agent = login(world.agent)
    assert agent.get("/api/v1/teams").status_code == 403
    assert agent.get(f"/api/v1/teams/{world.team_id}").status_code == 403


# ---------- agents ----------
def test_admin_creates_an_agent_with_a_generated_password(admin: Any, client: Any, world: World) -> None:
    response = send(admin, "POST", "/api/v1/agents", {"email": "Nina@Example.com", "name": "Nina Petit",
                                                      "team_ids": [world.team_id], "capacity": 8,
                                                      "language": "fr"})
    assert response.status_code == 201
    agent = response.get_json()
    password = agent["password"]
    assert len(password) >= 12
    assert (agent["email"], agent["role"], agent["team_ids"], agent["capacity"], agent["language"]) == (
        "nina@example.com", "agent", [world.team_id], 8, "fr")
    signed_in = client.post("/api/v1/auth/login", json={"email": "nina@example.com", "password": password})
    assert signed_in.status_code == 200
    listed = next(a for a in admin.get("/api/v1/agents").get_json() if a["id"] == agent["id"])
    assert "password" not in listed


def test_an_agent_created_with_a_password_gets_none_back(admin: Any, world: World) -> None:
    response = send(admin, "POST", "/api/v1/agents", {"email": "sup2@example.com", "name": "Sam",
                                                      "role": "supervisor", "password": "a long password"})
    assert response.status_code == 201 and response.get_json()["password"] is None


@pytest.mark.parametrize("body, status, field", [
    ({"email": "AGENT@relais.test", "name": "Twin"}, 409, "email"),
    ({"email": "not-an-email", "name": "X"}, 422, "email"),
    ({"email": "x@example.com", "name": "X", "role": "owner"}, 422, "role"),
    ({"email": "x@example.com", "name": "X", "password": "short"}, 422, "password"),
    ({"email": "x@example.com", "name": "X", "team_ids": [987654]}, 422, "team_ids"),
    ({"email": "x@example.com", "name": "X", "capacity": -1}, 422, "capacity"),
    ({"email": "x@example.com"}, 422, "name"),
])
def test_agent_validation_names_the_field(admin: Any, world: World, body: dict, status: int, field: str) -> None:
    response = send(admin, "POST", "/api/v1/agents", body)
    assert response.status_code == status
    assert field in fields_of(response)


def test_who_sees_which_agents(login: Any, world: World) -> None:
    everyone = {a["email"] for a in login(world.admin).get("/api/v1/agents").get_json()}
    assert everyone == {world.admin, world.supervisor, world.agent, world.agent2, world.outsider}

    supervised = login(world.supervisor).get("/api/v1/agents").get_json()
    assert {a["email"] for a in supervised} == {world.supervisor, world.agent, world.agent2}

    agent = login(world.agent)
    teammates = agent.get("/api/v1/agents").get_json()
    assert {a["id"] for a in teammates} == {world.agent_ids[e] for e in (world.supervisor, world.agent, world.agent2)}
    assert all(set(a) == {"id", "name", "availability"} for a in teammates)  # no emails for agents
    assert agent.get(f"/api/v1/agents/{world.agent_ids[world.outsider]}").status_code == 404
    assert set(agent.get(f"/api/v1/agents/{world.agent_ids[world.agent2]}").get_json()) == {
        "id", "name", "availability"}


def test_deactivating_an_agent_signs_them_out_for_good(admin: Any, login: Any, world: World) -> None:
    agent = login(world.agent)
    agent_id = world.agent_ids[world.agent]
    response = send(admin, "PATCH", f"/api/v1/agents/{agent_id}", {"is_active": False})
    assert response.status_code == 200
    assert (response.get_json()["is_active"], response.get_json()["availability"]) == (False, "offline")
    assert agent.get("/api/v1/auth/me").status_code == 401
    assert agent.post("/api/v1/auth/login", json={"email": world.agent, "password": PASSWORD}).status_code == 401
    assert send(admin, "PATCH", f"/api/v1/agents/{agent_id}", {"is_active": True}).status_code == 200
    assert login(world.agent).get("/api/v1/auth/me").status_code == 200


def test_admin_changes_role_teams_capacity_and_password(app: Any, admin: Any, login: Any, world: World) -> None:
    agent_id = world.agent_ids[world.agent]
    before = login(world.agent)
    response = send(admin, "PATCH", f"/api/v1/agents/{agent_id}", {
        "role": "supervisor", "team_ids": [world.other_team_id], "capacity": 3, "name": "Agent Smith",
        "password": "reset by the admin"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["role"], body["team_ids"], body["capacity"], body["name"]) == (
        "supervisor", [world.other_team_id], 3, "Agent Smith")
    assert before.get("/api/v1/auth/me").status_code == 401  # a password reset signs out everywhere
    after = login(world.agent, "reset by the admin")
    assert [b["id"] for b in after.get("/api/v1/brands").get_json()] == [world.other_brand_id]


def test_the_last_admin_cannot_demote_or_deactivate_themselves(admin: Any, world: World) -> None:
    admin_id = world.agent_ids[world.admin]
    demoted = send(admin, "PATCH", f"/api/v1/agents/{admin_id}", {"role": "agent"})
    assert demoted.status_code == 409 and "role" in fields_of(demoted)
    deactivated = send(admin, "PATCH", f"/api/v1/agents/{admin_id}", {"is_active": False})
    assert deactivated.status_code == 409 and "is_active" in fields_of(deactivated)
    promoted = send(admin, "PATCH", f"/api/v1/agents/{world.agent_ids[world.supervisor]}", {"role": "admin"})
    assert promoted.status_code == 200
    assert send(admin, "PATCH", f"/api/v1/agents/{admin_id}", {"role": "agent"}).status_code == 200


def test_agents_are_managed_by_admins_only(login: Any, world: World) -> None:
    supervisor = login(world.supervisor)
    assert send(supervisor, "POST", "/api/v1/agents", {"email": "x@example.com", "name": "X"}).status_code == 403
    assert send(supervisor, "PATCH", f"/api/v1/agents/{world.agent_ids[world.agent]}",
                {"capacity": 1}).status_code == 403
    assert send(login(world.admin), "PATCH", "/api/v1/agents/987654", {"capacity": 1}).status_code == 404


# ---------- the raw webhook log ----------
def add_event(app: Any, *, body: bytes = b'{"object":"page","entry":[]}', status: str = "processed",
              verification: str = "valid", source: str = "meta", minutes_ago: int = 0, **extra: Any) -> int:
    with app.app_context():
        event = WebhookEvent(source=source, received_at=utcnow() - timedelta(minutes=minutes_ago),
                             remote_addr="173.252.127.1", body=body, verification=verification, status=status,
                             headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=ab12"},
                             **extra)
        db.session.add(event)
        db.session.commit()
        return event.id


def test_webhook_events_are_listed_newest_first_with_a_cursor(app: Any, admin: Any, world: World) -> None:
    ids = [add_event(app, minutes_ago=10 - n) for n in range(5)]
    failed = add_event(app, status="failed", error="boom", attempts=2)
    api = add_event(app, source="api", status="pending")

    first = admin.get("/api/v1/webhook-events?limit=3").get_json()
    assert [e["id"] for e in first["items"]] == [api, failed, ids[4]]
    second = admin.get(f"/api/v1/webhook-events?limit=3&cursor={first['next_cursor']}").get_json()
    assert [e["id"] for e in second["items"]] == [ids[3], ids[2], ids[1]]
    third = admin.get(f"/api/v1/webhook-events?limit=3&cursor={second['next_cursor']}").get_json()
    assert [e["id"] for e in third["items"]] == [ids[0]] and third["next_cursor"] is None

    assert [e["id"] for e in admin.get("/api/v1/webhook-events?status=failed").get_json()["items"]] == [failed]
    assert [e["id"] for e in admin.get("/api/v1/webhook-events?source=api").get_json()["items"]] == [api]
    bad = admin.get("/api/v1/webhook-events?status=lost&limit=0&cursor=abc&page=2")
    assert bad.status_code == 422 and set(fields_of(bad)) == {"status", "limit", "cursor", "page"}


def test_a_webhook_event_shows_its_body_as_text_cut_at_64_kib(app: Any, admin: Any, world: World) -> None:
    raw = b'{"text":"caf\xc3\xa9 \xff"}' + b" " * (70 * 1024)
    event_id = add_event(app, body=raw)
    shown = admin.get(f"/api/v1/webhook-events/{event_id}").get_json()
    assert shown["body"].startswith('{"text":"café \ufffd"}')
    assert len(shown["body"].encode("utf-8")) <= 64 * 1024 + 2  # the one replaced byte grows by two
    assert (shown["body_size"], shown["body_truncated"]) == (len(raw), True)
    assert shown["headers"] == {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=ab12"}
    assert (shown["source"], shown["verification"], shown["status"]) == ("meta", "valid", "processed")
    assert admin.get("/api/v1/webhook-events/987654").status_code == 404


def test_replaying_an_event_queues_it_again(app: Any, admin: Any, world: World, background_held: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """(The app's reconciler is held off: it would drain the replayed event before the nudge looks at it.)"""
    import inbox.jobs

    nudges: list[tuple[str, str, str]] = []

    def enqueue(func: Any, *args: Any, queue: str = "default", delay: float = 0.0) -> None:
        seen_by_a_worker = db.new_session()
        try:
            nudges.append((func.__name__, queue, seen_by_a_worker.get(WebhookEvent, event_id).status))
        finally:
            seen_by_a_worker.close()

    monkeypatch.setattr(inbox.jobs, "enqueue", enqueue)
    event_id = add_event(app, status="dead", attempts=5, error="KeyError: 'messaging'",
                         next_attempt_at=utcnow() + timedelta(hours=1))
    response = send(admin, "POST", f"/api/v1/webhook-events/{event_id}/replay")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["attempts"], body["error"], body["next_attempt_at"]) == ("pending", 0, None, None)
    assert nudges == [("drain_webhook_events", "ingest", "pending")]  # queued once the change was committed


def test_events_with_a_bad_signature_are_never_replayed(app: Any, admin: Any, world: World,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import inbox.jobs

    monkeypatch.setattr(inbox.jobs, "enqueue", lambda *a, **k: pytest.fail("nothing may be queued"))
    event_id = add_event(app, status="rejected", verification="invalid")
    response = send(admin, "POST", f"/api/v1/webhook-events/{event_id}/replay")
    assert response.status_code == 409
    with app.app_context():
        assert db.session.get(WebhookEvent, event_id).status == "rejected"


def test_the_webhook_log_is_for_admins_only(app: Any, login: Any, world: World) -> None:
    event_id = add_event(app)
    for email in (world.agent, world.supervisor):
        client = login(email)
        assert client.get("/api/v1/webhook-events").status_code == 403
        assert client.get(f"/api/v1/webhook-events/{event_id}").status_code == 403
        assert send(client, "POST", f"/api/v1/webhook-events/{event_id}/replay").status_code == 403


# ---------- the command line ----------
def count_agents(app: Any) -> int:
    with app.app_context():
        return len(db.session.execute(select(Agent.id)).all())


def test_create_admin_is_idempotent(app: Any, client: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "--email", "Boss@Example.com", "--password", "a long admin pass",
                                 "--name", "Boss"])
    assert result.exit_code == 0, result.output
    assert "created administrator boss@example.com" in result.output
    assert "a long admin pass" not in result.output  # a password that was given is not echoed
    signed_in = client.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": "a long admin pass"})
    assert signed_in.status_code == 200 and signed_in.get_json()["agent"]["role"] == "admin"

    again = runner.invoke(args=["create-admin", "--email", "boss@example.com", "--password", "another password"])
    assert again.exit_code == 0 and "already exists" in again.output
    assert count_agents(app) == 1
    assert client.post("/api/v1/auth/login", json={"email": "boss@example.com",
                                                   "password": "a long admin pass"}).status_code == 200


def test_create_admin_from_settings_prints_a_generated_password_once(app: Any, client: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = app.extensions["relais.settings"]
    monkeypatch.setitem(app.extensions, "relais.settings", settings.with_overrides(admin_email="ops@example.com"))
    result = app.test_cli_runner().invoke(args=["create-admin"])
    assert result.exit_code == 0, result.output
    password = result.output.split("password: ")[1].split()[0]
    assert client.post("/api/v1/auth/login", json={"email": "ops@example.com", "password": password}) \
        .status_code == 200
    again = app.test_cli_runner().invoke(args=["create-admin"])
    assert "password" not in again.output


def test_create_admin_needs_an_email(app: Any) -> None:
    result = app.test_cli_runner().invoke(args=["create-admin"])
    assert result.exit_code == 2 and "RELAIS_ADMIN_EMAIL" in result.output
    assert count_agents(app) == 0


def test_bootstrap_creates_the_admin_and_demo_data_once(app: Any, client: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_APP_SECRET", "from-the-environment")
    result = app.test_cli_runner().invoke(args=["bootstrap", "--email", "root@example.com"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    admin_password = next(line for line in lines if line.strip().startswith("password:")).split()[1]
    assert client.post("/api/v1/auth/login", json={"email": "root@example.com", "password": admin_password}) \
        .status_code == 200
    demo = next(line for line in lines if line.startswith("agent camille@example.com"))
    camille = login_client(app, "camille@example.com", demo.split("password: ")[1].strip())
    assert {b["name"] for b in camille.get("/api/v1/brands").get_json()} == {"Maison Lune", "Vélo Vert"}
    assert "demo-verify-token" in result.output

    admin = login_client(app, "root@example.com", admin_password)
    assert {t["name"] for t in admin.get("/api/v1/teams").get_json()} == {"Community", "SAV"}
    channels = admin.get("/api/v1/channels").get_json()
    pages = {c["external_id"]: c for c in channels if c["kind"] == "facebook_page"}
    assert set(pages) == {"1000000001", "2000000002"}
    assert [c["kind"] for c in channels].count("api") == 1
    with app.app_context():
        page = db.session.get(Channel, pages["1000000001"]["id"])
        assert credentials(page)["app_secret"] == "from-the-environment"
    assert count_agents(app) == 3
    _check_demo_conversations(admin, camille)

    again = app.test_cli_runner().invoke(args=["bootstrap"])
    assert again.exit_code == 0 and "database already initialised" in again.output
    assert count_agents(app) == 3 and len(admin.get("/api/v1/channels").get_json()) == 3
    assert len(_all_conversations(admin)) == len(THREADS)  # nothing seeded twice


def _all_conversations(client: Any) -> list[dict[str, Any]]:
    found = []
    for status in ("open", "pending", "snoozed", "resolved"):
        found += client.get(f"/api/v1/conversations?status={status}&limit=200").get_json()["items"]
    return found


def _check_demo_conversations(admin: Any, camille: Any) -> None:
    """The queue a new installation opens on: every demo customer's conversation, come in through the signed
    webhook endpoint and the drain, named, on the SLA policy's clocks, some triaged."""
    items = _all_conversations(admin)
    by_name = {c["contact"]["name"]: c for c in items}
    assert len(items) == len(THREADS) and len(by_name) == len(THREADS)  # Messenger customers named too
    assert {c["brand"]["name"] for c in items} == {"Maison Lune", "Vélo Vert"}
    assert {c["kind"] for c in items} == {"dm", "comment"}
    waiting = by_name["Camille Dubois"]  # wrote 131 minutes ago, nobody answered: first response breached
    assert waiting["status"] == "open" and waiting["assignee"] is None and waiting["last_message"]["direction"] == "in"
    assert [clock["state"] for clock in waiting["sla"] if clock["metric"] == "first_response"] == ["breached"]
    lea = by_name["Léa Moreau"]  # in, the page's answer (an echo), in again: the customer's turn
    assert lea["last_message"]["text"].startswith("Merci ! Je dépose") and lea["last_outbound_at"] is not None
    assert lea["assignee"]["name"] == "Camille Martin" and lea["labels"] == ["échange"]
    thomas = by_name["Thomas Petit"]  # answered in 10 minutes, resolved within the day: every target met
    assert thomas["status"] == "resolved"
    assert {clock["metric"]: clock["state"] for clock in thomas["sla"]} == {"first_response": "met",
                                                                           "resolution": "met"}
    hugo = by_name["Hugo Lefèvre"]
    assert hugo["priority"] == "high" and hugo["labels"] == ["remboursement"]
    teams = {t["name"]: t["id"] for t in admin.get("/api/v1/teams").get_json()}
    assert hugo["team_id"] == teams["SAV"]
    assert by_name["James Miller"]["priority"] == "urgent"
    mine = camille.get("/api/v1/conversations?assignee=me&limit=200").get_json()["items"]
    assert sorted(c["contact"]["name"] for c in mine) == ["Léa Moreau", "Sarah Johnson"]
    replies = admin.get("/api/v1/canned-replies").get_json()
    assert {r["shortcut"] for r in (replies["items"] if isinstance(replies, dict) else replies)} >= \
        {"merci", "suivi", "thanks"}
    policies = admin.get("/api/v1/sla-policies").get_json()
    assert [p["first_response_seconds"] for p in (policies["items"] if isinstance(policies, dict) else policies)] \
        == [3600]


def login_client(app: Any, email: str, password: str) -> Any:
    client = app.test_client()
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    client.csrf = response.get_json()["csrf_token"]
    return client
