"""The hot JSON builders' datetime text (`inbox.api.schemas._iso`) is `isoformat()`, whatever path it takes."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from inbox.api.schemas import _iso


def test_utc_datetimes_read_as_isoformat_gives_them() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        value = datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                         rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999_999)]),
                         tzinfo=timezone.utc)
        assert _iso(value) == value.isoformat()
    assert _iso(datetime(2026, 3, 11, 13, 20, 7, tzinfo=timezone.utc)) == "2026-03-11T13:20:07+00:00"
    assert _iso(datetime(2026, 3, 11, 13, 20, 7, 654321, tzinfo=timezone.utc)) == "2026-03-11T13:20:07.654321+00:00"


def test_other_values_keep_isoformat() -> None:
    # offsets in seconds (local mean time), other zones, naive datetimes, dates: isoformat's own text
    for value in (datetime(1900, 1, 1, 12, tzinfo=ZoneInfo("Europe/Paris")),
                  datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Europe/Paris")),
                  datetime(2026, 7, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30))),
                  datetime(2026, 7, 1, 12, 0, 0, 5), date(2026, 7, 1)):
        assert _iso(value) == value.isoformat()
    assert _iso(None) is None
