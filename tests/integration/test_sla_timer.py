"""SLA warnings and breaches pushed live on time by the timer, and exactly once across restarts.
SQLite, and PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
import socketio
from sqlalchemy import func, select

from inbox.db import db
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import RealtimeEvent, SlaClock, SlaEvent
from inbox.services import sla, sla_timer
from tests.factories import PAGE_ID
from tests.helpers import bearer, on_live, post_meta, wait_until

MAX_LATENESS = 2.0


@pytest.fixture(autouse=True)
def _fresh_policies() -> None:
    sla.invalidate_policy_cache()


@pytest.fixture(autouse=True, scope="module")
def _no_policies_left_cached() -> Iterator[None]:
    yield
    sla.invalidate_policy_cache()


def create_policy(client: Any, token: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/sla-policies", json={"name": "Fast", **fields}, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def pushed(app: Any, name: str) -> list[dict[str, Any]]:
    with app.app_context():
        try:
            rows = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name == name)
                                      .order_by(RealtimeEvent.id)).scalars()
            return [{"rooms": row.rooms, **row.payload} for row in rows]
        finally:
            db.session.remove()


def test_warning_then_breach_are_pushed_live_within_two_seconds(app, live_server, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    create_policy(app.test_client(), admin, first_response_seconds=2, warning_ratio=0.5)
    received: list[tuple[str, float, dict[str, Any]]] = []
    sio = socketio.Client(reconnection=False)
    on_live(sio, lambda name, envelope: received.append((name, time.time(), envelope))
            if name in ("sla.warning", "sla.breached") else None)
    sio.connect(live_server, auth={"token": agent}, transports=["websocket"], wait_timeout=5)
    try:
        client = app.test_client()
        assert post_meta(client, messenger_message_payload(PAGE_ID, "p-live", "Anyone there?")).status_code == 200
        jobs_done()
        (conversation,) = client.get("/api/v1/conversations", headers=bearer(agent)).get_json()["items"]
        claimed = client.post(f"/api/v1/conversations/{conversation['id']}/claim", headers=bearer(agent))
        assert claimed.status_code == 200
        (first,) = claimed.get_json()["sla"]
        warning_at = datetime.fromisoformat(first["warning_at"]).timestamp()
        due_at = datetime.fromisoformat(first["due_at"]).timestamp()
        wait_until(lambda: len(received) >= 2, timeout=10)
        (warning, breach) = received[:2]
        assert [warning[0], breach[0]] == ["sla.warning", "sla.breached"]
        assert warning[2]["data"] == {"conversation_id": conversation["id"], "metric": "first_response",
                                      "due_at": first["due_at"]}
        assert breach[2]["data"]["due_at"] == first["due_at"] and breach[2]["seq"] > warning[2]["seq"]
        assert 0 <= warning[1] - warning_at < MAX_LATENESS, warning[1] - warning_at
        assert 0 <= breach[1] - due_at < MAX_LATENESS, breach[1] - due_at
    finally:
        sio.disconnect()
    state = client.get(f"/api/v1/conversations/{conversation['id']}", headers=bearer(agent)).get_json()["sla"][0]
    assert state["state"] == "breached" and state["calendar_seconds_left"] < 0
    (breached,) = pushed(app, "sla.breached")
    assert f"brand:{world.brand_id}" in breached["rooms"] and "admins" in breached["rooms"]
    kinds = [e["kind"] for e in client.get(f"/api/v1/conversations/{conversation['id']}/sla-events",
                                           headers=bearer(agent)).get_json()]
    assert kinds == ["started", "warned", "breached"]


def test_a_breach_due_while_the_timer_was_down_is_pushed_once_on_start(app, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    client = app.test_client()
    embedded = app.extensions["relais.sla_timer"]
    embedded.stop()
    try:
        create_policy(client, admin, first_response_seconds=1, warning_ratio=1)
        assert post_meta(client, messenger_message_payload(PAGE_ID, "p-down", "Hello?")).status_code == 200
        jobs_done()
        (conversation,) = client.get("/api/v1/conversations", headers=bearer(agent)).get_json()["items"]
        assert client.post(f"/api/v1/conversations/{conversation['id']}/claim", headers=bearer(agent)).status_code \
            == 200
        time.sleep(1.5)  # the breach falls due while no timer runs
        assert pushed(app, "sla.breached") == []
        first_start = sla_timer.start_sla_timer(app)
        wait_until(lambda: pushed(app, "sla.breached"), timeout=5)
        first_start.stop()
        second_start = sla_timer.start_sla_timer(app)
        time.sleep(1.0)
        second_start.stop()
        (breach,) = pushed(app, "sla.breached")
        assert breach["conversation_id"] == conversation["id"]
        assert f"agent:{world.agent_ids[world.agent]}" in breach["rooms"]
        assert pushed(app, "sla.warning") == []
        with app.app_context():
            try:
                clock = db.session.execute(select(SlaClock)).scalar_one()
                assert clock.state == "breached" and clock.breached_at is not None
                assert clock.next_deadline_at is None
                breaches = select(func.count()).select_from(SlaEvent).where(SlaEvent.kind == "breached")
                assert db.session.scalar(breaches) == 1
            finally:
                db.session.remove()
    finally:
        sla_timer.start_sla_timer(app, sla_timer.EMBEDDED_MAX_SLEEP)


def test_two_timers_firing_the_same_deadline_push_it_once(app, world, token_for, jobs_done):
    admin = token_for(world.admin)
    client = app.test_client()
    embedded = app.extensions["relais.sla_timer"]
    embedded.stop()
    try:
        create_policy(client, admin, first_response_seconds=1, warning_ratio=1)
        for index in range(5):
            post_meta(client, messenger_message_payload(PAGE_ID, f"p-race-{index}", "Hello?"))
        jobs_done()
        time.sleep(1.2)

        def fire() -> None:
            with app.app_context():
                sla_timer.fire_due(datetime.now(timezone.utc))
        workers = [threading.Thread(target=fire) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        breaches = pushed(app, "sla.breached")
        assert len(breaches) == 5 and len({b["conversation_id"] for b in breaches}) == 5
    finally:
        sla_timer.start_sla_timer(app, sla_timer.EMBEDDED_MAX_SLEEP)
