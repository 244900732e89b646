"""SLA through the API: calendars and policies administered, clocks shown on conversations as customers
write, agents reply, note, set pending and resolve; the clocks' log. SQLite, and PostgreSQL with
RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest

from inbox.demo.fake_meta import messenger_message_payload
from inbox.services import sla
from tests.factories import PAGE_ID
from tests.helpers import bearer, post_meta

PARIS = ZoneInfo("Europe/Paris")
OFFICE_HOURS = [{"weekday": day, "start": "09:00", "end": "18:00"} for day in range(5)]


@pytest.fixture(autouse=True)
def _fresh_policies() -> None:
    """Policies are cached per process for a few seconds: never reuse those of a previous test's database."""
    sla.invalidate_policy_cache()


@pytest.fixture(autouse=True, scope="module")
def _no_policies_left_cached() -> Iterator[None]:
    yield  # after the last test's tables were emptied
    sla.invalidate_policy_cache()


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def now_ms(offset_seconds: float = 0) -> int:
    return int((time.time() + offset_seconds) * 1000)


def create_policy(client: Any, token: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"policy {time.monotonic_ns()}", **fields}
    response = client.post("/api/v1/sla-policies", json=body, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def customer_writes(client: Any, psid: str, text: str, ts_ms: int | None = None) -> None:
    assert post_meta(client, messenger_message_payload(PAGE_ID, psid, text, ts_ms=ts_ms)).status_code == 200


def fetch(client: Any, token: str, conversation_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/conversations/{conversation_id}", headers=bearer(token))
    assert response.status_code == 200
    return response.get_json()


def clock(conversation: dict[str, Any], metric: str) -> dict[str, Any]:
    (found,) = [c for c in conversation["sla"] if c["metric"] == metric]
    return found


def only_conversation(client: Any, token: str) -> dict[str, Any]:
    (conversation,) = client.get("/api/v1/conversations", headers=bearer(token)).get_json()["items"]
    return conversation


def reply(client: Any, token: str, conversation_id: int, text: str = "On it!", kind: str = "reply") -> int:
    response = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text, "kind": kind},
                           headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def set_status(client: Any, token: str, conversation_id: int, status: str) -> dict[str, Any]:
    response = client.patch(f"/api/v1/conversations/{conversation_id}", json={"status": status},
                            headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def events(client: Any, token: str, conversation_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/conversations/{conversation_id}/sla-events", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# ---------------------------------------------------------------- administration
def test_policies_are_written_by_admins_read_by_supervisors_and_archived(client, world, token_for):
    admin, supervisor, agent = token_for(world.admin), token_for(world.supervisor), token_for(world.agent)
    policy = create_policy(client, admin, name="Standard", first_response_seconds=3600, pause_on=["pending"],
                           conditions={"brand_ids": [world.brand_id], "labels": []})
    assert policy["warning_ratio"] == 0.8 and policy["calendar_id"] is None
    assert policy["conditions"] == {"brand_ids": [world.brand_id]}
    assert client.get("/api/v1/sla-policies", headers=bearer(supervisor)).status_code == 200
    assert client.get(f"/api/v1/sla-policies/{policy['id']}", headers=bearer(supervisor)).get_json()["name"] \
        == "Standard"
    assert client.get("/api/v1/sla-policies", headers=bearer(agent)).status_code == 403
    refused = client.post("/api/v1/sla-policies", json={"name": "x", "first_response_seconds": 60},
                          headers=bearer(supervisor))
    assert refused.status_code == 403
    no_target = client.post("/api/v1/sla-policies", json={"name": "x"}, headers=bearer(admin))
    assert no_target.status_code == 422
    bad = client.post("/api/v1/sla-policies", headers=bearer(admin),
                      json={"name": "x", "first_response_seconds": 60, "pause_on": ["resolved"], "calendar_id": 999})
    assert bad.status_code == 422 and "pause_on.0" in bad.get_json()["error"]["fields"]
    patched = client.patch(f"/api/v1/sla-policies/{policy['id']}", json={"resolution_seconds": 86400},
                           headers=bearer(admin))
    assert patched.status_code == 200 and patched.get_json()["resolution_seconds"] == 86400
    assert client.delete(f"/api/v1/sla-policies/{policy['id']}", headers=bearer(admin)).status_code == 204
    assert client.get("/api/v1/sla-policies", headers=bearer(admin)).get_json() == []


def test_calendars_validate_hours_and_import_holidays_from_icalendar(client, world, token_for):
    admin, supervisor = token_for(world.admin), token_for(world.supervisor)
    bad_zone = client.post("/api/v1/calendars", json={"name": "Nowhere", "timezone": "Mars/Olympus",
                                                      "intervals": OFFICE_HOURS}, headers=bearer(admin))
    assert bad_zone.status_code == 422 and "timezone" in bad_zone.get_json()["error"]["fields"]
    bad_time = client.post("/api/v1/calendars", json={"name": "Late", "timezone": "Europe/Paris",
                                                      "intervals": [{"weekday": 0, "start": "25:00", "end": "02:00"}]},
                           headers=bearer(admin))
    assert bad_time.status_code == 422
    created = client.post("/api/v1/calendars", json={"name": "Night desk", "timezone": "Europe/Paris",
                                                     "intervals": [{"weekday": 4, "start": "22:00", "end": "02:00"}],
                                                     "holidays": ["2026-12-25"]}, headers=bearer(admin))
    assert created.status_code == 201, created.get_json()
    calendar = created.get_json()
    assert client.get("/api/v1/calendars", headers=bearer(supervisor)).get_json()[0]["name"] == "Night desk"
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
           "BEGIN:VEVENT\r\nUID:1\r\nDTSTART;VALUE=DATE:20270101\r\nSUMMARY:Jour de l'an\r\nEND:VEVENT\r\n"
           "BEGIN:VEVENT\r\nUID:2\r\nDTSTART;VALUE=DATE:20261225\r\nSUMMARY:Noel\r\nEND:VEVENT\r\n"
           "END:VCALENDAR\r\n")
    imported = client.post(f"/api/v1/calendars/{calendar['id']}/holidays/import", data=ics,
                           headers={**bearer(admin), "Content-Type": "text/calendar"})
    assert imported.status_code == 200, imported.get_json()
    assert imported.get_json()["holidays"] == ["2026-12-25", "2027-01-01"] and imported.get_json()["imported"] == 1
    as_json = client.post(f"/api/v1/calendars/{calendar['id']}/holidays/import", headers=bearer(admin),
                          json={"ics": ics.replace("20270101", "20270501")})
    assert as_json.status_code == 200 and "2027-05-01" in as_json.get_json()["holidays"]
    garbage = client.post(f"/api/v1/calendars/{calendar['id']}/holidays/import", data=b"not a calendar",
                          headers={**bearer(admin), "Content-Type": "text/calendar"})
    assert garbage.status_code == 422
    renamed = client.patch(f"/api/v1/calendars/{calendar['id']}", json={"name": "Weekend nights"},
                           headers=bearer(admin))
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Weekend nights"


# ---------------------------------------------------------------- clocks on conversations
def test_no_policy_means_no_clocks(client, world, token_for, jobs_done):
    customer_writes(client, "p-none", "Bonjour")
    jobs_done()
    assert only_conversation(client, token_for(world.agent))["sla"] == []


def test_first_matching_policy_by_position_and_conditions_applies(client, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    create_policy(client, admin, name="Other brand", position=0, first_response_seconds=60,
                  conditions={"brand_ids": [world.other_brand_id]})
    create_policy(client, admin, name="Facebook", position=20, first_response_seconds=3600,
                  conditions={"channel_kinds": ["facebook_page"], "conversation_kinds": ["dm"]})
    create_policy(client, admin, name="VIP", position=10, first_response_seconds=600,
                  conditions={"labels": ["vip"], "priorities": ["high", "urgent"]})
    customer_writes(client, "p-match", "Bonjour")
    jobs_done()
    conversation = only_conversation(client, agent)
    first = clock(conversation, "first_response")
    assert first["state"] == "running"
    assert when(first["due_at"]) - when(first["started_at"]) == timedelta(seconds=3600)
    assert when(first["warning_at"]) - when(first["started_at"]) == timedelta(seconds=2880)
    assert 3500 < first["calendar_seconds_left"] <= 3600 and 3500 < first["business_seconds_left"] <= 3600
    assert [c["metric"] for c in conversation["sla"]] == ["first_response"]
    labelled = client.patch(f"/api/v1/conversations/{conversation['id']}", json={"labels": ["vip"]},
                            headers=bearer(agent)).get_json()
    assert when(clock(labelled, "first_response")["due_at"]) - when(first["started_at"]) == timedelta(seconds=3600)
    urgent = client.patch(f"/api/v1/conversations/{conversation['id']}", json={"priority": "urgent"},
                          headers=bearer(agent)).get_json()
    assert when(clock(urgent, "first_response")["due_at"]) - when(first["started_at"]) == timedelta(seconds=600)


def test_first_response_is_met_by_a_sent_reply_not_by_a_note(client, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    create_policy(client, admin, first_response_seconds=3600, resolution_seconds=86400)
    customer_writes(client, "p-first", "Où est ma commande ?", ts_ms=now_ms(-60))
    jobs_done()
    conversation = only_conversation(client, agent)
    reply(client, agent, conversation["id"], "let me check with the warehouse", kind="note")
    jobs_done()
    assert clock(fetch(client, agent, conversation["id"]), "first_response")["state"] == "running"
    reply_id = reply(client, agent, conversation["id"], "Elle arrive demain !")
    jobs_done()
    after = fetch(client, agent, conversation["id"])
    first = clock(after, "first_response")
    assert first["state"] == "met" and first["stopped_at"] is not None
    assert first["business_seconds_left"] is None and first["calendar_seconds_left"] is None
    assert clock(after, "resolution")["state"] == "running"
    log = [(e["metric"], e["kind"], e["cause"]) for e in events(client, agent, conversation["id"])]
    assert ("first_response", "met", f"message:{reply_id}") in log
    assert [kind for metric, kind, _ in log if metric == "first_response"] == ["started", "met"]
    assert events(client, agent, conversation["id"]) == events(client, agent, conversation["id"])
    assert client.get(f"/api/v1/conversations/{conversation['id']}/sla-events",
                      headers=bearer(token_for(world.outsider))).status_code == 404


def test_next_response_runs_per_customer_turn_from_the_oldest_unanswered_message(client, world, token_for,
                                                                                 jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    create_policy(client, admin, first_response_seconds=3600, next_response_seconds=1800)
    customer_writes(client, "p-next", "Hello", ts_ms=now_ms(-30))
    jobs_done()
    conversation_id = only_conversation(client, agent)["id"]
    reply(client, agent, conversation_id, "Hi!")
    jobs_done()
    assert not [c for c in fetch(client, agent, conversation_id)["sla"] if c["metric"] == "next_response"]
    time.sleep(0.01)
    turn_start = now_ms()
    customer_writes(client, "p-next", "One more thing", ts_ms=turn_start)
    customer_writes(client, "p-next", "and another", ts_ms=turn_start + 5)
    jobs_done()
    turn = clock(fetch(client, agent, conversation_id), "next_response")
    assert turn["state"] == "running" and turn["turn"] == 1
    assert when(turn["started_at"]) == datetime.fromtimestamp(turn_start / 1000, timezone.utc)
    assert when(turn["due_at"]) - when(turn["started_at"]) == timedelta(seconds=1800)
    reply(client, agent, conversation_id, "Sure")
    jobs_done()
    assert clock(fetch(client, agent, conversation_id), "next_response")["state"] == "met"
    customer_writes(client, "p-next", "Thanks, last question")
    jobs_done()
    second = clock(fetch(client, agent, conversation_id), "next_response")
    assert (second["turn"], second["state"]) == (2, "running")
    turns = {(e["turn"], e["kind"]) for e in events(client, agent, conversation_id) if e["metric"] == "next_response"}
    assert turns == {(1, "started"), (1, "met"), (2, "started")}


def test_pending_pauses_the_clocks_the_policy_says(client, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    create_policy(client, admin, first_response_seconds=3600, resolution_seconds=7200, pause_on=["pending"])
    customer_writes(client, "p-pause", "Hello", ts_ms=now_ms(-10))
    jobs_done()
    conversation_id = only_conversation(client, agent)["id"]
    due_before = when(clock(fetch(client, agent, conversation_id), "first_response")["due_at"])
    paused = set_status(client, agent, conversation_id, "pending")
    first = clock(paused, "first_response")
    assert first["state"] == "paused" and first["due_at"] is None
    assert 3500 < first["business_seconds_left"] <= 3600 and first["calendar_seconds_left"] is None
    time.sleep(0.3)
    resumed = clock(set_status(client, agent, conversation_id, "open"), "first_response")
    assert resumed["state"] == "running"
    assert when(resumed["due_at"]) - due_before >= timedelta(seconds=0.3)
    kinds = [(e["kind"], e["cause"]) for e in events(client, agent, conversation_id)
             if e["metric"] == "first_response"]
    assert kinds == [("started", kinds[0][1]), ("paused", "status:pending"), ("resumed", "status:open")]


def test_resolving_stops_the_clocks_and_a_new_message_starts_a_new_cycle(client, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    create_policy(client, admin, first_response_seconds=3600, resolution_seconds=86400)
    customer_writes(client, "p-cycle", "Hello", ts_ms=now_ms(-20))
    jobs_done()
    conversation_id = only_conversation(client, agent)["id"]
    resolved = set_status(client, agent, conversation_id, "resolved")
    assert {c["metric"]: c["state"] for c in resolved["sla"]} == {"first_response": "met", "resolution": "met"}
    time.sleep(0.01)
    customer_writes(client, "p-cycle", "It broke again")
    jobs_done()
    reopened = fetch(client, agent, conversation_id)
    assert reopened["status"] == "open"
    assert {(c["metric"], c["cycle"], c["state"]) for c in reopened["sla"]} == {
        ("first_response", 2, "running"), ("resolution", 2, "running")}
    log = events(client, agent, conversation_id)
    assert {(e["cycle"], e["metric"], e["kind"]) for e in log} >= {
        (1, "resolution", "met"), (1, "first_response", "met"), (2, "first_response", "started")}
    assert [e["cause"] for e in log if e["cycle"] == 1 and e["metric"] == "resolution" and e["kind"] == "met"] \
        == ["status:resolved"]


def _last_weekday(weekday: int, weeks_back: int) -> datetime:
    """Midday (Paris) of the given weekday, `weeks_back` weeks before this week."""
    today = datetime.now(PARIS).date()
    day = today - timedelta(days=(today.weekday() - weekday) % 7 + 7 * weeks_back)
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=PARIS)


def test_business_hours_calendar_skips_closed_hours_and_holidays(client, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    saturday = _last_weekday(5, 2)
    monday, tuesday = saturday + timedelta(days=2), saturday + timedelta(days=3)
    calendar = client.post("/api/v1/calendars", json={"name": "Paris office", "timezone": "Europe/Paris",
                                                      "intervals": OFFICE_HOURS,
                                                      "holidays": [monday.date().isoformat()]},
                           headers=bearer(admin)).get_json()
    create_policy(client, admin, first_response_seconds=3600, calendar_id=calendar["id"])
    customer_writes(client, "p-hours", "Vous êtes ouverts ?", ts_ms=int(saturday.timestamp() * 1000))
    jobs_done()
    first = clock(only_conversation(client, agent), "first_response")
    # closed on Saturday, Sunday and the Monday holiday: one business hour is Tuesday 09:00 -> 10:00, Paris time
    expected = tuesday.replace(hour=10)
    assert when(first["due_at"]) == expected and first["state"] == "breached"
    assert when(first["warning_at"]) == tuesday.replace(hour=9, minute=48)
    assert first["calendar_seconds_left"] < 0 and first["business_seconds_left"] < 0
    future = create_policy(client, admin, name="Calendar time", position=-1, first_response_seconds=3600)
    customer_writes(client, "p-future", "from a fast clock", ts_ms=now_ms(+3600))
    jobs_done()
    items = client.get("/api/v1/conversations", headers=bearer(agent)).get_json()["items"]
    fast = next(c for c in items if c["last_message"]["text"] == "from a fast clock")
    started = when(clock(fast, "first_response")["started_at"])
    assert abs((started - datetime.now(timezone.utc)).total_seconds()) < 30  # capped at reception
    assert future["position"] == -1


def test_policy_change_re_evaluates_running_clocks_and_logs_it(client, world, token_for, jobs_done):
    admin, agent = token_for(world.admin), token_for(world.agent)
    policy = create_policy(client, admin, first_response_seconds=3600)
    customer_writes(client, "p-change", "Hello", ts_ms=now_ms(-5))
    jobs_done()
    conversation_id = only_conversation(client, agent)["id"]
    before = when(clock(fetch(client, agent, conversation_id), "first_response")["due_at"])
    response = client.patch(f"/api/v1/sla-policies/{policy['id']}", json={"first_response_seconds": 7200},
                            headers=bearer(admin))
    assert response.status_code == 200
    jobs_done()  # the running clocks are re-evaluated by a job, in batches
    after = clock(fetch(client, agent, conversation_id), "first_response")
    assert when(after["due_at"]) - before == timedelta(seconds=3600)
    assert any(e["cause"] == "policy:changed" for e in events(client, agent, conversation_id))
    assert client.delete(f"/api/v1/sla-policies/{policy['id']}", headers=bearer(admin)).status_code == 204
    jobs_done()
    assert fetch(client, agent, conversation_id)["sla"] == []
    assert events(client, agent, conversation_id)  # the log stays


def test_queue_sorts_and_filters_by_sla_due_at_risk_and_breached(client, world, token_for, jobs_done):
    admin = token_for(world.admin)
    create_policy(client, admin, name="Response", position=1, first_response_seconds=3600, warning_ratio=0.5)
    customer_writes(client, "psid-breached", "waited 2 h", now_ms(-7200))
    customer_writes(client, "psid-risk", "waited 40 min", now_ms(-2400))
    customer_writes(client, "psid-fresh", "just now", now_ms(-60))
    jobs_done()
    token = token_for(world.agent)

    def names(**query: Any) -> list[str]:
        page = client.get("/api/v1/conversations", query_string=query, headers=bearer(token)).get_json()
        return [c["last_message"]["text"] for c in page["items"]]

    assert names(sort="sla_due") == ["waited 2 h", "waited 40 min", "just now"]
    assert names(sla="breached") == ["waited 2 h"]
    assert names(sla="at_risk") == ["waited 40 min"]
    assert len(names(sla="due")) == 3
    first_page = client.get("/api/v1/conversations", query_string={"sort": "sla_due", "limit": 2},
                            headers=bearer(token)).get_json()
    second = client.get("/api/v1/conversations", query_string={"sort": "sla_due", "limit": 2,
                                                                "cursor": first_page["next_cursor"]},
                        headers=bearer(token)).get_json()
    assert [c["last_message"]["text"] for c in second["items"]] == ["just now"]


def test_a_new_policy_covers_conversations_already_open(client, world, token_for, jobs_done):
    customer_writes(client, "psid-before-policy", "I wrote before any policy", now_ms(-600))
    jobs_done()
    token = token_for(world.agent)
    assert only_conversation(client, token)["sla"] == []
    create_policy(client, token_for(world.admin), name="Late policy", position=1, first_response_seconds=3600)
    jobs_done()
    conversation = only_conversation(client, token)
    first = clock(conversation, "first_response")
    assert first["state"] == "running"
    assert when(first["due_at"]) - when(first["started_at"]) == timedelta(hours=1)


def test_policy_change_re_evaluates_in_batches_and_waits_for_a_busy_conversation(app, client, world, token_for,
                                                                                jobs_done, database_url):
    """The re-evaluation job works in batches of their own transactions; a conversation locked by another
    transaction during its batch (PostgreSQL: SKIP LOCKED) is re-evaluated in the final pass, not forgotten."""
    import threading

    from sqlalchemy import update

    from inbox.db import db
    from inbox.models import Conversation, SlaPolicy

    admin, agent = token_for(world.admin), token_for(world.agent)
    policy = create_policy(client, admin, first_response_seconds=3600)
    for n in range(5):
        customer_writes(client, f"p-batch-{n}", f"hello {n}", ts_ms=now_ms(-5))
    jobs_done()
    items = client.get("/api/v1/conversations", headers=bearer(agent)).get_json()["items"]
    before = {c["id"]: when(clock(c, "first_response")["due_at"]) for c in items}
    assert len(before) == 5
    with app.app_context():
        db.session.execute(update(SlaPolicy).where(SlaPolicy.id == policy["id"]).values(first_response_seconds=7200))
        db.session.commit()
    busy_id = min(before)
    holder_ready, release = threading.Event(), threading.Event()

    def hold_lock() -> None:  # another transaction working on one conversation meanwhile
        session = db.new_session()
        try:
            with session.begin():
                session.execute(select_for_update(busy_id))
                holder_ready.set()
                release.wait(10)
        finally:
            session.close()

    def select_for_update(conversation_id: int) -> Any:
        from sqlalchemy import select
        return select(Conversation.id).where(Conversation.id == conversation_id).with_for_update()

    postgres = database_url.startswith("postgresql")
    holder = threading.Thread(target=hold_lock)
    if postgres:  # SQLite has no row locks to skip
        holder.start()
        assert holder_ready.wait(10)
    result: list[int] = []
    with app.app_context():
        worker = threading.Thread(target=lambda: result.append(sla.refresh_running(batch_size=2)))
        worker.start()
        if postgres:
            time.sleep(0.5)
            assert worker.is_alive()  # the final pass waits for the busy conversation
            release.set()
            holder.join(10)
        worker.join(30)
    assert result == [5]
    for c in client.get("/api/v1/conversations", headers=bearer(agent)).get_json()["items"]:
        assert when(clock(c, "first_response")["due_at"]) - before[c["id"]] == timedelta(seconds=3600), c["id"]
