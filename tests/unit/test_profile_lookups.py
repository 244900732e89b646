"""A batch of name lookups runs its Graph GETs several at a time (services.profiles._look_up), and a rate limit
leaves nothing behind: every customer is either named, given up on (a non-retryable error) or handed back to
be looked up again, with the platform's Retry-After."""
from __future__ import annotations

import threading
import time
from typing import Any

from adapters.base import Author, PlatformError
from inbox.services import profiles


def _todo(n: int) -> list[tuple[int, int, Any, str]]:
    return [(i, 7, object(), f"psid-{i}") for i in range(1, n + 1)]


def test_the_gets_of_a_batch_run_together(monkeypatch):
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_profile(_client: Any, _creds: Any, psid: str) -> Author:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return Author(external_id=psid, name=f"Client {psid}", avatar_url=None)

    monkeypatch.setattr(profiles.meta, "get_user_profile", slow_profile)
    names, rest, retry_after = profiles._look_up(_todo(16), "http://graph.invalid/v21.0")
    assert names == {i: (f"Client psid-{i}", None) for i in range(1, 17)}
    assert rest == [] and retry_after is None
    assert most > 1  # one after the other, a burst's last name waited for every call before it
    assert most <= profiles.LOOKUP_CONCURRENCY


def test_a_rate_limit_hands_back_what_was_not_looked_up(monkeypatch):
    def profile(_client: Any, _creds: Any, psid: str) -> Author:
        if psid == "psid-2":  # at once, before the limit
            raise PlatformError("(#100) No profile available for that user", retryable=False)
        if psid == "psid-3":
            time.sleep(0.01)
            raise PlatformError("(#613) Calls to this api have exceeded the rate limit.", retryable=True,
                                retry_after=30.0)
        time.sleep(0.02)
        return Author(external_id=psid, name=f"Client {psid}", avatar_url=None)

    monkeypatch.setattr(profiles.meta, "get_user_profile", profile)
    names, rest, retry_after = profiles._look_up(_todo(40), "http://graph.invalid/v21.0")
    handed_back = {pair[0] for pair in rest}
    assert 3 in handed_back and retry_after == 30.0
    assert 2 not in handed_back and 2 not in names  # not found: not asked again
    assert set(names) | handed_back | {2} == set(range(1, 41)) and not set(names) & handed_back
    assert len(names) < 39  # the calls not started when the limit came were not made
    assert all(pair[1] == 7 for pair in rest)
