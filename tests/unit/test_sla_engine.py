"""SLA clocks replayed from a conversation's history: what agents and supervisors see on the clocks."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.sla.calendar import BusinessCalendar, CalendarTime, Interval
from inbox.sla.engine import (
    ClockState,
    Inbound,
    Now,
    PublicReply,
    SlaTargets,
    StatusChange,
    elapsed,
    evaluate,
    next_deadline,
)

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
HOUR = 3600
ALWAYS = CalendarTime()
OFFICE = BusinessCalendar("Europe/Paris", [Interval(day, time(9), time(18)) for day in range(5)], set())
ONE_HOUR_EACH = SlaTargets(
    first_response_seconds=HOUR, next_response_seconds=HOUR, resolution_seconds=8 * HOUR, warning_ratio=0.8
)
PAUSING = SlaTargets(
    first_response_seconds=HOUR,
    next_response_seconds=HOUR,
    resolution_seconds=8 * HOUR,
    pause_on=frozenset({"pending", "snoozed"}),
)


def at(hour: int, minute: int = 0, day: int = 24) -> datetime:
    """Monday 24 November 2025 (a working day), UTC."""
    return datetime(2025, 11, day, hour, minute, tzinfo=UTC)


def clock(result, metric: str, cycle: int = 1, turn: int = 1) -> ClockState:
    (found,) = [c for c in result.clocks if (c.metric, c.cycle, c.turn) == (metric, cycle, turn)]
    return found


def log(result, metric: str, cycle: int = 1, turn: int = 1) -> list[tuple[str, datetime, str]]:
    return [(e.kind, e.at, e.cause) for e in result.events if (e.metric, e.cycle, e.turn) == (metric, cycle, turn)]


# --- first response -------------------------------------------------------------------------------------------


def test_first_response_met_by_a_human_public_reply():
    result = evaluate(ONE_HOUR_EACH, ALWAYS, [Inbound(at(10), 1), PublicReply(at(10, 30), 2, by_human=True)])
    first = clock(result, "first_response")
    assert (first.state, first.stopped_at, first.elapsed_seconds) == ("met", at(10, 30), 1800)
    assert first.due_at == at(11) and first.stop_cause == "message:2" and first.cause_message_id == 1
    assert log(result, "first_response") == [("started", at(10), "message:1"), ("met", at(10, 30), "message:2")]


def test_first_response_breached_then_answered_late():
    result = evaluate(ONE_HOUR_EACH, ALWAYS, [Inbound(at(10), 1), PublicReply(at(11, 30), 2, by_human=True)])
    first = clock(result, "first_response")
    assert (first.state, first.due_at, first.stopped_at) == ("breached", at(11), at(11, 30))
    assert log(result, "first_response") == [
        ("started", at(10), "message:1"),
        ("warned", at(10, 48), "timer"),
        ("breached", at(11), "timer"),
        ("stopped", at(11, 30), "message:2"),
    ]


def test_a_reply_exactly_at_the_due_time_is_on_time():
    result = evaluate(ONE_HOUR_EACH, ALWAYS, [Inbound(at(10), 1), PublicReply(at(11), 2, by_human=True)])
    assert clock(result, "first_response").state == "met"
    assert [kind for kind, _, _ in log(result, "first_response")] == ["started", "warned", "met"]


def test_bot_replies_do_not_stop_the_first_response_clock():
    history = [Inbound(at(10), 1), PublicReply(at(10, 1), 2, by_human=False), Now(at(11, 30))]
    assert clock(evaluate(ONE_HOUR_EACH, ALWAYS, history), "first_response").state == "breached"
    history[-1] = PublicReply(at(10, 40), 3, by_human=True)
    first = clock(evaluate(ONE_HOUR_EACH, ALWAYS, history), "first_response")
    assert (first.state, first.stop_cause) == ("met", "message:3")


def test_first_response_counts_from_the_first_inbound_only():
    history = [Inbound(at(10), 1), Inbound(at(10, 20), 2), PublicReply(at(10, 50), 3, by_human=True)]
    result = evaluate(ONE_HOUR_EACH, ALWAYS, history)
    assert clock(result, "first_response").elapsed_seconds == 50 * 60
    assert result.for_metric("next_response") == ()


def test_ingestion_delay_counts_against_us():
    history = [StatusChange(at(10, 5), "pending"), Inbound(at(10), 1), Now(at(10, 30))]
    first = clock(evaluate(PAUSING, ALWAYS, history), "first_response")
    assert (first.started_at, first.state, first.elapsed_seconds) == (at(10), "running", 1800)


# --- warnings, deadlines --------------------------------------------------------------------------------------


def test_warning_at_80_percent_then_breach_and_timer_deadlines():
    targets = SlaTargets(first_response_seconds=HOUR, warning_ratio=0.8)
    history = [Inbound(at(10), 1)]
    before = evaluate(targets, ALWAYS, [*history, Now(at(10, 47))])
    assert clock(before, "first_response").state == "running"
    assert next_deadline(before.clocks) == at(10, 48)

    warned = evaluate(targets, ALWAYS, [*history, Now(at(10, 48))])
    assert clock(warned, "first_response").state == "warning"
    assert warned.events[-1].kind == "warned" and warned.events[-1].at == at(10, 48)
    assert next_deadline(warned.clocks) == at(11)

    breached = evaluate(targets, ALWAYS, [*history, Now(at(11))])
    assert clock(breached, "first_response").state == "breached"
    assert next_deadline(breached.clocks) is None


def test_warning_ratio_one_means_no_warning():
    targets = SlaTargets(first_response_seconds=HOUR, warning_ratio=1.0)
    result = evaluate(targets, ALWAYS, [Inbound(at(10), 1), Now(at(12))])
    assert [e.kind for e in result.events] == ["started", "breached"]


def test_next_deadline_is_the_earliest_among_running_clocks():
    history = [Inbound(at(10), 1), Now(at(10, 10))]
    result = evaluate(ONE_HOUR_EACH, ALWAYS, history)
    assert next_deadline(result.clocks) == at(10, 48)  # first response warning, before resolution's
    paused = evaluate(PAUSING, ALWAYS, [Inbound(at(10), 1), StatusChange(at(10, 5), "pending"), Now(at(10, 10))])
    assert next_deadline(paused.clocks) is None


# --- business hours -------------------------------------------------------------------------------------------


def test_friday_evening_message_due_monday_morning_in_business_hours():
    friday_1730 = datetime(2025, 11, 21, 17, 30, tzinfo=PARIS)
    result = evaluate(SlaTargets(first_response_seconds=HOUR), OFFICE, [Inbound(friday_1730, 1), Now(friday_1730)])
    first = clock(result, "first_response")
    assert first.due_at == datetime(2025, 11, 24, 9, 30, tzinfo=PARIS)
    assert first.warning_at == datetime(2025, 11, 24, 9, 18, tzinfo=PARIS)


def test_elapsed_business_time_ignores_the_weekend():
    friday_1730 = datetime(2025, 11, 21, 17, 30, tzinfo=PARIS)
    monday_0920 = datetime(2025, 11, 24, 9, 20, tzinfo=PARIS)
    history = [Inbound(friday_1730, 1), PublicReply(monday_0920, 2, by_human=True)]
    first = clock(evaluate(SlaTargets(first_response_seconds=HOUR), OFFICE, history), "first_response")
    assert (first.state, first.elapsed_seconds) == ("met", 50 * 60)


# --- next response --------------------------------------------------------------------------------------------


def test_next_response_one_clock_per_customer_turn_from_the_oldest_unanswered():
    history = [
        Inbound(at(10), 1),
        PublicReply(at(10, 10), 2, by_human=True),
        Inbound(at(11), 3),
        Inbound(at(11, 20), 4),
        PublicReply(at(11, 25), 5, by_human=False),
        PublicReply(at(11, 40), 6, by_human=True),
        Inbound(at(12), 7),
        Now(at(12, 30)),
    ]
    result = evaluate(ONE_HOUR_EACH, ALWAYS, history)
    first_turn, second_turn = result.for_metric("next_response")
    assert (first_turn.turn, first_turn.cause_message_id, first_turn.started_at) == (1, 3, at(11))
    assert (first_turn.state, first_turn.elapsed_seconds, first_turn.stop_cause) == ("met", 40 * 60, "message:6")
    assert (second_turn.turn, second_turn.cause_message_id, second_turn.state) == (2, 7, "running")
    assert second_turn.due_at == at(13)


def test_next_response_breach_is_per_turn():
    history = [
        Inbound(at(10), 1),
        PublicReply(at(10, 10), 2, by_human=True),
        Inbound(at(11), 3),
        PublicReply(at(12, 30), 4, by_human=True),
        Inbound(at(13), 5),
        PublicReply(at(13, 5), 6, by_human=True),
    ]
    result = evaluate(ONE_HOUR_EACH, ALWAYS, history)
    assert [c.state for c in result.for_metric("next_response")] == ["breached", "met"]


# --- pauses ---------------------------------------------------------------------------------------------------


def test_pending_pauses_and_shifts_the_due_time():
    history = [Inbound(at(10), 1), StatusChange(at(10, 20), "pending"), StatusChange(at(10, 50), "open"), Now(at(11))]
    first = clock(evaluate(PAUSING, ALWAYS, history), "first_response")
    assert (first.state, first.due_at, first.paused_seconds, first.elapsed_seconds) == (
        "running",
        at(11, 30),
        1800,
        1800,
    )
    assert first.paused_intervals == ((at(10, 20), at(10, 50)),)
    not_pausing = clock(evaluate(ONE_HOUR_EACH, ALWAYS, history), "first_response")
    assert (not_pausing.due_at, not_pausing.paused_seconds) == (at(11), 0)


def test_pause_log_and_paused_state():
    history = [Inbound(at(10), 1), StatusChange(at(10, 20), "snoozed"), Now(at(15))]
    result = evaluate(PAUSING, ALWAYS, history)
    first = clock(result, "first_response")
    assert (first.state, first.due_at, first.elapsed_seconds) == ("paused", None, 1200)
    assert first.paused_seconds == 4 * HOUR + 2400
    assert log(result, "first_response") == [("started", at(10), "message:1"), ("paused", at(10, 20), "status:snoozed")]


def test_a_new_inbound_reopens_and_resumes():
    history = [Inbound(at(10), 1), StatusChange(at(10, 20), "pending"), Inbound(at(10, 40), 2), Now(at(10, 40))]
    result = evaluate(PAUSING, ALWAYS, history)
    first = clock(result, "first_response")
    assert (first.state, first.due_at) == ("running", at(11, 20))
    assert log(result, "first_response")[-1] == ("resumed", at(10, 40), "message:2")


def test_only_the_statuses_and_metrics_the_policy_names_pause():
    targets = SlaTargets(
        first_response_seconds=HOUR,
        resolution_seconds=8 * HOUR,
        pause_on=frozenset({"pending"}),
        pause_metrics=frozenset({"resolution"}),
    )
    history = [
        Inbound(at(10), 1),
        StatusChange(at(10, 10), "pending"),
        StatusChange(at(10, 40), "snoozed"),
        Now(at(11)),
    ]
    result = evaluate(targets, ALWAYS, history)
    assert clock(result, "first_response").state == "breached"
    resolution = clock(result, "resolution")
    assert (resolution.paused_intervals, resolution.paused_seconds) == (((at(10, 10), at(10, 40)),), 1800)


def test_a_pause_outside_business_hours_does_not_move_the_due_time():
    friday_1730 = datetime(2025, 11, 21, 17, 30, tzinfo=PARIS)
    history = [
        Inbound(friday_1730, 1),
        StatusChange(datetime(2025, 11, 21, 19, tzinfo=PARIS), "pending"),
        StatusChange(datetime(2025, 11, 23, 12, tzinfo=PARIS), "open"),
        Now(datetime(2025, 11, 23, 12, tzinfo=PARIS)),
    ]
    first = clock(evaluate(PAUSING, OFFICE, history), "first_response")
    assert (first.due_at, first.paused_seconds) == (datetime(2025, 11, 24, 9, 30, tzinfo=PARIS), 0)


# --- resolution and cycles ------------------------------------------------------------------------------------


def test_reopening_after_resolution_starts_cycle_two():
    history = [
        Inbound(at(10), 1),
        PublicReply(at(10, 10), 2, by_human=True),
        StatusChange(at(10, 30), "resolved"),
        PublicReply(at(11), 3, by_human=True),  # a follow-up on a resolved conversation belongs to no cycle
        Inbound(at(12), 4),
        Now(at(12, 30)),
    ]
    result = evaluate(ONE_HOUR_EACH, ALWAYS, history)
    resolution_1 = clock(result, "resolution", cycle=1)
    assert (resolution_1.state, resolution_1.stopped_at) == ("met", at(10, 30))
    assert resolution_1.stop_cause == "status:resolved"
    first_2 = clock(result, "first_response", cycle=2)
    assert (first_2.started_at, first_2.state, first_2.cause_message_id) == (at(12), "running", 4)
    assert clock(result, "resolution", cycle=2).started_at == at(12)
    assert result.for_metric("next_response") == ()


def test_resolving_without_reply_stops_the_response_clocks():
    history = [Inbound(at(10), 1), StatusChange(at(10, 5), "resolved"), Now(at(14))]
    first = clock(evaluate(ONE_HOUR_EACH, ALWAYS, history), "first_response")
    assert (first.state, first.stop_cause) == ("met", "status:resolved")


def test_resolution_breach():
    history = [Inbound(at(10), 1), PublicReply(at(10, 5), 2, by_human=True), StatusChange(at(19), "resolved")]
    resolution = clock(evaluate(ONE_HOUR_EACH, ALWAYS, history), "resolution")
    assert (resolution.state, resolution.due_at, resolution.stopped_at) == ("breached", at(18), at(19))


def test_manual_reopen_starts_no_cycle():
    history = [Inbound(at(10), 1), StatusChange(at(10, 5), "resolved"), StatusChange(at(11), "open"), Now(at(15))]
    result = evaluate(ONE_HOUR_EACH, ALWAYS, history)
    assert {c.cycle for c in result.clocks} == {1}
    assert next_deadline(result.clocks) is None


def test_untracked_metrics_have_no_clock():
    result = evaluate(SlaTargets(resolution_seconds=HOUR), ALWAYS, [Inbound(at(10), 1), Now(at(10))])
    assert [c.metric for c in result.clocks] == ["resolution"]


# --- reports and validation -----------------------------------------------------------------------------------


def test_elapsed_for_reports_excludes_pauses():
    pauses = [(at(10, 30), at(11)), (at(10, 45), at(11, 15)), (at(13), None)]
    assert elapsed(ALWAYS, at(10), at(14), pauses) == (2.25 * HOUR, 2.25 * HOUR)
    friday_17 = datetime(2025, 11, 21, 17, tzinfo=PARIS)
    monday_10 = datetime(2025, 11, 24, 10, tzinfo=PARIS)
    assert elapsed(OFFICE, friday_17, monday_10) == (2 * HOUR, 65 * HOUR)
    assert elapsed(ALWAYS, at(11), at(10)) == (0.0, 0.0)


def test_invalid_input_is_refused():
    with pytest.raises(ValueError):
        evaluate(ONE_HOUR_EACH, ALWAYS, [Inbound(datetime(2025, 11, 24, 10), 1)])
    with pytest.raises(ValueError):
        StatusChange(at(10), "closed")
    with pytest.raises(ValueError):
        SlaTargets(first_response_seconds=0)
    with pytest.raises(ValueError):
        SlaTargets(warning_ratio=1.5)
    with pytest.raises(ValueError):
        SlaTargets(pause_on=frozenset({"open"}))


def test_empty_history():
    result = evaluate(ONE_HOUR_EACH, ALWAYS, [])
    assert (result.clocks, result.events, result.as_of) == ((), (), None)


# --- properties -----------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
OVERNIGHT = BusinessCalendar(
    "Europe/Paris", [Interval(day, time(22), time(6)) for day in range(5)] + [Interval(2, time(9), time(12))], set()
)
START = datetime(2025, 3, 27, 8, tzinfo=UTC)  # the Paris spring-forward weekend is inside the range


@st.composite
def histories(draw) -> list:
    events, moment, message_id = [], START, 0
    for _ in range(draw(st.integers(1, 14))):
        moment += timedelta(seconds=draw(st.integers(0, 12 * HOUR)))
        message_id += 1
        kind = draw(st.sampled_from(["inbound", "inbound", "human", "bot", "status"]))
        if kind == "inbound":
            events.append(Inbound(moment, message_id))
        elif kind in ("human", "bot"):
            events.append(PublicReply(moment, message_id, by_human=kind == "human"))
        else:
            events.append(StatusChange(moment, draw(st.sampled_from(["open", "pending", "snoozed", "resolved"]))))
    return events


targets_strategy = st.builds(
    SlaTargets,
    first_response_seconds=st.sampled_from([None, 600, HOUR, 4 * HOUR]),
    next_response_seconds=st.sampled_from([None, 1800, 2 * HOUR]),
    resolution_seconds=st.sampled_from([None, 8 * HOUR, 24 * HOUR]),
    warning_ratio=st.sampled_from([0.5, 0.8, 1.0]),
    pause_on=st.sampled_from([frozenset(), frozenset({"pending"}), frozenset({"pending", "snoozed"})]),
)
calendars = st.sampled_from([ALWAYS, OFFICE, OVERNIGHT])


@PROPERTY_SETTINGS
@given(targets_strategy, calendars, histories(), st.integers(0, 3 * 86400))
def test_clock_invariants(targets, calendar, history, extra):
    now = history[-1].at + timedelta(seconds=extra)
    result = evaluate(targets, calendar, [*history, Now(now)])
    assert [e.at for e in result.events] == sorted(e.at for e in result.events)
    for state in result.clocks:
        stop = state.stopped_at or now
        business, _ = elapsed(calendar, state.started_at, stop, state.paused_intervals)
        assert state.elapsed_seconds == pytest.approx(business, abs=1e-5)
        if state.state == "met":
            assert state.elapsed_seconds <= state.target_seconds + 1e-6
        if state.state == "breached":
            assert state.elapsed_seconds >= state.target_seconds - 1e-6
        if state.state in ("running", "warning"):
            assert state.elapsed_seconds < state.target_seconds
            # the due time moved later by exactly the paused business time
            assert calendar.business_seconds_between(state.started_at, state.due_at) == pytest.approx(
                state.target_seconds + state.paused_seconds, abs=1e-5
            )
        key = (state.metric, state.cycle, state.turn)
        kinds = [e.kind for e in result.events if (e.metric, e.cycle, e.turn) == key]
        assert kinds[0] == "started"
        assert kinds.count("breached") == (state.state == "breached")
        assert ("met" in kinds or "stopped" in kinds) == (state.stopped_at is not None)


@PROPERTY_SETTINGS
@given(targets_strategy, calendars, histories(), st.integers(0, 2 * 86400), st.integers(0, 2 * 86400))
def test_timer_evaluations_only_append_and_always_progress(targets, calendar, history, first, second):
    earlier = history[-1].at + timedelta(seconds=first)
    later = earlier + timedelta(seconds=second)
    before = evaluate(targets, calendar, [*history, Now(earlier)])
    after = evaluate(targets, calendar, [*history, Now(later)])
    assert after.events[: len(before.events)] == before.events
    deadline = next_deadline(before.clocks)
    if deadline is not None:
        assert deadline > earlier
        fired = evaluate(targets, calendar, [*history, Now(deadline)])
        assert any(e.at == deadline and e.kind in ("warned", "breached") for e in fired.events)
