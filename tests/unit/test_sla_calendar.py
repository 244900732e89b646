"""Business-hours arithmetic: examples an agent would recognise, and properties across DST changes."""

from __future__ import annotations

import time as timer
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.sla.calendar import (
    MAX_CLOSED_DAYS,
    BusinessCalendar,
    CalendarTime,
    Interval,
    holidays_from_ics,
    parse_hhmm,
)

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
MICROSECOND = timedelta(microseconds=1)
WEEKDAYS = range(5)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def office_hours(tz: str = "Europe/Paris", holidays: set[date] | None = None) -> BusinessCalendar:
    return BusinessCalendar(tz, [Interval(day, time(9), time(18)) for day in WEEKDAYS], holidays or set())


# --- examples -------------------------------------------------------------------------------------------------


def test_friday_evening_message_is_due_monday_morning():
    friday_1730 = paris(2025, 11, 21, 17, 30)
    due = office_hours().add_business_seconds(friday_1730, 3600)
    assert due == paris(2025, 11, 24, 9, 30)
    assert due.tzinfo is UTC


def test_an_hour_from_friday_1700_is_friday_closing_time_not_monday():
    assert office_hours().add_business_seconds(paris(2025, 11, 21, 17), 3600) == paris(2025, 11, 21, 18)


def test_zero_seconds_is_the_start_even_when_closed():
    saturday = paris(2025, 11, 22, 12)
    assert office_hours().add_business_seconds(saturday, 0) == saturday


def test_weekend_does_not_count():
    calendar = office_hours()
    assert calendar.business_seconds_between(paris(2025, 11, 21, 17), paris(2025, 11, 24, 10)) == 2 * 3600
    assert calendar.business_seconds_between(paris(2025, 11, 24, 10), paris(2025, 11, 21, 17)) == -2 * 3600


def test_is_open_and_next_open():
    calendar = office_hours()
    assert calendar.is_open(paris(2025, 11, 24, 9))
    assert not calendar.is_open(paris(2025, 11, 24, 18))  # closing instant is closed
    assert not calendar.is_open(paris(2025, 11, 22, 12))
    assert calendar.next_open(paris(2025, 11, 21, 19)) == paris(2025, 11, 24, 9)
    assert calendar.next_open(paris(2025, 11, 24, 10)) == paris(2025, 11, 24, 10)


def test_overnight_support_2200_to_0600():
    calendar = BusinessCalendar("Europe/Paris", [Interval(day, time(22), time(6)) for day in WEEKDAYS], set())
    assert calendar.is_open(paris(2025, 11, 22, 3))  # Friday's shift runs into Saturday
    assert not calendar.is_open(paris(2025, 11, 22, 7))
    assert not calendar.is_open(paris(2025, 11, 23, 23))  # no Sunday shift
    assert not calendar.is_open(paris(2025, 11, 24, 3))  # nor its morning on Monday
    assert calendar.add_business_seconds(paris(2025, 11, 22, 5, 30), 3600) == paris(2025, 11, 24, 22, 30)
    assert calendar.business_seconds_between(paris(2025, 11, 24, 12), paris(2025, 11, 25, 12)) == 8 * 3600


def test_spring_forward_interval_is_two_hours_fall_back_four():
    calendar = BusinessCalendar("Europe/Paris", [Interval(6, time(1), time(4))], set())
    spring, autumn = paris(2025, 3, 30), paris(2025, 10, 26)
    assert calendar.business_seconds_between(spring, spring + timedelta(days=1)) == 2 * 3600
    assert calendar.business_seconds_between(autumn, autumn + timedelta(days=1)) == 4 * 3600
    # 90 minutes from 01:00: one hour to the jump at 02:00, then 03:00 -> 03:30 summer time
    assert calendar.add_business_seconds(paris(2025, 3, 30, 1), 5400) == paris(2025, 3, 30, 3, 30)


def test_spring_forward_day_with_office_hours_spanning_the_night():
    calendar = BusinessCalendar("Europe/Paris", [Interval(5, time(20), time(8))], set())
    saturday_20 = paris(2025, 3, 29, 20)
    assert calendar.business_seconds_between(saturday_20, paris(2025, 3, 30, 12)) == 11 * 3600


def test_endpoints_in_the_skipped_hour_move_to_the_jump():
    calendar = BusinessCalendar("Europe/Paris", [Interval(6, time(2, 30), time(3, 30))], set())
    assert calendar.next_open(paris(2025, 3, 30)) == paris(2025, 3, 30, 3)
    assert calendar.business_seconds_between(paris(2025, 3, 30), paris(2025, 3, 31)) == 1800
    inside_gap = BusinessCalendar(
        "Europe/Paris", [Interval(6, time(2, 10), time(2, 40)), Interval(0, time(9), time(10))]
    )
    assert inside_gap.business_seconds_between(paris(2025, 3, 30), paris(2025, 3, 31)) == 0


def test_ambiguous_endpoints_take_first_start_and_last_end():
    calendar = BusinessCalendar("Europe/Paris", [Interval(6, time(2, 30), time(5))], set())
    first_0230 = datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 summer time
    assert calendar.next_open(paris(2025, 10, 26)) == first_0230
    assert calendar.business_seconds_between(paris(2025, 10, 26), paris(2025, 10, 27)) == 3.5 * 3600
    until_0230 = BusinessCalendar("Europe/Paris", [Interval(6, time(0), time(2, 30))], set())
    last_0230 = datetime(2025, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 winter time
    assert until_0230.add_business_seconds(paris(2025, 10, 26), 3.5 * 3600) == last_0230
    assert not until_0230.is_open(last_0230)


def test_lord_howe_half_hour_dst():
    calendar = BusinessCalendar("Australia/Lord_Howe", [Interval(6, time(1), time(3))], set())
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    spring = datetime(2025, 10, 5, tzinfo=lord_howe)  # 02:00 -> 02:30
    autumn = datetime(2025, 4, 6, tzinfo=lord_howe)  # 02:00 -> 01:30
    assert calendar.business_seconds_between(spring, spring + timedelta(days=1)) == 1.5 * 3600
    assert calendar.business_seconds_between(autumn, autumn + timedelta(days=1)) == 2.5 * 3600


def test_overlapping_intervals_count_once():
    calendar = BusinessCalendar(
        "Europe/Paris",
        [Interval(0, time(9), time(12)), Interval(0, time(11), time(14)), Interval(0, time(10), time(11))],
        set(),
    )
    monday = paris(2025, 11, 24)
    assert calendar.business_seconds_between(monday, monday + timedelta(days=1)) == 5 * 3600
    assert calendar.add_business_seconds(monday, 4 * 3600) == paris(2025, 11, 24, 13)


def test_several_intervals_a_day_with_lunch_break():
    calendar = BusinessCalendar("Europe/Paris", [Interval(0, time(9), time(12)), Interval(0, time(14), time(18))])
    assert calendar.add_business_seconds(paris(2025, 11, 24, 11, 30), 3600) == paris(2025, 11, 24, 14, 30)
    assert not calendar.is_open(paris(2025, 11, 24, 13))


def test_holidays_do_not_count():
    christmas = date(2025, 12, 25)  # a Thursday
    calendar = office_hours(holidays={christmas})
    assert not calendar.is_open(paris(2025, 12, 25, 10))
    assert calendar.add_business_seconds(paris(2025, 12, 24, 17), 2 * 3600) == paris(2025, 12, 26, 10)


def test_overnight_interval_belongs_to_the_day_it_starts():
    calendar = BusinessCalendar(
        "Europe/Paris", [Interval(day, time(22), time(2)) for day in range(7)], {date(2025, 12, 25)}
    )
    # the Wednesday-night shift counts in full, into the holiday
    assert calendar.is_open(paris(2025, 12, 25, 1))
    # the shift starting on the holiday does not count at all, even after midnight
    assert not calendar.is_open(paris(2025, 12, 25, 23))
    assert not calendar.is_open(paris(2025, 12, 26, 1))
    assert calendar.business_seconds_between(paris(2025, 12, 24, 12), paris(2025, 12, 26, 12)) == 4 * 3600


def test_no_business_hours_is_refused():
    with pytest.raises(ValueError, match="calendar has no business hours"):
        BusinessCalendar("Europe/Paris", [], set())


def test_years_of_holidays_end_the_search_with_a_clear_error():
    start = date(2025, 1, 1)
    holidays = {start + timedelta(days=offset) for offset in range(4 * 366)}
    calendar = office_hours(holidays=holidays)
    began = timer.perf_counter()
    with pytest.raises(ValueError, match="no business hours within"):
        calendar.add_business_seconds(paris(2025, 1, 1), 60)
    with pytest.raises(ValueError, match="no business hours within"):
        calendar.next_open(paris(2025, 1, 1))
    assert calendar.business_seconds_between(paris(2025, 1, 1), paris(2028, 1, 1)) == 0
    assert timer.perf_counter() - began < 2


def test_a_thirty_day_target_is_fast():
    calendar = office_hours()
    began = timer.perf_counter()
    due = calendar.add_business_seconds(paris(2025, 11, 21, 17, 30), 30 * 86400)
    assert timer.perf_counter() - began < 0.5
    assert calendar.business_seconds_between(paris(2025, 11, 21, 17, 30), due) == 30 * 86400


def test_naive_datetimes_and_bad_input_are_refused():
    calendar = office_hours()
    naive = datetime(2025, 11, 24, 10)
    for call in (
        lambda: calendar.is_open(naive),
        lambda: calendar.next_open(naive),
        lambda: calendar.add_business_seconds(naive, 10),
        lambda: calendar.business_seconds_between(naive, paris(2025, 11, 24)),
        lambda: CalendarTime().add_business_seconds(naive, 10),
        lambda: calendar.add_business_seconds(paris(2025, 11, 24), -1),
        lambda: calendar.add_business_seconds(paris(2025, 11, 24), float("nan")),
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError, match="unknown timezone"):
        BusinessCalendar("Europe/Atlantis", [Interval(0, time(9), time(18))], set())
    with pytest.raises(ValueError, match="weekday"):
        Interval(7, time(9), time(18))


def test_calendar_time_is_plain_arithmetic():
    start = paris(2025, 3, 30, 1)
    assert CalendarTime().add_business_seconds(start, 3 * 3600) == datetime(2025, 3, 30, 3, tzinfo=UTC)
    assert CalendarTime().business_seconds_between(start, paris(2025, 3, 30, 4)) == 2 * 3600
    assert CalendarTime().is_open(start) and CalendarTime().next_open(start) == start


@pytest.mark.parametrize(
    ("text", "expected"), [("09:30", time(9, 30)), ("9:05", time(9, 5)), ("00:00", time(0)), ("23:59", time(23, 59))]
)
def test_parse_hhmm(text, expected):
    assert parse_hhmm(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("24:00", "use '00:00'"), ("9h30", "look like"), ("12:60", "range"), ("", "look like")]
)
def test_parse_hhmm_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_hhmm(text)


# --- holidays from iCalendar ----------------------------------------------------------------------------------


def ics(*events: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n".encode()


def test_ics_all_day_and_multi_day_events():
    data = ics(
        "UID:a\r\nDTSTART;VALUE=DATE:20251225\r\nDTEND;VALUE=DATE:20251226\r\nSUMMARY:Noel",
        "UID:b\r\nDTSTART;VALUE=DATE:20250801\r\nDTEND;VALUE=DATE:20250804\r\nSUMMARY:Fermeture",
        "UID:c\r\nDTSTART;VALUE=DATE:20250501\r\nSUMMARY:Fete du travail",
    )
    assert holidays_from_ics(data) == {
        date(2025, 12, 25),
        date(2025, 8, 1),
        date(2025, 8, 2),
        date(2025, 8, 3),
        date(2025, 5, 1),
    }


def test_ics_timed_events_become_dates():
    data = ics(
        "UID:a\r\nDTSTART:20251224T230000Z\r\nDTEND:20251225T230000Z",
        "UID:b\r\nDTSTART;TZID=Europe/Paris:20250714T000000\r\nDTEND;TZID=Europe/Paris:20250715T000000",
    )
    assert holidays_from_ics(data) == {date(2025, 12, 24), date(2025, 12, 25), date(2025, 7, 14)}
    assert holidays_from_ics(data, timezone="Europe/Paris") == {date(2025, 12, 25), date(2025, 7, 14)}


def test_ics_yearly_rule_with_exceptions_and_moved_occurrence():
    data = ics(
        "UID:fete\r\nDTSTART;VALUE=DATE:20240714\r\nRRULE:FREQ=YEARLY;UNTIL=20280101T000000Z\r\n"
        "EXDATE;VALUE=DATE:20250714",
        "UID:fete\r\nRECURRENCE-ID;VALUE=DATE:20260714\r\nDTSTART;VALUE=DATE:20260713",
        "UID:noel\r\nDTSTART;VALUE=DATE:20241225\r\nRRULE:FREQ=YEARLY",
        "UID:gone\r\nDTSTART;VALUE=DATE:20250101\r\nSTATUS:CANCELLED",
    )
    holidays = holidays_from_ics(data, until=date(2027, 12, 31))
    assert holidays == {
        date(2024, 7, 14),
        date(2026, 7, 13),
        date(2027, 7, 14),
        date(2024, 12, 25),
        date(2025, 12, 25),
        date(2026, 12, 25),
        date(2027, 12, 25),
    }


def test_ics_garbage_is_a_clear_error():
    with pytest.raises(ValueError, match="iCalendar"):
        holidays_from_ics(b"not a calendar")


def test_ics_holidays_feed_a_calendar():
    holidays = holidays_from_ics(ics("UID:a\r\nDTSTART;VALUE=DATE:20251225"))
    assert not office_hours(holidays=holidays).is_open(paris(2025, 12, 25, 10))


# --- properties -----------------------------------------------------------------------------------------------

ZONES = ("Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")


def _transitions(zone_name: str) -> list[datetime]:
    """UTC hours around which the zone's offset changes in 2025 (none for Asia/Kolkata)."""
    zone = ZoneInfo(zone_name)
    hour = datetime(2025, 1, 1, tzinfo=UTC)
    found = []
    while hour.year == 2025:
        if hour.astimezone(zone).utcoffset() != (hour + timedelta(hours=1)).astimezone(zone).utcoffset():
            found.append(hour)
        hour += timedelta(hours=1)
    return found or [datetime(2025, 6, 1, tzinfo=UTC)]


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}
# clock times near DST switches, plus any minute of the day
local_times = st.one_of(
    st.sampled_from([time(0), time(1), time(1, 30), time(2), time(2, 30), time(3), time(4)]),
    st.integers(0, 1439).map(lambda minute: time(minute // 60, minute % 60)),
)
intervals = st.builds(Interval, st.integers(0, 6), local_times, local_times)
holiday_sets = st.sets(st.dates(date(2024, 12, 1), date(2026, 2, 1)), max_size=60)


@st.composite
def calendars(draw, same_day_only: bool = False) -> BusinessCalendar:
    chosen = draw(st.lists(intervals, min_size=1, max_size=6))
    if same_day_only:
        chosen = [interval for interval in chosen if interval.end > interval.start] or [
            Interval(0, time(9), time(17))
        ]
    return BusinessCalendar(draw(st.sampled_from(ZONES)), chosen, draw(holiday_sets))


@st.composite
def instants_near_dst(draw, zone: str) -> datetime:
    anchor = draw(st.sampled_from(TRANSITIONS[zone]))
    offset = timedelta(seconds=draw(st.integers(-4 * 86400, 4 * 86400)), microseconds=draw(st.integers(0, 999_999)))
    return anchor + offset


@st.composite
def calendar_and_start(draw, same_day_only: bool = False) -> tuple[BusinessCalendar, datetime]:
    calendar = draw(calendars(same_day_only))
    return calendar, draw(instants_near_dst(calendar.timezone))


durations = st.integers(0, 30 * 86400 * 1000).map(lambda ms: ms / 1000)
short_durations = st.integers(0, 3 * 86400 * 1000).map(lambda ms: ms / 1000)


@PROPERTY_SETTINGS
@given(calendar_and_start(), durations)
def test_add_then_between_round_trips(calendar_start, seconds):
    calendar, start = calendar_start
    assert abs(calendar.business_seconds_between(start, calendar.add_business_seconds(start, seconds)) - seconds) < 1e-6


@PROPERTY_SETTINGS
@given(calendar_and_start(), short_durations, short_durations)
def test_add_is_monotonic_and_additive(calendar_start, first, second):
    calendar, start = calendar_start
    low, high = sorted((first, second))
    assert calendar.add_business_seconds(start, low) <= calendar.add_business_seconds(start, high)
    stepped = calendar.add_business_seconds(calendar.add_business_seconds(start, first), second)
    assert stepped == calendar.add_business_seconds(start, first + second)


@PROPERTY_SETTINGS
@given(calendar_and_start(), short_durations.filter(lambda seconds: seconds > 0))
def test_result_is_the_first_instant_reaching_the_target(calendar_start, seconds):
    calendar, start = calendar_start
    due = calendar.add_business_seconds(start, seconds)
    assert calendar.is_open(due - MICROSECOND)  # never inside a closed period: open up to it
    assert calendar.business_seconds_between(start, due - MICROSECOND) < seconds


@PROPERTY_SETTINGS
@given(calendar_and_start(), st.integers(0, 5 * 86400), st.integers(0, 5 * 86400))
def test_between_is_additive_and_matches_next_open(calendar_start, first, second):
    calendar, start = calendar_start
    middle, end = start + timedelta(seconds=first), start + timedelta(seconds=first + second)
    whole = calendar.business_seconds_between(start, end)
    assert whole == pytest.approx(
        calendar.business_seconds_between(start, middle) + calendar.business_seconds_between(middle, end), abs=1e-6
    )
    opening = calendar.next_open(start)
    assert opening >= start and calendar.is_open(opening)
    assert calendar.business_seconds_between(start, opening) == 0


def _wall_clock_open(calendar: BusinessCalendar, instant: datetime) -> bool:
    """Independent reading of the rules on the local wall clock (valid where the wall time is unambiguous)."""
    local = instant.astimezone(ZoneInfo(calendar.timezone)).replace(tzinfo=None)
    today, clock = local.date(), local.time()
    yesterday = today - timedelta(days=1)
    for interval in calendar.intervals:
        if interval.end > interval.start:
            if interval.weekday == today.weekday() and today not in calendar.holidays:
                if interval.start <= clock < interval.end:
                    return True
        else:
            if interval.weekday == today.weekday() and today not in calendar.holidays and clock >= interval.start:
                return True
            if interval.weekday == yesterday.weekday() and yesterday not in calendar.holidays and clock < interval.end:
                return True
    return False


def _ambiguous(calendar: BusinessCalendar, instant: datetime) -> bool:
    zone = ZoneInfo(calendar.timezone)
    local = instant.astimezone(zone).replace(tzinfo=None)
    return local.replace(tzinfo=zone, fold=0).utcoffset() != local.replace(tzinfo=zone, fold=1).utcoffset()


@PROPERTY_SETTINGS
@given(calendar_and_start())
def test_is_open_matches_the_wall_clock_rules(calendar_start):
    calendar, instant = calendar_start
    if not _ambiguous(calendar, instant):
        assert calendar.is_open(instant) == _wall_clock_open(calendar, instant)


@PROPERTY_SETTINGS
@given(calendar_and_start(same_day_only=True), durations)
def test_holidays_never_count(calendar_start, seconds):
    calendar, start = calendar_start
    zone = ZoneInfo(calendar.timezone)
    for holiday in sorted(calendar.holidays)[:5]:
        midnight = datetime.combine(holiday, time(), zone)
        assert calendar.business_seconds_between(midnight, midnight + timedelta(days=1)) == 0
    due = calendar.add_business_seconds(start, seconds)
    if seconds > 0:
        assert (due - MICROSECOND).astimezone(zone).date() not in calendar.holidays


@PROPERTY_SETTINGS
@given(st.sampled_from(ZONES).flatmap(instants_near_dst), durations, st.integers(-10 * 86400, 10 * 86400))
def test_calendar_time_and_an_always_open_calendar_are_timedelta_arithmetic(start, seconds, offset):
    always_open = BusinessCalendar("Australia/Lord_Howe", [Interval(day, time(0), time(0)) for day in range(7)])
    expected = start + timedelta(seconds=seconds)
    assert CalendarTime().add_business_seconds(start, seconds) == expected
    assert always_open.add_business_seconds(start, seconds) == expected
    other = start + timedelta(seconds=offset)
    assert CalendarTime().business_seconds_between(start, other) == offset
    assert always_open.business_seconds_between(start, other) == offset


def test_max_closed_days_is_about_three_years():
    assert 3 * 365 <= MAX_CLOSED_DAYS <= 3 * 366
