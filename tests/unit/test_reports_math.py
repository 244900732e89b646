"""Report arithmetic: percentiles by linear interpolation (numpy's default, Excel's PERCENTILE.INC), attainment,
and local day / hour buckets that follow DST."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from inbox.errors import ValidationFailed
from inbox.services.reports import (MAX_DAYS, attainment, bucket_label, bucket_of, bucket_starts, check_query,
                                    local_midnight, median, percentile)

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


def test_median_is_the_middle_value_or_the_mean_of_the_two_middle_values():
    assert median([]) is None
    assert median([42.0]) == 42.0
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([900, 1800, 5400, 60]) == 1350


def test_p90_interpolates_linearly_between_closest_ranks():
    assert percentile([], 0.9) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([10, 20], 0.9) == pytest.approx(19.0)
    assert percentile([900, 1800, 4500], 0.9) == pytest.approx(3960.0)  # rank 1.8: 1800 + 0.8 * 2700
    assert percentile(list(range(1, 11)), 0.9) == pytest.approx(9.1)  # numpy.percentile(range(1, 11), 90)
    assert percentile(list(range(1, 101)), 0.9) == pytest.approx(90.1)
    assert percentile([5, 1, 3], 0.0) == 1 and percentile([5, 1, 3], 1.0) == 5
    with pytest.raises(ValueError):
        percentile([1], 1.5)


def test_attainment_is_met_over_met_and_breached():
    assert attainment(0, 0) is None
    assert attainment(2, 1) == pytest.approx(2 / 3)
    assert attainment(0, 3) == 0.0 and attainment(4, 0) == 1.0


def test_days_follow_dst_in_the_timezone():
    starts = bucket_starts(date(2026, 3, 28), date(2026, 3, 30), PARIS, "day")
    assert starts == [datetime(2026, 3, 27, 23, tzinfo=UTC), datetime(2026, 3, 28, 23, tzinfo=UTC),
                      datetime(2026, 3, 29, 22, tzinfo=UTC)]
    end = local_midnight(date(2026, 3, 31), PARIS)
    assert end - starts[1] == timedelta(hours=47)  # the spring-forward day lasts 23 hours
    assert [bucket_label(s, PARIS, "day") for s in starts] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert bucket_of(starts, end, datetime(2026, 3, 28, 22, 59, tzinfo=UTC)) == 0
    assert bucket_of(starts, end, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == 1
    assert bucket_of(starts, end, datetime(2026, 3, 27, 22, 59, tzinfo=UTC)) is None
    assert bucket_of(starts, end, end) is None


def test_hours_are_real_hours_labelled_in_local_time():
    hours = bucket_starts(date(2026, 10, 25), date(2026, 10, 25), PARIS, "hour")
    assert len(hours) == 25  # fall-back day
    labels = [bucket_label(h, PARIS, "hour") for h in hours]
    assert labels[:4] == ["2026-10-25T00:00+02:00", "2026-10-25T01:00+02:00", "2026-10-25T02:00+02:00",
                          "2026-10-25T02:00+01:00"]
    assert labels[-1] == "2026-10-25T23:00+01:00"


def test_a_skipped_midnight_starts_the_day_at_the_jump():
    santiago = ZoneInfo("America/Santiago")  # clocks go from 24:00 to 01:00 on 2026-09-06
    assert local_midnight(date(2026, 9, 6), santiago) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert local_midnight(date(2026, 9, 7), santiago) == datetime(2026, 9, 7, 3, tzinfo=UTC)


def _fields(report: str, **params: object) -> dict[str, list[str]]:
    base: dict[str, object] = {"date_from": date(2026, 11, 2), "date_to": date(2026, 11, 6)}
    with pytest.raises(ValidationFailed) as caught:
        check_query(report, {**base, **params})
    return caught.value.fields


def test_query_errors_name_the_field():
    assert "to" in _fields("overview", date_to=date(2026, 11, 1))
    assert "to" in _fields("overview", date_to=date(2026, 11, 2) + timedelta(days=MAX_DAYS))
    assert "timezone" in _fields("overview", timezone="Mars/Olympus_Mons")
    assert "group_by" in _fields("backlog", group_by="brand")
    query = check_query("overview", {"date_from": date(2026, 11, 2), "date_to": date(2026, 11, 2) + timedelta(
        days=MAX_DAYS - 1), "timezone": "Europe/Paris", "group_by": "agent"})
    assert (query.group_by, query.start) == ("agent", datetime(2026, 11, 1, 23, tzinfo=UTC))
    assert check_query("busiest_hours", {"date_from": date(2026, 11, 2), "date_to": date(2026, 11, 2)}).group_by \
        == "weekday_hour"
