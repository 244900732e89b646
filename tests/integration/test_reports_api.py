"""Reports through the API on a known week (Mon 2026-11-02 to Fri 2026-11-06, Paris = UTC+1): customer messages
and native replies arrive through signed webhooks at fixed past times, assignments and status changes are made
through the API at fixed times; an SLA policy with Paris office hours covers one brand, the other has none.

History (UTC):
  A1 (Maison Lune, assigned to Agent Mon 08:10, team Community): in Mon 08:00, reply 08:30, in 09:00 + 09:05,
     reply 09:10, resolved 10:00.                       FR 1800/1800 met, NR 600/600 met, RES 7200/7200 met
  A2 (Maison Lune, assigned to Agent2 Mon 16:40): in Mon 16:30 (17:30 Paris), reply Tue 08:45, resolved Tue 09:00.
     FR 4500 business / 58500 calendar, breached Tue 08:30; RES 5400 / 59400 met
  A3 (Maison Lune, unassigned): in Tue 23:30 (Wed 00:30 Paris), reply Wed 08:15, pending Wed 08:20.
     FR 900 / 31500 met; RES still running, breached Fri 14:00 (24 business hours)
  B1 (Vélo Vert, no policy, assigned to Outsider Wed 10:10): in Wed 10:00, reply 10:20, resolved Thu 10:00.
     FR 1200 / 1200, RES 86400 / 86400 (calendar time, no attainment)
SQLite, and PostgreSQL with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

from inbox.demo.fake_meta import messaging_echo, messenger_message_payload, page_entry, page_payload
from inbox.services import sla
from tests.factories import OTHER_PAGE_ID, PAGE_ID
from tests.helpers import bearer, post_meta

UTC = timezone.utc
OFFICE_HOURS = [{"weekday": day, "start": "09:00", "end": "18:00"} for day in range(5)]
WEEK = {"from": "2026-11-02", "to": "2026-11-06", "timezone": "Europe/Paris"}


@pytest.fixture(autouse=True)
def _fresh_policies() -> Iterator[None]:
    sla.invalidate_policy_cache()
    yield
    sla.invalidate_policy_cache()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def customer(client: Any, page_id: str, psid: str, when: str) -> None:
    assert post_meta(client, messenger_message_payload(page_id, psid, f"hello at {when}", ts_ms=ms(when))) \
        .status_code == 200


def native_reply(client: Any, page_id: str, psid: str, when: str) -> None:
    echo = messaging_echo(page_id, psid, f"answered at {when}", ts_ms=ms(when), app_id="999")
    assert post_meta(client, page_payload(page_entry(page_id, messaging=[echo]))).status_code == 200


class History:
    def __init__(self, client: Any, admin: str, monkeypatch: pytest.MonkeyPatch, jobs_done: Any) -> None:
        self.client, self.admin, self.monkeypatch, self.jobs_done = client, admin, monkeypatch, jobs_done

    def conversation_of(self, text: str) -> int:
        items = self.client.get("/api/v1/conversations?limit=100", headers=bearer(self.admin)).get_json()["items"]
        (found,) = [c["id"] for c in items if text in (c["last_message"]["text"] or "")]
        return found

    def change(self, conversation_id: int, when: str, **changes: Any) -> None:
        self.jobs_done()
        self.monkeypatch.setattr("inbox.services.conversations.utcnow", lambda: at(when))
        response = self.client.patch(f"/api/v1/conversations/{conversation_id}", json=changes,
                                     headers=bearer(self.admin))
        self.monkeypatch.undo()
        assert response.status_code == 200, response.get_json()


@pytest.fixture
def week(client, world, token_for, monkeypatch, jobs_done) -> Any:
    admin = token_for(world.admin)
    calendar = client.post("/api/v1/calendars", headers=bearer(admin), json={
        "name": "Paris office", "timezone": "Europe/Paris", "intervals": OFFICE_HOURS}).get_json()
    policy = client.post("/api/v1/sla-policies", headers=bearer(admin), json={
        "name": "Maison Lune", "calendar_id": calendar["id"], "first_response_seconds": 3600,
        "next_response_seconds": 1800, "resolution_seconds": 86400, "conditions": {"brand_ids": [world.brand_id]}})
    assert policy.status_code == 201, policy.get_json()
    history = History(client, admin, monkeypatch, jobs_done)
    ids = world.agent_ids

    customer(client, PAGE_ID, "a1", "2026-11-02T08:00")
    history.jobs_done()
    a1 = history.conversation_of("hello at 2026-11-02T08:00")
    history.change(a1, "2026-11-02T08:10:00", assignee_id=ids[world.agent], team_id=world.team_id)
    native_reply(client, PAGE_ID, "a1", "2026-11-02T08:30")
    customer(client, PAGE_ID, "a1", "2026-11-02T09:00")
    customer(client, PAGE_ID, "a1", "2026-11-02T09:05")
    native_reply(client, PAGE_ID, "a1", "2026-11-02T09:10")
    history.change(a1, "2026-11-02T10:00:00", status="resolved")

    customer(client, PAGE_ID, "a2", "2026-11-02T16:30")
    history.jobs_done()
    a2 = history.conversation_of("hello at 2026-11-02T16:30")
    history.change(a2, "2026-11-02T16:40:00", assignee_id=ids[world.agent2])
    native_reply(client, PAGE_ID, "a2", "2026-11-03T08:45")
    history.change(a2, "2026-11-03T09:00:00", status="resolved")

    customer(client, PAGE_ID, "a3", "2026-11-03T23:30")
    native_reply(client, PAGE_ID, "a3", "2026-11-04T08:15")
    history.jobs_done()
    a3 = history.conversation_of("answered at 2026-11-04T08:15")
    history.change(a3, "2026-11-04T08:20:00", status="pending")

    customer(client, OTHER_PAGE_ID, "b1", "2026-11-04T10:00")
    history.jobs_done()
    b1 = history.conversation_of("hello at 2026-11-04T10:00")
    history.change(b1, "2026-11-04T10:10:00", assignee_id=ids[world.outsider])
    native_reply(client, OTHER_PAGE_ID, "b1", "2026-11-04T10:20")
    history.change(b1, "2026-11-05T10:00:00", status="resolved")
    history.jobs_done()
    return {"a1": a1, "a2": a2, "a3": a3, "b1": b1}


def report(client: Any, token: str, name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/reports/{name}", query_string={**WEEK, **params}, headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def figures(volume_in: int, volume_out: int, opened: int, resolved: int, fr: Any = None, nr: Any = None,
            res: Any = None) -> dict[str, Any]:
    """The expected row; each metric is (count, business median, business p90, calendar median, calendar p90,
    met, breached, attainment)."""
    row: dict[str, Any] = {"volume_in": volume_in, "volume_out": volume_out, "conversations_opened": opened,
                           "conversations_resolved": resolved}
    for metric, values in (("first_response", fr), ("next_response", nr), ("resolution", res)):
        count, b_median, b_p90, c_median, c_p90, met, breached, share = values or (0, None, None, None, None, 0, 0,
                                                                                   None)
        row.update({f"{metric}_count": count, f"{metric}_business_median": b_median,
                    f"{metric}_business_p90": b_p90, f"{metric}_calendar_median": c_median,
                    f"{metric}_calendar_p90": c_p90, f"{metric}_met": met, f"{metric}_breached": breached,
                    f"{metric}_attainment": share})
    return row


def row_figures(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in ("key", "label")}


# ---------------------------------------------------------------- overview
def test_overview_by_brand_checks_every_figure(client, world, token_for, week):
    body = report(client, token_for(world.admin), "overview", group_by="brand")
    assert [(row["key"], row["label"]) for row in body["rows"]] == [(world.brand_id, "Maison Lune"),
                                                                    (world.other_brand_id, "Vélo Vert")]
    maison, velo = body["rows"]
    assert row_figures(maison) == figures(
        5, 4, 3, 2,
        fr=(3, 1800.0, 3960.0, 31500.0, 53100.0, 2, 1, 0.6667),   # [900, 1800, 4500] / [1800, 31500, 58500]
        nr=(1, 600.0, 600.0, 600.0, 600.0, 1, 0, 1.0),
        res=(2, 6300.0, 7020.0, 33300.0, 54180.0, 2, 1, 0.6667))  # [5400, 7200] / [7200, 59400]; A3 breached
    assert row_figures(velo) == figures(1, 1, 1, 1, fr=(1, 1200.0, 1200.0, 1200.0, 1200.0, 0, 0, None),
                                        res=(1, 86400.0, 86400.0, 86400.0, 86400.0, 0, 0, None))
    assert body["totals"] == figures(
        6, 5, 4, 3,
        fr=(4, 1500.0, 3690.0, 16650.0, 50400.0, 2, 1, 0.6667),   # [900, 1200, 1800, 4500] / [1200, 1800, 31500, 58500]
        nr=(1, 600.0, 600.0, 600.0, 600.0, 1, 0, 1.0),
        res=(3, 7200.0, 70560.0, 59400.0, 81000.0, 2, 1, 0.6667))
    assert body["columns"][:2] == ["key", "label"] and set(body["columns"][2:]) == set(body["totals"])
    assert (body["from"], body["to"], body["timezone"], body["group_by"]) == ("2026-11-02", "2026-11-06",
                                                                              "Europe/Paris", "brand")


def test_overview_by_agent_is_by_assignee(client, world, token_for, week):
    body = report(client, token_for(world.admin), "overview", group_by="agent")
    ids = world.agent_ids
    assert [(row["key"], row["label"]) for row in body["rows"]] == [
        (ids[world.agent], "Agent"), (ids[world.agent2], "Agent2"), (ids[world.outsider], "Outsider"),
        (None, "(unassigned)")]
    agent, agent2, outsider, unassigned = (row_figures(row) for row in body["rows"])
    assert agent == figures(3, 2, 1, 1, fr=(1, 1800.0, 1800.0, 1800.0, 1800.0, 1, 0, 1.0),
                            nr=(1, 600.0, 600.0, 600.0, 600.0, 1, 0, 1.0),
                            res=(1, 7200.0, 7200.0, 7200.0, 7200.0, 1, 0, 1.0))
    assert agent2 == figures(1, 1, 1, 1, fr=(1, 4500.0, 4500.0, 58500.0, 58500.0, 0, 1, 0.0),
                             res=(1, 5400.0, 5400.0, 59400.0, 59400.0, 1, 0, 1.0))
    assert outsider == figures(1, 1, 1, 1, fr=(1, 1200.0, 1200.0, 1200.0, 1200.0, 0, 0, None),
                               res=(1, 86400.0, 86400.0, 86400.0, 86400.0, 0, 0, None))
    assert unassigned == figures(1, 1, 1, 0, fr=(1, 900.0, 900.0, 31500.0, 31500.0, 1, 0, 1.0),
                                 res=(0, None, None, None, None, 0, 1, 0.0))


def test_overview_by_day_uses_local_days(client, world, token_for, week):
    body = report(client, token_for(world.admin), "overview", group_by="day")
    assert [row["key"] for row in body["rows"]] == ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05",
                                                    "2026-11-06"]
    monday, tuesday, wednesday, thursday, friday = (row_figures(row) for row in body["rows"])
    assert monday == figures(4, 2, 2, 1, fr=(1, 1800.0, 1800.0, 1800.0, 1800.0, 1, 0, 1.0),
                             nr=(1, 600.0, 600.0, 600.0, 600.0, 1, 0, 1.0),
                             res=(1, 7200.0, 7200.0, 7200.0, 7200.0, 1, 0, 1.0))
    assert tuesday == figures(0, 1, 0, 1, fr=(1, 4500.0, 4500.0, 58500.0, 58500.0, 0, 1, 0.0),
                              res=(1, 5400.0, 5400.0, 59400.0, 59400.0, 1, 0, 1.0))
    # A3's message at Tue 23:30 UTC is Wednesday 00:30 in Paris
    assert wednesday == figures(2, 2, 2, 0, fr=(2, 1050.0, 1170.0, 16350.0, 28470.0, 1, 0, 1.0))
    assert thursday == figures(0, 0, 0, 1, res=(1, 86400.0, 86400.0, 86400.0, 86400.0, 0, 0, None))
    assert friday == figures(0, 0, 0, 0, res=(0, None, None, None, None, 0, 1, 0.0))
    in_utc = report(client, token_for(world.admin), "overview", group_by="day", timezone="UTC")
    assert [row["volume_in"] for row in in_utc["rows"]] == [4, 1, 1, 0, 0]


def test_overview_by_hour_and_team_and_filters(client, world, token_for, week):
    admin = token_for(world.admin)
    hours = report(client, admin, "overview", group_by="hour", to="2026-11-02")["rows"]
    assert len(hours) == 24 and hours[9]["key"] == "2026-11-02T09:00+01:00"
    assert {row["key"]: row["volume_in"] for row in hours if row["volume_in"]} == {
        "2026-11-02T09:00+01:00": 1, "2026-11-02T10:00+01:00": 2, "2026-11-02T17:00+01:00": 1}
    teams = report(client, admin, "overview", group_by="team")["rows"]
    assert [(row["label"], row["volume_in"], row["volume_out"]) for row in teams] == [
        ("Community", 3, 2), ("(no team)", 3, 3)]
    other_channel = report(client, admin, "overview", group_by="brand", channel_id=world.other_page_channel_id)
    assert [(row["label"], row["volume_in"]) for row in other_channel["rows"]] == [("Vélo Vert", 1)]
    only_brand = report(client, admin, "overview", group_by="day", brand_id=world.brand_id)
    assert only_brand["totals"]["volume_in"] == 5 and only_brand["totals"]["first_response_count"] == 3
    before = report(client, admin, "overview", group_by="brand", **{"from": "2026-10-01", "to": "2026-10-31"})
    assert before["rows"] == [] and before["totals"]["volume_in"] == 0


# ---------------------------------------------------------------- backlog and busiest hours
def test_backlog_at_the_end_of_each_local_day_and_hour(client, world, token_for, week):
    body = report(client, token_for(world.admin), "backlog")
    states = ("unresolved", "open", "pending", "snoozed", "waiting", "unassigned")
    assert body["group_by"] == "day"
    assert [(row["key"], row["at"]) for row in body["rows"]][:2] == [
        ("2026-11-02", "2026-11-02T23:00:00+00:00"), ("2026-11-03", "2026-11-03T23:00:00+00:00")]
    assert [tuple(row[s] for s in states) for row in body["rows"]] == [
        (1, 1, 0, 0, 1, 0),  # A2 waiting, held by Agent2
        (0, 0, 0, 0, 0, 0),  # A3's message comes 30 minutes after this point
        (2, 1, 1, 0, 0, 1),  # B1 open and answered; A3 pending, unassigned
        (1, 0, 1, 0, 0, 1),
        (1, 0, 1, 0, 0, 1)]
    hours = {row["key"]: row for row in report(client, token_for(world.admin), "backlog", group_by="hour",
                                               to="2026-11-02")["rows"]}
    assert len(hours) == 24
    nine = hours["2026-11-02T09:00+01:00"]  # at 10:00 Paris: A1's 09:00 UTC message arrived on the point
    assert (nine["at"], nine["open"], nine["waiting"], nine["unassigned"]) == ("2026-11-02T09:00:00+00:00", 1, 1, 0)
    assert [hours["2026-11-02T07:00+01:00"][s] for s in states] == [0, 0, 0, 0, 0, 0]
    # at 09:00 Paris A1's first message (08:00 UTC) is on the point: counted, not yet assigned (08:10)
    assert [hours["2026-11-02T08:00+01:00"][s] for s in states] == [1, 1, 0, 0, 1, 1]
    assert [hours["2026-11-02T09:00+01:00"][s] for s in states] == [1, 1, 0, 0, 1, 0]
    assert [hours["2026-11-02T11:00+01:00"][s] for s in states] == [0, 0, 0, 0, 0, 0]


def test_busiest_hours_by_local_weekday_and_hour(client, world, token_for, week):
    body = report(client, token_for(world.admin), "busiest_hours")
    assert len(body["rows"]) == 168 and body["group_by"] == "weekday_hour"
    busy = {(row["weekday"], row["hour"]): row["volume_in"] for row in body["rows"] if row["volume_in"]}
    assert busy == {(0, 9): 1, (0, 10): 2, (0, 17): 1, (2, 0): 1, (2, 11): 1}
    assert body["rows"][9]["label"] == "Monday 09:00"


# ---------------------------------------------------------------- CSV
def test_csv_export_has_the_json_figures(client, world, token_for, week):
    admin = token_for(world.admin)
    for name, group_by in (("overview", "agent"), ("overview", "day"), ("backlog", "day"),
                           ("busiest_hours", None)):
        params = {**WEEK, **({"group_by": group_by} if group_by else {})}
        body = client.get(f"/api/v1/reports/{name}", query_string=params, headers=bearer(admin)).get_json()
        response = client.get(f"/api/v1/reports/{name}", query_string={**params, "format": "csv"},
                              headers=bearer(admin))
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith("attachment; filename=")
        raw = response.get_data()
        assert raw.startswith("\ufeff".encode())
        table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert table[0] == body["columns"]
        expected = [["" if row[c] is None else str(row[c]) for c in body["columns"]] for row in body["rows"]]
        assert table[1:] == expected


# ---------------------------------------------------------------- access and validation
def test_access_by_role(client, world, token_for, week):
    supervisor = token_for(world.supervisor)
    seen = report(client, supervisor, "overview", group_by="brand")
    assert [row["label"] for row in seen["rows"]] == ["Maison Lune"] and seen["totals"]["volume_in"] == 5
    assert sum(row["volume_in"] for row in report(client, supervisor, "busiest_hours")["rows"]) == 5
    other = client.get("/api/v1/reports/overview", query_string={**WEEK, "brand_id": world.other_brand_id},
                       headers=bearer(supervisor))
    assert other.status_code == 403
    for agent in (world.agent, world.outsider):
        for name in ("overview", "backlog", "busiest_hours"):
            refused = client.get(f"/api/v1/reports/{name}", query_string=WEEK, headers=bearer(token_for(agent)))
            assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    assert client.get("/api/v1/reports/overview", query_string=WEEK).status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-11-06", "to": "2026-11-02"}, "to"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"from": "2025-11-01", "to": "2026-11-02"}, "to"),
    ({"from": "2026-13-01"}, "from"),
    ({"group_by": "weekday"}, "group_by"),
    ({"format": "xlsx"}, "format"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_queries_are_422_naming_the_field(client, world, token_for, params, field):
    response = client.get("/api/v1/reports/overview", query_string={**WEEK, **params},
                          headers=bearer(token_for(world.admin)))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    missing = client.get("/api/v1/reports/backlog", query_string={"to": "2026-11-02"},
                         headers=bearer(token_for(world.admin)))
    assert missing.status_code == 422 and "from" in missing.get_json()["error"]["fields"]
    assert client.get("/api/v1/reports/nonsense", query_string=WEEK,
                      headers=bearer(token_for(world.admin))).status_code == 404


def test_a_full_year_is_accepted(client, world, token_for):
    response = client.get("/api/v1/reports/overview", query_string={
        "from": "2025-11-02", "to": "2026-11-02", "timezone": "America/New_York", "group_by": "day"},
        headers=bearer(token_for(world.admin)))
    assert response.status_code == 200 and len(response.get_json()["rows"]) == 366
