"""Own API channel: signed requests both ways, strict parsing with field-level errors, outbound webhook."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from adapters import api
from adapters.base import PayloadError, PlatformError, SignatureError
from adapters.http import PlatformClient

SECRET = "channel-secret"
NOW = 1_700_000_000
RECEIVED = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def signed_headers(body: bytes, *, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Relais-Timestamp": str(timestamp), "X-Relais-Signature": f"sha256={signature}"}


def message(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "ext-1", "conversation_id": "conv-9",
        "contact": {"id": "c-42", "name": "Léa Moreau", "handle": "@lea",
                    "avatar_url": "https://example.invalid/l.png"},
        "text": "Bonjour ! 😀", "timestamp": "2024-05-01T09:29:00Z",
    }
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not ...}


def parse_one(document: dict[str, Any]) -> Any:
    [event] = api.parse(json.dumps(document).encode(), "ch-1", now=RECEIVED)
    return event


# ----------------------------------------------------------------------------------------------------------
# Signatures


def test_sign_covers_timestamp_and_raw_body() -> None:
    body = b'{"text":"\\u00e9"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert api.sign(SECRET, "1700000000", body) == f"sha256={expected}"


def test_verify_accepts_a_fresh_signed_request() -> None:
    body = json.dumps(message()).encode()
    assert api.verify(body, signed_headers(body), SECRET, now=NOW + 10) is None


def test_verify_reads_headers_case_insensitively_and_accepts_uppercase_hex() -> None:
    body = b'{"a":1}'
    headers = {k.lower(): v for k, v in signed_headers(body).items()}
    headers["x-relais-signature"] = "sha256=" + headers["x-relais-signature"][7:].upper()
    api.verify(body, headers, SECRET, now=NOW)


@pytest.mark.parametrize(("drop", "reason"), [
    ("X-Relais-Timestamp", "missing X-Relais-Timestamp header"),
    ("X-Relais-Signature", "missing X-Relais-Signature header"),
])
def test_missing_headers(drop: str, reason: str) -> None:
    headers = signed_headers(b"{}")
    del headers[drop]
    with pytest.raises(SignatureError) as caught:
        api.verify(b"{}", headers, SECRET, now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize("timestamp", ["abc", "-5", "1.5", "１２３", " "])
def test_malformed_timestamp(timestamp: str) -> None:
    headers = signed_headers(b"{}") | {"X-Relais-Timestamp": timestamp}
    with pytest.raises(SignatureError, match="malformed X-Relais-Timestamp header"):
        api.verify(b"{}", headers, SECRET, now=NOW)


@pytest.mark.parametrize(("offset", "words"), [(-301, "old"), (-10_000, "old"), (301, "in the future")])
def test_stale_timestamps_are_refused_even_when_signed(offset: int, words: str) -> None:
    body = b'{"a":1}'
    with pytest.raises(SignatureError, match=f"stale timestamp.*{words}"):
        api.verify(body, signed_headers(body, timestamp=NOW + offset), SECRET, now=NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamps_within_tolerance_pass(offset: int) -> None:
    body = b'{"a":1}'
    api.verify(body, signed_headers(body, timestamp=NOW + offset), SECRET, now=NOW)


def test_custom_tolerance() -> None:
    body = b"{}"
    with pytest.raises(SignatureError, match="stale"):
        api.verify(body, signed_headers(body, timestamp=NOW - 31), SECRET, now=NOW, tolerance=30)


def test_wrong_secret_or_changed_body_does_not_match() -> None:
    body = b'{"text":"caf\\u00e9"}'
    with pytest.raises(SignatureError, match="does not match"):
        api.verify(body, signed_headers(body, secret="other"), SECRET, now=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        api.verify(json.dumps(json.loads(body), ensure_ascii=False).encode(), signed_headers(body), SECRET, now=NOW)


def test_last_hex_digit_matters() -> None:
    headers = signed_headers(b"{}")
    signature = headers["X-Relais-Signature"]
    headers["X-Relais-Signature"] = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    with pytest.raises(SignatureError, match="does not match"):
        api.verify(b"{}", headers, SECRET, now=NOW)


def test_replaying_a_body_with_a_new_timestamp_does_not_match() -> None:
    body = b'{"a":1}'
    old = signed_headers(body, timestamp=NOW - 3600)
    replay = old | {"X-Relais-Timestamp": str(NOW)}
    with pytest.raises(SignatureError, match="does not match"):
        api.verify(body, replay, SECRET, now=NOW)


@pytest.mark.parametrize("signature", ["abc", "sha256=", "sha1=" + "a" * 64, "sha256=" + "z" * 64, "a" * 64])
def test_malformed_signature(signature: str) -> None:
    headers = signed_headers(b"{}") | {"X-Relais-Signature": signature}
    with pytest.raises(SignatureError, match="malformed signature header"):
        api.verify(b"{}", headers, SECRET, now=NOW)


def test_empty_secret_never_verifies() -> None:
    with pytest.raises(SignatureError, match="no secret"):
        api.verify(b"{}", signed_headers(b"{}", secret=""), "", now=NOW)


# ----------------------------------------------------------------------------------------------------------
# Parsing


def test_full_message() -> None:
    event = parse_one(message(attachments=[{"type": "image", "url": "https://example.invalid/a.png", "size": 3}],
                              echo_id="tmp-77", reply_to="ext-0"))
    assert event.route_key == "ch-1" and event.kind == "message" and event.conversation_kind == "dm"
    assert event.external_id == "ext-1" and event.dedupe_key == "ext-1"
    assert event.thread_key == "api:conv-9"
    assert (event.author.external_id, event.author.name, event.author.handle, event.author.avatar_url) == (
        "c-42", "Léa Moreau", "@lea", "https://example.invalid/l.png")
    assert event.text == "Bonjour ! 😀"
    assert [(a.type, a.url, a.payload) for a in event.attachments] == [
        ("image", "https://example.invalid/a.png", {"size": 3})]
    assert event.platform_time == datetime(2024, 5, 1, 9, 29, tzinfo=UTC)
    assert event.extra == {"echo_id": "tmp-77"} and event.reply_to == "ext-0"


def test_minimal_message_defaults() -> None:
    event = parse_one({"id": 12, "conversation_id": 34, "contact": {"id": 56}, "text": "hi"})
    assert (event.external_id, event.thread_key, event.author.external_id) == ("12", "api:34", "56")
    assert event.author.name is None and event.attachments == [] and event.extra == {}
    assert event.platform_time == RECEIVED


def test_attachment_without_text_is_enough() -> None:
    event = parse_one(message(text=..., attachments=[{"type": "file", "url": "https://example.invalid/f.pdf"}]))
    assert event.text is None and event.attachments[0].type == "file"


@pytest.mark.parametrize(("timestamp", "expected"), [
    ("2024-05-01T11:29:00+02:00", datetime(2024, 5, 1, 9, 29, tzinfo=UTC)),
    ("2024-05-01T09:29:00.250Z", datetime(2024, 5, 1, 9, 29, 0, 250000, tzinfo=UTC)),
    (1714555740, datetime(2024, 5, 1, 9, 29, tzinfo=UTC)),
    (1714555740.5, datetime(2024, 5, 1, 9, 29, 0, 500000, tzinfo=UTC)),
    ("1714555740", datetime(2024, 5, 1, 9, 29, tzinfo=UTC)),
    (None, RECEIVED),
])
def test_timestamps(timestamp: Any, expected: datetime) -> None:
    event = parse_one(message(timestamp=timestamp))
    assert event.platform_time == expected and event.platform_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["مرحبا، طلبي لم يصل بعد", "שלום 👋🏽 עולם", "x" * 10_000, "🇫🇷" * 3000])
def test_text_is_kept_exactly(text: str) -> None:
    assert parse_one(message(text=text)).text == text


def test_batch_keeps_order() -> None:
    body = json.dumps({"messages": [message(), message(id="ext-2", conversation_id="conv-10")]}).encode()
    events = api.parse(body, 7, now=RECEIVED)
    assert [(e.external_id, e.thread_key, e.route_key) for e in events] == [
        ("ext-1", "api:conv-9", "7"), ("ext-2", "api:conv-10", "7")]


def test_batch_error_names_the_message() -> None:
    body = json.dumps({"messages": [message(), message(contact={"name": "x"})]}).encode()
    with pytest.raises(PayloadError, match=r"^messages\[1\]\.contact\.id: required$"):
        api.parse(body, "ch-1")


@pytest.mark.parametrize(("body", "error"), [
    (b"nope", "body is not valid JSON"),
    (b"[1]", "body: must be a JSON object"),
    (b'{"messages": []}', "messages: must be a non-empty list"),
    (b'{"messages": {}}', "messages: must be a non-empty list"),
    (b'{"messages": [3]}', r"messages\[0\]: must be an object"),
])
def test_unreadable_bodies(body: bytes, error: str) -> None:
    with pytest.raises(PayloadError, match=error):
        api.parse(body, "ch-1")


@pytest.mark.parametrize(("overrides", "error"), [
    ({"id": ...}, "id: required"),
    ({"id": ""}, "id: must not be empty"),
    ({"id": True}, "id: must be a string"),
    ({"id": {"x": 1}}, "id: must be a string"),
    ({"id": "x" * 256}, "id: longer than 255"),
    ({"conversation_id": ...}, "conversation_id: required"),
    ({"contact": ...}, "contact: required"),
    ({"contact": "c-42"}, "contact: must be an object"),
    ({"contact": {"name": "x"}}, "contact.id: required"),
    ({"contact": {"id": "c", "name": 5}}, "contact.name: must be a string"),
    ({"contact": {"id": "c", "avatar_url": "javascript:alert(1)"}}, "contact.avatar_url: must be an http"),
    ({"text": 5}, "text: must be a string"),
    ({"text": ...}, "text: required when there are no attachments"),
    ({"text": "  "}, "text: required when there are no attachments"),
    ({"attachments": "img"}, "attachments: must be a list"),
    ({"attachments": ["img"]}, r"attachments\[0\]: must be an object"),
    ({"attachments": [{"url": "https://e.invalid/a"}]}, r"attachments\[0\]\.type: required"),
    ({"attachments": [{"type": "image", "url": "file:///etc/passwd"}]}, r"attachments\[0\]\.url: must be an http"),
    ({"timestamp": "yesterday"}, "timestamp: not an ISO 8601"),
    ({"timestamp": "2024-05-01T09:29:00"}, "timestamp: needs a UTC offset"),
    ({"timestamp": 1714555740000}, "timestamp: looks like milliseconds"),
    ({"timestamp": True}, "timestamp: must be"),
    ({"timestamp": -1}, "timestamp: out of range"),
    ({"echo_id": 5}, "echo_id: must be a string"),
    ({"reply_to": {"id": 1}}, "reply_to: must be a string"),
])
def test_field_errors(overrides: dict[str, Any], error: str) -> None:
    with pytest.raises(PayloadError, match=f"^{error}"):
        parse_one(message(**overrides))


# ----------------------------------------------------------------------------------------------------------
# Sending to the channel's webhook


PAYLOAD = {"id": "relais-msg-1", "conversation_id": "conv-9", "text": "Bonjour Léa 👋", "agent": {"name": "Tom"}}


def test_send_posts_a_signed_body_the_receiver_can_verify(receiver) -> None:
    receiver.answer(200, b'{"id": "their-77"}')
    result = api.send(None, receiver.url, SECRET, PAYLOAD, now=NOW)
    assert result.external_id == "their-77" and result.raw == {"id": "their-77"}
    [post] = receiver.received
    assert post.path == "/hook" and json.loads(post.body) == PAYLOAD
    assert "Léa 👋".encode() in post.body  # UTF-8 on the wire, not escaped
    assert post.headers["X-Relais-Timestamp"] == str(NOW)
    assert post.headers["Content-Type"].startswith("application/json")
    api.verify(post.body, post.headers, SECRET, now=NOW)


@pytest.mark.parametrize("answer", [b"", b"OK", b'{"status": "queued"}', b'{"id": ""}', b"[1]"])
def test_send_falls_back_to_our_id(receiver, answer: bytes) -> None:
    receiver.answer(202, answer)
    assert api.send(requests.Session(), receiver.url, SECRET, PAYLOAD).external_id == "relais-msg-1"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False),
                                                   (401, False), (404, False), (410, False)])
def test_send_failures(receiver, status: int, retryable: bool) -> None:
    receiver.answer(status, b'{"error": {"code": 4, "message": "their own error shape"}}', {"Retry-After": "7"})
    with pytest.raises(PlatformError) as caught:
        api.send(None, receiver.url, SECRET, PAYLOAD)
    assert caught.value.http_status == status and caught.value.retryable is retryable
    assert caught.value.code is None  # their error body is not read as a Graph code
    assert caught.value.retry_after == 7.0


def test_send_network_error_is_retryable(closed_port_url: str) -> None:
    with pytest.raises(PlatformError) as caught:
        api.send(PlatformClient("http://unused.invalid", timeout=2), closed_port_url, SECRET, PAYLOAD)
    assert caught.value.retryable


def test_send_needs_our_id() -> None:
    with pytest.raises(ValueError, match="id"):
        api.send(None, "http://127.0.0.1:9/hook", SECRET, {"text": "x"})
