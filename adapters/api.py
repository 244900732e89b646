"""Our own API channel (platforms.md section 11): a customer's system posts messages to us, signed, and we post
our agents' replies to its webhook, signed the same way.

Signature: `X-Relais-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>` with
`X-Relais-Timestamp: <unix seconds>`; the timestamp is signed too, so a captured request cannot be replayed
outside the tolerance.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from adapters.base import Attachment, Author, InboundEvent, PayloadError, SendResult, SignatureError
from adapters.http import PlatformClient, get_header

TIMESTAMP_HEADER = "X-Relais-Timestamp"
SIGNATURE_HEADER = "X-Relais-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
MAX_ID_LENGTH = 255
USER_AGENT = "Relais-Webhook/1"

_SECONDS = re.compile(r"^\d+(\.\d+)?$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ----------------------------------------------------------------------------------------------------------
# Signatures

def sign(secret: str, timestamp: str, raw_body: bytes) -> str:
    """"sha256=<hex>" of HMAC-SHA256(secret, timestamp + "." + raw body)."""
    signed = timestamp.encode("ascii") + b"." + raw_body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def verify(raw_body: bytes, headers: Mapping[str, str], secret: str, *, now: float | None = None,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> None:
    """Check a request to (or from) an API channel; returns None when authentic.

    Header names are matched case-insensitively. `now` (unix seconds) defaults to the clock.
    Raises SignatureError("missing X-Relais-Timestamp header" | "missing X-Relais-Signature header" |
    "malformed X-Relais-Timestamp header" | "stale timestamp: ..." (older or further in the future than
    `tolerance` seconds) | "malformed signature header" | "signature does not match" | "no secret configured").
    """
    if not secret:
        raise SignatureError("no secret configured")
    timestamp = get_header(headers, TIMESTAMP_HEADER)
    signature = get_header(headers, SIGNATURE_HEADER)
    if not timestamp:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp = timestamp.strip()
    if not timestamp.isascii() or not timestamp.isdigit():
        raise SignatureError(f"malformed {TIMESTAMP_HEADER} header")
    _check_freshness(int(timestamp), time.time() if now is None else now, tolerance)
    prefix, _, received = signature.strip().partition("=")
    received = received.strip().lower()
    if prefix.strip().lower() != "sha256" or not _HEX_SHA256.match(received):
        raise SignatureError("malformed signature header")
    if not hmac.compare_digest(sign(secret, timestamp, raw_body), "sha256=" + received):
        raise SignatureError("signature does not match")


def _check_freshness(timestamp: int, now: float, tolerance: int) -> None:
    age = now - timestamp
    if age > tolerance:
        raise SignatureError(f"stale timestamp: {int(age)} s old (tolerance {tolerance} s)")
    if -age > tolerance:
        raise SignatureError(f"stale timestamp: {int(-age)} s in the future (tolerance {tolerance} s)")


# ----------------------------------------------------------------------------------------------------------
# Parsing

def parse(raw_body: bytes, channel_id: str | int, *, now: datetime | None = None) -> list[InboundEvent]:
    """Read one message object, or a batch `{"messages": [...]}`, into "message" events.

    Message: {"id" (required), "conversation_id" (required), "contact": {"id" (required), "name", "handle",
    "avatar_url"}, "text", "attachments": [{"type", "url"}], "timestamp" (ISO 8601 with offset, or unix
    seconds; default `now`), "echo_id", "reply_to"}; text or at least one attachment is required.
    Events: route_key str(channel_id), external_id id, thread_key "api:<conversation_id>", extra["echo_id"]
    when given. Raises PayloadError naming the field, e.g. "messages[2].contact.id: required"; a batch is
    accepted whole or not at all.
    """
    try:
        document = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError("body: must be a JSON object")
    received = now or datetime.now(UTC)
    route_key = str(channel_id)
    if "messages" not in document:
        return [_message_event(document, "", route_key, received)]
    messages = document["messages"]
    if not isinstance(messages, list) or not messages:
        raise PayloadError("messages: must be a non-empty list")
    return [_message_event(message, f"messages[{index}].", route_key, received)
            for index, message in enumerate(messages)]


def _message_event(message: Any, path: str, route_key: str, received: datetime) -> InboundEvent:
    if not isinstance(message, dict):
        raise PayloadError(f"{path.rstrip('.') or 'body'}: must be an object")
    external_id = _required_id(message, "id", path)
    conversation_id = _required_id(message, "conversation_id", path)
    text = _optional_str(message, "text", path)
    attachments = _attachments(message.get("attachments"), f"{path}attachments")
    if not (text and text.strip()) and not attachments:
        raise PayloadError(f"{path}text: required when there are no attachments")
    echo_id = _optional_str(message, "echo_id", path)
    return InboundEvent(
        route_key=route_key, kind="message", conversation_kind="dm",
        platform_time=_timestamp(message.get("timestamp"), f"{path}timestamp", received),
        external_id=external_id, dedupe_key=external_id, thread_key=f"api:{conversation_id}",
        author=_contact(message.get("contact"), f"{path}contact"), text=text, attachments=attachments,
        reply_to=_optional_id(message, "reply_to", path),
        extra={"echo_id": echo_id} if echo_id is not None else {})


def _contact(contact: Any, path: str) -> Author:
    if contact is None:
        raise PayloadError(f"{path}: required")
    if not isinstance(contact, dict):
        raise PayloadError(f"{path}: must be an object")
    prefix = f"{path}."
    return Author(external_id=_required_id(contact, "id", prefix), name=_optional_str(contact, "name", prefix),
                  handle=_optional_str(contact, "handle", prefix),
                  avatar_url=_optional_url(contact, "avatar_url", prefix))


def _attachments(raw: Any, path: str) -> list[Attachment]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PayloadError(f"{path}: must be a list")
    attachments = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PayloadError(f"{path}[{index}]: must be an object")
        prefix = f"{path}[{index}]."
        kind = _optional_str(item, "type", prefix)
        if not kind:
            raise PayloadError(f"{prefix}type: required")
        details = {key: value for key, value in item.items() if key not in ("type", "url")}
        attachments.append(Attachment(type=kind, url=_optional_url(item, "url", prefix), payload=details))
    return attachments


def _timestamp(value: Any, path: str, received: datetime) -> datetime:
    if value is None:
        return received
    if isinstance(value, bool):
        raise PayloadError(f"{path}: must be an ISO 8601 string or unix seconds")
    if isinstance(value, (int, float)) or (isinstance(value, str) and _SECONDS.match(value.strip())):
        return _from_unix_seconds(float(value), path)
    if not isinstance(value, str):
        raise PayloadError(f"{path}: must be an ISO 8601 string or unix seconds")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(f"{path}: not an ISO 8601 date-time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise PayloadError(f"{path}: needs a UTC offset (e.g. 2024-05-01T09:30:00Z)")
    return moment.astimezone(UTC)


def _from_unix_seconds(seconds: float, path: str) -> datetime:
    if seconds > 1e11:
        raise PayloadError(f"{path}: looks like milliseconds; send unix seconds")
    if seconds < 0:
        raise PayloadError(f"{path}: out of range")
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{path}: out of range") from None


def _required_id(container: dict[str, Any], key: str, path: str) -> str:
    value = _optional_id(container, key, path)
    if value is None:
        raise PayloadError(f"{path}{key}: required")
    return value


def _optional_id(container: dict[str, Any], key: str, path: str) -> str | None:
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"{path}{key}: must be a string")
    value = str(value)
    if not value.strip():
        raise PayloadError(f"{path}{key}: must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise PayloadError(f"{path}{key}: longer than {MAX_ID_LENGTH} characters")
    return value


def _optional_str(container: dict[str, Any], key: str, path: str) -> str | None:
    value = container.get(key)
    if value is not None and not isinstance(value, str):
        raise PayloadError(f"{path}{key}: must be a string")
    return value


def _optional_url(container: dict[str, Any], key: str, path: str) -> str | None:
    url = _optional_str(container, key, path)
    # the agent console renders these as links and images: only web URLs
    if url is not None and (urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).netloc):
        raise PayloadError(f"{path}{key}: must be an http(s) URL")
    return url


# ----------------------------------------------------------------------------------------------------------
# Sending

def send(client_or_session: PlatformClient | requests.Session | None, webhook_url: str, secret: str,
         payload: Mapping[str, Any], *, now: float | None = None) -> SendResult:
    """POST `payload` as JSON to the channel's webhook, signed with both headers.

    `payload["id"]` (our message id) is required. A 2xx answer gives SendResult(external_id = the `id` the
    receiver returned, else our id). Raises PlatformError: network errors, timeouts, 429 and 5xx are
    retryable, other 4xx and redirects are not. A PlatformClient passed in lends its session and timeout.
    """
    our_id = payload.get("id")
    if our_id is None or our_id == "":
        raise ValueError("payload needs our message id under 'id'")
    raw_body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    timestamp = str(int(time.time() if now is None else now))
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, raw_body)}
    answer = _webhook_client(client_or_session, webhook_url).request("POST", "", data=raw_body,
                                                                      headers=headers)
    their_id = answer.get("id")
    if isinstance(their_id, (str, int)) and not isinstance(their_id, bool) and str(their_id):
        return SendResult(external_id=str(their_id), raw=answer)
    return SendResult(external_id=str(our_id), raw=answer)


def _webhook_client(client_or_session: PlatformClient | requests.Session | None,
                    webhook_url: str) -> PlatformClient:
    if isinstance(client_or_session, PlatformClient):
        return PlatformClient(webhook_url, timeout=client_or_session.timeout, session=client_or_session.session,
                              graph_errors=False)
    return PlatformClient(webhook_url, session=client_or_session, graph_errors=False)
