"""Business-hours arithmetic for SLA clocks: pure, database-free, timezone-correct.

Semantics (see design.md, "SLA semantics"):

- A `BusinessCalendar` is open during its weekly `Interval`s, read in local wall-clock time of its timezone.
  An interval whose `end` is at or before its `start` runs past midnight into the next day
  (Fri 22:00-02:00 is open Fri 22:00 to Sat 02:00; 09:00-09:00 is open 24 h).
- Every local day is turned into real UTC windows, so DST days have the real length: in Europe/Paris an
  interval 01:00-04:00 lasts 2 h on the spring-forward day and 4 h on the fall-back day. A start or end that
  falls in a spring-forward gap moves to the instant the clocks jump; when an endpoint is ambiguous (fall-back
  repeated hour) the window runs from the FIRST occurrence of its start to the LAST occurrence of its end.
- Overlapping or touching intervals count once.
- A holiday suppresses the intervals that START on that local date. An overnight interval that starts the
  day before a holiday counts in full (Thu 22:00-Fri 02:00 still counts until Fri 02:00 when Friday is a
  holiday), and one that starts on the holiday does not count at all, even after midnight.
- Windows are half-open [start, end): the closing instant itself is closed.

All datetimes in and out are timezone-aware; results are in UTC. Naive datetimes raise ValueError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "BusinessCalendar",
    "Calendar",
    "CalendarTime",
    "Interval",
    "MAX_CLOSED_DAYS",
    "holidays_from_ics",
    "parse_hhmm",
]

UTC = timezone.utc
_ONE_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)

MAX_CLOSED_DAYS = 3 * 366
"""Searching forward for open time gives up after this many consecutive local days without any window."""

_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


@runtime_checkable
class Calendar(Protocol):
    """What SLA clocks need from a calendar; `BusinessCalendar` and `CalendarTime` both provide it."""

    def is_open(self, at: datetime) -> bool: ...

    def next_open(self, at: datetime) -> datetime: ...

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime: ...

    def business_seconds_between(self, a: datetime, b: datetime) -> float: ...


def parse_hhmm(text: str) -> time:
    """Parse a local time of day written "HH:MM" (24-hour clock, "9:30" accepted) into a naive `time`.

    Raises ValueError with a message fit for an API field error. "24:00" is refused: write "00:00", since an
    interval end at or before its start already means "on the next day".
    """
    if not isinstance(text, str):
        raise ValueError(f"time of day must be a string like '09:30', got {type(text).__name__}")
    match = _HHMM.match(text)
    if match is None:
        raise ValueError(f"time of day must look like '09:30', got {text!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours == 24 and minutes == 0:
        raise ValueError("'24:00' is not a time of day: use '00:00' (an end at or before the start means next day)")
    if hours > 23 or minutes > 59:
        raise ValueError(f"time of day out of range (00:00 to 23:59), got {text!r}")
    return time(hours, minutes)


def _as_utc(value: datetime, name: str) -> datetime:
    """Return `value` converted to UTC; refuse naive datetimes, since their instant is unknown."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _to_microseconds(seconds: float) -> int:
    """Validate a duration in seconds and round it to whole microseconds, the resolution of datetime."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    return round(seconds * 1_000_000)


def _microseconds(delta: timedelta) -> int:
    return delta // _MICROSECOND


@dataclass(frozen=True)
class Interval:
    """Weekly opening hours: `weekday` 0=Monday..6=Sunday, local `start` and `end` (naive times).

    `end` at or before `start` means the interval ends on the next day.
    """

    weekday: int
    start: time
    end: time

    def __post_init__(self) -> None:
        if isinstance(self.weekday, bool) or not isinstance(self.weekday, int) or not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be an integer 0 (Monday) to 6 (Sunday), got {self.weekday!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise TypeError(f"interval {name} must be a datetime.time, got {type(value).__name__}")
            if value.tzinfo is not None:
                raise ValueError(f"interval {name} must be a local (naive) time; the calendar has the timezone")

    @property
    def is_overnight(self) -> bool:
        return self.end <= self.start


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown timezone {key!r}") from exc


def _local_to_utc(local: datetime, zone: ZoneInfo, *, latest: bool) -> datetime:
    """The UTC instant of a naive local wall-clock time.

    Ambiguous times (repeated hour) give the first occurrence, or the last when `latest`. Times that do not
    exist (skipped hour) give the instant of the jump, i.e. the first instant whose wall clock is later.
    """
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if _wall(first, zone) == local or _wall(second, zone) == local:
        return max(first, second) if latest else min(first, second)
    return _transition_between(min(first, second), max(first, second), zone)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _transition_between(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in (low, high] with the UTC offset in force at `high` (offsets change on whole seconds)."""
    target = high.astimezone(zone).utcoffset()
    low_s, high_s = 0, int((high - low).total_seconds())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if (low + timedelta(seconds=middle)).astimezone(zone).utcoffset() == target:
            high_s = middle
        else:
            low_s = middle
    return low + timedelta(seconds=high_s)


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours in a timezone, with holidays; see the module docstring for the exact semantics.

    Raises ValueError for an unknown timezone and for a calendar without any interval
    ("calendar has no business hours"), so a policy cannot be saved with one.
    """

    timezone: str
    intervals: tuple[Interval, ...]
    holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _by_weekday: tuple[tuple[Interval, ...], ...] = field(init=False, repr=False, compare=False)

    def __init__(self, timezone: str, intervals: Iterable[Interval], holidays: Iterable[date] = ()) -> None:
        intervals = tuple(intervals)
        if not intervals:
            raise ValueError("calendar has no business hours")
        for interval in intervals:
            if not isinstance(interval, Interval):
                raise TypeError(f"intervals must be Interval objects, got {type(interval).__name__}")
        holidays = frozenset(holidays)
        for holiday in holidays:
            if not isinstance(holiday, date) or isinstance(holiday, datetime):
                raise TypeError(f"holidays must be dates, got {holiday!r}")
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "intervals", intervals)
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "_zone", _zone(timezone))
        by_weekday = tuple(tuple(i for i in intervals if i.weekday == weekday) for weekday in range(7))
        object.__setattr__(self, "_by_weekday", by_weekday)

    def is_open(self, at: datetime) -> bool:
        """Whether the instant `at` is inside business hours."""
        at = _as_utc(at, "at")
        today = self._local_date(at)
        return any(
            start <= at < end for day in (today - _ONE_DAY, today) for start, end in self._day_windows(day)
        )

    def next_open(self, at: datetime) -> datetime:
        """The first open instant at or after `at` (`at` itself when open).

        Raises ValueError when nothing opens within MAX_CLOSED_DAYS days (e.g. everything is a holiday).
        """
        at = _as_utc(at, "at")
        for start, _end in self._open_windows(at):
            return start
        raise AssertionError("unreachable: _open_windows is endless or raises")

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant when `seconds` of open time have elapsed since `start` (which may be outside hours).

        Zero seconds returns `start` itself. For a positive duration the result is inside an open window or
        exactly at its closing instant: one hour from Friday 17:00 with hours until 18:00 is Friday 18:00,
        not Monday morning. Durations are rounded to microseconds.
        """
        start = _as_utc(start, "start")
        remaining = _to_microseconds(seconds)
        if remaining == 0:
            return start
        for window_start, window_end in self._open_windows(start):
            length = _microseconds(window_end - window_start)
            if remaining <= length:
                return window_start + timedelta(microseconds=remaining)
            remaining -= length
        raise AssertionError("unreachable: _open_windows is endless or raises")

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        """Open seconds between `a` and `b`; negative when `b` is before `a`. Never raises for long closures."""
        a, b = _as_utc(a, "a"), _as_utc(b, "b")
        if b < a:
            return -self.business_seconds_between(b, a)
        total = 0
        for window_start, window_end in self._open_windows(a, until=b):
            if window_start >= b:
                break
            total += _microseconds(min(window_end, b) - window_start)
        return total / 1_000_000

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()

    def _day_windows(self, day: date) -> list[tuple[datetime, datetime]]:
        """The UTC windows of the intervals starting on local date `day`, sorted by start."""
        if day in self.holidays:
            return []
        windows = []
        for interval in self._by_weekday[day.weekday()]:
            end_day = day + _ONE_DAY if interval.is_overnight else day
            start = _local_to_utc(datetime.combine(day, interval.start), self._zone, latest=False)
            end = _local_to_utc(datetime.combine(end_day, interval.end), self._zone, latest=True)
            if end > start:  # both ends inside one spring-forward gap
                windows.append((start, end))
        return sorted(windows)

    def _open_windows(self, since: datetime, until: datetime | None = None) -> Iterator[tuple[datetime, datetime]]:
        """Disjoint open windows in time order, clipped to start at or after `since`.

        Without `until` the sequence is endless; it raises ValueError after MAX_CLOSED_DAYS consecutive days
        without any window. With `until`, it stops after the windows that could start before `until`.
        """
        day = self._local_date(since) - _ONE_DAY  # an overnight window of the day before may still be open
        last_day = self._local_date(until) if until is not None else None
        covered_until = since
        closed_days = 0
        while last_day is None or day <= last_day:
            windows = self._day_windows(day)
            closed_days = 0 if windows else closed_days + 1
            if last_day is None and closed_days > MAX_CLOSED_DAYS:
                raise ValueError(
                    f"no business hours within {MAX_CLOSED_DAYS} days of {since.isoformat()} (all holidays?)"
                )
            for start, end in windows:
                start = max(start, covered_until)
                if end > start:
                    yield start, end
                    covered_until = end
            day += _ONE_DAY


@dataclass(frozen=True)
class CalendarTime:
    """The 24/7 calendar of policies without business hours: every second counts."""

    def is_open(self, at: datetime) -> bool:
        """Always True (after validating `at`)."""
        _as_utc(at, "at")
        return True

    def next_open(self, at: datetime) -> datetime:
        """`at` itself, in UTC."""
        return _as_utc(at, "at")

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """`start` plus `seconds` (rounded to microseconds), in UTC."""
        return _as_utc(start, "start") + timedelta(microseconds=_to_microseconds(seconds))

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        """Elapsed real seconds from `a` to `b`; negative when `b` is before `a`."""
        return _microseconds(_as_utc(b, "b") - _as_utc(a, "a")) / 1_000_000


# --- holidays from iCalendar ----------------------------------------------------------------------------------

_MAX_OCCURRENCES = 5000
_DEFAULT_HORIZON_YEARS = 10


def holidays_from_ics(data: bytes, *, until: date | None = None, timezone: str | None = None) -> set[date]:
    """The local dates covered by the VEVENTs of an iCalendar file (a public-holiday feed).

    - All-day events cover DTSTART up to DTEND exclusive (or DURATION; one day when neither is given), so a
      multi-day event gives every day it covers.
    - Timed events cover each date they touch (an end exactly at midnight does not touch the next day). Aware
      datetimes are read in `timezone` when given (the calendar's zone), else in their own zone.
    - RRULE/RDATE occurrences are expanded up to `until` (default: ten years from today), minus EXDATEs;
      occurrences moved by a RECURRENCE-ID override are replaced by the override. Cancelled events are skipped.

    Raises ValueError for data that is not iCalendar, or for an unknown `timezone`.
    """
    from icalendar import Calendar as ICalendar  # imported here: only the holiday import needs it

    zone = _zone(timezone) if timezone is not None else None
    horizon = until or date.today().replace(month=1, day=1) + timedelta(days=366 * _DEFAULT_HORIZON_YEARS)
    try:
        calendar = ICalendar.from_ical(data)
    except ValueError as exc:
        raise ValueError(f"not a valid iCalendar file: {exc}") from exc

    events = [event for event in calendar.walk("VEVENT") if "DTSTART" in event]
    events = [event for event in events if str(event.get("STATUS", "")).upper() != "CANCELLED"]
    moved = {
        (str(event.get("UID", "")), _to_date(event["RECURRENCE-ID"].dt, zone))
        for event in events
        if "RECURRENCE-ID" in event
    }

    dates: set[date] = set()
    for event in events:
        uid = str(event.get("UID", ""))
        length = _event_length(event)
        for start in _occurrences(event, horizon):
            if "RECURRENCE-ID" not in event and (uid, _to_date(start, zone)) in moved:
                continue
            dates.update(_covered_dates(start, length, zone))
    return dates


def _event_length(event) -> timedelta:  # icalendar Event
    start = event["DTSTART"].dt
    try:
        if "DTEND" in event:
            return event["DTEND"].dt - start
        if "DURATION" in event:
            return event["DURATION"].dt
    except TypeError:  # DTEND a datetime while DTSTART is a date: treat as a plain one-day event
        pass
    return _ONE_DAY if not isinstance(start, datetime) else timedelta(0)


def _occurrences(event, horizon: date) -> Iterator[date | datetime]:
    """DTSTART, RRULE and RDATE occurrence starts up to `horizon`, minus EXDATEs."""
    from dateutil.rrule import rruleset, rrulestr

    start = event["DTSTART"].dt
    if not event.rrules and not event.rdates:
        yield start
        return
    anchor = _naive(start)
    rules = rruleset()
    rules.rdate(anchor)
    for recur in event.rrules:
        rules.rrule(rrulestr(_naive_rrule(recur), dtstart=anchor))
    for rdate, _period in event.rdates:
        rules.rdate(_naive(rdate))
    for exdate in event.exdates:
        rules.exdate(_naive(exdate))
    last = datetime.combine(horizon, time.max)
    for count, occurrence in enumerate(rules):
        if occurrence > last or count >= _MAX_OCCURRENCES:
            return
        yield occurrence.date() if not isinstance(start, datetime) else occurrence.replace(tzinfo=start.tzinfo)


def _naive_rrule(recur) -> str:
    """The RRULE text with UNTIL made naive, as dateutil requires with a naive DTSTART."""
    from icalendar import vRecur

    recur = vRecur(dict(recur))
    if "UNTIL" in recur:
        recur["UNTIL"] = [_naive(until) for until in recur["UNTIL"]]
    return recur.to_ical().decode()


def _naive(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.combine(value, time())


def _to_date(value: date | datetime, zone: ZoneInfo | None) -> date:
    if isinstance(value, datetime):
        if zone is not None and value.tzinfo is not None:
            value = value.astimezone(zone)
        return value.date()
    return value


def _covered_dates(start: date | datetime, length: timedelta, zone: ZoneInfo | None) -> list[date]:
    first = _to_date(start, zone)
    if not isinstance(start, datetime):
        days = max(1, length.days)
        return [first + timedelta(days=offset) for offset in range(days)]
    last = _to_date(start + length - _MICROSECOND, zone) if length > timedelta(0) else first
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
