"""A batch of name lookups (services.profiles._look_up) asks Graph for each page's customers 50 to a call (a Graph
batch request; a lone customer by a plain GET), several calls at a time, and a rate limit leaves nothing behind:
every customer is either named, given up on (a non-retryable error) or handed back to be looked up again, with
the platform's Retry-After."""
from __future__ import annotations

import threading
import time
from typing import Any

from adapters.base import Author, PlatformError
from inbox.services import profiles

BASE = "http://graph.invalid/v21.0"


def _todo(n: int, channel_id: int = 7, start: int = 1) -> list[tuple[int, int, Any, str]]:
    return [(i, channel_id, f"creds-{channel_id}", f"psid-{i}") for i in range(start, start + n)]


def _author(psid: str) -> Author:
    return Author(external_id=psid, name=f"Client {psid}", avatar_url=None)


def test_a_pages_customers_go_fifty_to_a_call_and_the_calls_run_together(monkeypatch):
    in_flight, most = 0, 0
    batches: list[tuple[Any, int]] = []
    singles: list[tuple[Any, str]] = []
    lock = threading.Lock()

    def slow_profiles(_client: Any, creds: Any, psids: list[str]) -> list[Author]:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
            batches.append((creds, len(psids)))
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return [_author(psid) for psid in psids]

    def profile(_client: Any, creds: Any, psid: str) -> Author:
        singles.append((creds, psid))
        return _author(psid)

    monkeypatch.setattr(profiles.meta, "get_user_profiles", slow_profiles)
    monkeypatch.setattr(profiles.meta, "get_user_profile", profile)
    todo = _todo(120, 7) + _todo(1, 8, start=200) + _todo(30, 9, start=300)
    names, rest, retry_after = profiles._look_up(todo, BASE)
    assert names == {i: (f"Client psid-{i}", None) for i, _c, _creds, _p in todo}
    assert rest == [] and retry_after is None
    # each page's own token: 120 customers in calls of 50, 50 and 20, 30 in one, the lone one by a plain GET
    assert sorted(batches) == [("creds-7", 20), ("creds-7", 50), ("creds-7", 50), ("creds-9", 30)]
    assert singles == [("creds-8", "psid-200")]
    assert 1 < most <= profiles.LOOKUP_CONCURRENCY  # one after the other, a burst's last name waited for all


def test_a_rate_limit_hands_back_what_was_not_looked_up(monkeypatch):
    def profiles_of(_client: Any, _creds: Any, psids: list[str]) -> list[Author | PlatformError]:
        if "psid-3" not in psids:
            time.sleep(0.05)
        answers: list[Author | PlatformError] = []
        for psid in psids:
            if psid == "psid-2":
                answers.append(PlatformError("(#100) No profile available for that user", retryable=False))
            elif psid == "psid-3":
                answers.append(PlatformError("(#613) Calls to this api have exceeded the rate limit.",
                                             retryable=True, retry_after=30.0))
            else:
                answers.append(_author(psid))
        return answers

    monkeypatch.setattr(profiles.meta, "get_user_profiles", profiles_of)
    names, rest, retry_after = profiles._look_up(_todo(600), BASE)  # 12 calls, 8 at a time
    handed_back = {pair[0] for pair in rest}
    assert 3 in handed_back and retry_after == 30.0
    assert 2 not in handed_back and 2 not in names  # not found: not asked again
    assert {1, *range(4, 51)} <= set(names)  # the limited call's other customers were answered: kept
    assert set(names) | handed_back | {2} == set(range(1, 601)) and not set(names) & handed_back
    assert len(handed_back) >= 1 + 50  # the calls not started when the limit came were not made
    assert all(pair[1] == 7 for pair in rest)


def test_a_failed_call_hands_back_all_its_customers(monkeypatch):
    def profiles_of(_client: Any, _creds: Any, psids: list[str]) -> list[Author]:
        if "psid-1" in psids:
            raise PlatformError("HTTP 503: unavailable", retryable=True, retry_after=5.0)
        return [_author(psid) for psid in psids]

    monkeypatch.setattr(profiles.meta, "get_user_profiles", profiles_of)
    names, rest, retry_after = profiles._look_up(_todo(60), BASE)
    assert {pair[0] for pair in rest} >= set(range(1, 51)) and retry_after == 5.0
    assert not set(names) & {pair[0] for pair in rest}
    assert set(names) | {pair[0] for pair in rest} == set(range(1, 61))
