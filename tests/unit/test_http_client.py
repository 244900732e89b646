"""PlatformClient against the fake Graph API: answers, error mapping, timeouts; backoff arithmetic."""
from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import PlatformError
from adapters import http as http_module
from adapters.http import PlatformClient, backoff_seconds, new_session, retry_after_seconds
from adapters.meta import appsecret_proof
from inbox.demo.fake_meta import FakeMeta

AUTH = {"access_token": "page-token", "appsecret_proof": appsecret_proof("app-secret", "page-token")}
SEND = {"recipient": {"id": "7071234567890123"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}


@pytest.fixture
def graph(fake_graph: FakeMeta) -> PlatformClient:
    return PlatformClient(fake_graph.base_url, timeout=5)


def send(graph: PlatformClient) -> dict:
    return graph.request("POST", "/104358921234567/messages", params=AUTH, json=SEND)


def failure(graph: PlatformClient) -> PlatformError:
    with pytest.raises(PlatformError) as caught:
        send(graph)
    return caught.value


def test_success_returns_the_json_answer(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    answer = send(graph)
    assert answer["recipient_id"] == "7071234567890123" and answer["message_id"].startswith("m_")
    [call] = fake_graph.requests
    assert call.path == "/104358921234567/messages" and call.body == SEND and call.query == AUTH


def test_graph_envelope_is_mapped(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    fake_graph.fail_next(1, code=10, subcode=2018278, http_status=400)
    error = failure(graph)
    assert (error.code, error.subcode, error.http_status) == (10, 2018278, 400)
    assert error.message == "(#10) This message is sent outside of allowed window."
    assert error.error_type == "OAuthException" and error.trace_id
    assert error.retryable is False and error.retry_after is None and not error.maybe_delivered
    assert str(error) == "(#10) This message is sent outside of allowed window. (code 10/2018278)"


@pytest.mark.parametrize(("code", "http_status", "retryable"), [
    (1, 400, True), (2, 400, True), (4, 400, True), (17, 400, True), (32, 400, True), (341, 400, True),
    (613, 400, True), (80000, 400, True), (80007, 400, True), (80014, 400, True),
    (80015, 400, False), (100, 400, False), (190, 400, False), (10, 400, False), (200, 403, False),
    (551, 400, False), (10900, 400, False),
    (100, 500, True), (100, 503, True), (100, 429, True),
])
def test_retryable_codes_and_statuses(graph: PlatformClient, fake_graph: FakeMeta, code: int,
                                      http_status: int, retryable: bool) -> None:
    fake_graph.fail_next(1, code=code, http_status=http_status)
    error = failure(graph)
    assert (error.code, error.http_status, error.retryable) == (code, http_status, retryable)


def test_retry_after_header_is_kept(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    fake_graph.fail_next(1, code=613, retry_after=30)
    error = failure(graph)
    assert error.retryable and error.retry_after == 30.0


@pytest.mark.parametrize(("http_status", "retryable"), [(502, True), (503, True), (429, True), (404, False),
                                                        (400, False)])
def test_non_json_error_bodies(graph: PlatformClient, fake_graph: FakeMeta, http_status: int,
                               retryable: bool) -> None:
    fake_graph.fail_next(1, http_status=http_status, body="<html><h1>502 Bad   Gateway</h1></html>")
    error = failure(graph)
    assert error.http_status == http_status and error.retryable is retryable and error.code is None
    assert f"HTTP {http_status}" in error.message and "502 Bad Gateway" in error.message


def test_non_json_success_body_is_returned_as_text(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    fake_graph.fail_next(1, http_status=200, body="OK")
    assert send(graph) == {"body": "OK"}


def test_json_success_that_is_not_an_object(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    fake_graph.fail_next(1, http_status=200, body="true")
    assert send(graph) == {"data": True}


def test_timeout_is_retryable(fake_graph: FakeMeta) -> None:
    fake_graph.fail_next(1, http_status=200, body="{}", delay=1.0)
    error = failure(PlatformClient(fake_graph.base_url, timeout=0.2))
    assert error.retryable and "timed out" in error.message and error.http_status is None
    assert error.maybe_delivered  # the request left: the platform may have acted on it


def test_connection_refused_is_retryable(closed_port_url: str) -> None:
    error = failure(PlatformClient(closed_port_url))
    assert error.retryable and error.message.startswith("network error")
    assert not error.maybe_delivered


def test_errors_never_quote_the_access_token(closed_port_url: str) -> None:
    with pytest.raises(PlatformError) as caught:
        PlatformClient(closed_port_url).request("POST", "/1/messages", params=AUTH, json=SEND)
    error = caught.value
    assert "page-token" not in str(error) and AUTH["appsecret_proof"] not in str(error)
    assert "access_token=***" in error.message
    assert error.__cause__ is None and error.__suppress_context__


def test_invalid_url_is_not_retryable() -> None:
    error = failure(PlatformClient("not-a-url"))
    assert not error.retryable and error.message.startswith("request failed")


def test_redirects_are_not_followed(receiver) -> None:
    receiver.answer(302, b"", {"Location": "http://elsewhere.invalid/"})
    with pytest.raises(PlatformError, match="redirect") as caught:
        PlatformClient(receiver.url).request("POST", "", json={"a": 1})
    assert caught.value.http_status == 302 and not caught.value.retryable
    assert len(receiver.received) == 1


def test_graph_envelope_is_read_only_for_graph_clients(receiver) -> None:
    receiver.answer(400, json.dumps({"error": {"message": "bad", "code": 4}}).encode())
    with pytest.raises(PlatformError) as caught:
        PlatformClient(receiver.url, graph_errors=False).request("POST", "", json={})
    assert caught.value.code is None and not caught.value.retryable and caught.value.http_status == 400


def test_missing_appsecret_proof_is_refused(graph: PlatformClient) -> None:
    with pytest.raises(PlatformError, match="appsecret_proof") as caught:
        graph.request("POST", "/104358921234567/messages", params={"access_token": "t"}, json=SEND)
    assert caught.value.code == 100


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch):
    """A clean proxy and CA bundle environment, read afresh by the client (its per-host cache emptied before
    and after)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    http_module._origin_proxies.cache_clear()
    yield monkeypatch
    http_module._origin_proxies.cache_clear()


def test_the_environments_proxy_is_used_and_read_once_per_host(receiver, proxy_env) -> None:
    """HTTP_PROXY is honoured (the receiver stands for the proxy: it gets the absolute URL), and the environment
    is read once for the host, not on every call (requests' trust_env scanned it and looked for ~/.netrc each
    time: ~0.2 ms of CPU per Graph call)."""
    proxy_env.setenv("http_proxy", receiver.url.rsplit("/", 1)[0])
    reads = []
    real = requests.utils.get_environ_proxies
    proxy_env.setattr(requests.utils, "get_environ_proxies", lambda url, **kw: reads.append(url) or real(url, **kw))
    client = PlatformClient("http://graph.invalid/v21.0")
    for _ in range(3):
        assert client.request("POST", "/1/messages", json={}) == {"ok": True}
    assert [post.path for post in receiver.received] == ["http://graph.invalid/v21.0/1/messages"] * 3
    assert reads == ["http://graph.invalid"]


def test_no_proxy_is_honoured_and_nothing_is_read_from_the_environment_per_call(
        graph: PlatformClient, fake_graph: FakeMeta, closed_port_url: str, proxy_env) -> None:
    proxy_env.setenv("http_proxy", closed_port_url.rsplit("/", 1)[0])  # a proxy that refuses connections
    proxy_env.setenv("no_proxy", "127.0.0.1")

    def per_call(*_args, **_kwargs):
        raise AssertionError("the environment was read for this call")

    proxy_env.setattr(requests.sessions, "get_netrc_auth", per_call)
    proxy_env.setattr(requests.sessions, "get_environ_proxies", per_call)
    assert send(graph)["message_id"]
    assert new_session().trust_env is False


def test_the_ca_bundle_of_the_environment_is_kept_by_the_session(proxy_env) -> None:
    proxy_env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert new_session().verify == "/etc/ssl/certs/ca-certificates.crt"
    proxy_env.delenv("REQUESTS_CA_BUNDLE")
    assert new_session().verify is True


def test_url_joining() -> None:
    assert PlatformClient("http://h/v21.0/").url_for("/1/messages") == "http://h/v21.0/1/messages"
    assert PlatformClient("http://h/v21.0").url_for("1") == "http://h/v21.0/1"
    assert PlatformClient("http://h/hook/?k=v").url_for("") == "http://h/hook/?k=v"


def test_fake_records_concurrent_calls(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    mids: list[str] = []
    threads = [threading.Thread(target=lambda: mids.append(send(graph)["message_id"])) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(mids)) == 20 and len(fake_graph.requests) == 20


def test_fake_control_endpoints(graph: PlatformClient, fake_graph: FakeMeta) -> None:
    send(graph)
    listed = requests.get(f"{fake_graph.root_url}/_fake/requests", timeout=5).json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in listed] == [("POST", "/104358921234567/messages", 200)]
    requests.post(f"{fake_graph.root_url}/_fake/fail", json={"n": 1, "code": 4}, timeout=5)
    assert failure(graph).code == 4
    requests.post(f"{fake_graph.root_url}/_fake/reset", timeout=5)
    assert fake_graph.requests == []
    bad = requests.post(f"{fake_graph.root_url}/_fake/fail", json={"nope": 1}, timeout=5)
    assert bad.status_code == 400


# ----------------------------------------------------------------------------------------------------------
# Retry-After and backoff


def test_retry_after_as_http_date() -> None:
    now = 1_700_000_000.0
    header = format_datetime(datetime.fromtimestamp(now + 120, tz=UTC), usegmt=True)
    assert retry_after_seconds({"Retry-After": header}, now=now) == 120.0
    past = format_datetime(datetime.fromtimestamp(now - 120, tz=UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": past}, now=now) == 0.0


def test_retry_after_from_business_use_case_usage() -> None:
    usage = {"1234": [{"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": 5},
                      {"type": "pages", "estimated_time_to_regain_access": 0}]}
    assert retry_after_seconds({"X-Business-Use-Case-Usage": json.dumps(usage)}) == 300.0
    assert retry_after_seconds({"X-Business-Use-Case-Usage": "{not json"}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0)):
        delay = backoff_seconds(attempt, None, rng=rng)
        assert ceiling / 2 <= delay <= ceiling
    assert 450 <= backoff_seconds(40, None, rng=rng) <= 900
    assert 450 <= backoff_seconds(10_000, None) <= 900


def test_backoff_honours_retry_after() -> None:
    assert backoff_seconds(1, 60) == 60
    assert backoff_seconds(1, 3600) == 3600  # above the cap: the platform knows best
    assert 1.0 <= backoff_seconds(1, 0) <= 2.0


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff_seconds(0, None)


@settings(deadline=None)
@given(attempt=st.integers(min_value=1, max_value=10_000),
       retry_after=st.none() | st.floats(min_value=0, max_value=100_000))
def test_backoff_bounds(attempt: int, retry_after: float | None) -> None:
    delay = backoff_seconds(attempt, retry_after)
    assert delay > 0
    assert delay >= (retry_after or 0)
    assert delay <= max(900.0, retry_after or 0)
