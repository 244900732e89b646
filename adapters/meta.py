"""Meta adapter: Facebook Messenger and Facebook Page feed comments (platforms.md sections 1-3).

Instagram and WhatsApp post to the same app webhook with the same envelope and signature; they will join as
more entry parsers in `_ENTRY_PARSERS` (Instagram DMs reuse the messaging parser) and more senders here.

Shapes produced by `parse` (route_key is always entry.id, the page id):
  DM (message / postback / echo / edit / delete / status / ignored)
      thread_key "dm:<psid>", conversation_kind "dm"; an echo's psid is its recipient, its author the page.
  Feed comment (comment / echo / edit / delete / ignored)
      thread_key "comment:<post_id>:<commenter_id>", conversation_kind "comment"; the page's own comments are
      echoes with thread_key None: their conversation is the one of the comment they answer (reply_to).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from adapters.base import (
    Attachment,
    Author,
    EventKind,
    InboundEvent,
    PayloadError,
    PlatformError,
    PostRef,
    SendResult,
    SignatureError,
)
from adapters.http import PlatformClient, get_header, graph_error, is_retryable_graph_code

GRAPH_VERSION = "v21.0"
GRAPH_BASE_URL = f"https://graph.facebook.com/{GRAPH_VERSION}"
SIGNATURE_HEADER = "X-Hub-Signature-256"
LEGACY_SIGNATURE_HEADER = "X-Hub-Signature"
MESSENGER_TEXT_LIMIT = 2000      # text must be shorter than this [doc]
MESSENGER_METADATA_LIMIT = 1000  # metadata must be shorter than this [doc]
HUMAN_AGENT_TAG = "HUMAN_AGENT"

ModerationAction = Literal["hide", "unhide", "delete", "like", "unlike"]


@dataclass(frozen=True)
class MetaCredentials:
    """What a page channel needs to call the Graph API. Secrets are kept out of repr (logs)."""
    page_id: str
    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)


# ----------------------------------------------------------------------------------------------------------
# Verification

def verify_signature(raw_body: bytes, header_value: str | None, app_secrets: Iterable[str], *,
                     legacy_sha1_header: str | None = None) -> str:
    """Check `X-Hub-Signature-256: sha256=<hex>` over the raw body and return the app secret that matched.

    Every configured secret is tried (several apps, or a secret being rotated), each with a constant-time
    compare. `legacy_sha1_header` (the old `X-Hub-Signature: sha1=<hex>`) is checked only when the sha256
    header is absent, so a forged sha1 cannot override a failing sha256.
    Raises SignatureError("missing X-Hub-Signature-256 header" | "malformed signature header" |
    "signature does not match" | "no app secret configured").
    """
    secrets = [secret for secret in app_secrets if secret]
    if not secrets:
        raise SignatureError("no app secret configured")
    if header_value:
        return _match_secret(raw_body, header_value, secrets, "sha256", hashlib.sha256)
    if legacy_sha1_header:
        return _match_secret(raw_body, legacy_sha1_header, secrets, "sha1", hashlib.sha1)
    raise SignatureError(f"missing {SIGNATURE_HEADER} header")


def verify(raw_body: bytes, headers: Mapping[str, str], app_secrets: Iterable[str], *,
           accept_legacy_sha1: bool = False) -> str:
    """`verify_signature` reading the headers of the request (Flask's headers, or any mapping)."""
    legacy = get_header(headers, LEGACY_SIGNATURE_HEADER) if accept_legacy_sha1 else None
    return verify_signature(raw_body, get_header(headers, SIGNATURE_HEADER), app_secrets,
                            legacy_sha1_header=legacy)


def _match_secret(raw_body: bytes, header_value: str, secrets: list[str], algorithm: str,
                  digest: Callable[..., Any]) -> str:
    prefix, _, received = header_value.strip().partition("=")
    received = received.strip().lower()
    if prefix.strip().lower() != algorithm or not _is_hex(received, digest().digest_size * 2):
        raise SignatureError("malformed signature header")
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), raw_body, digest).hexdigest()
        if hmac.compare_digest(expected, received):
            return secret
    raise SignatureError("signature does not match")


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and all(char in "0123456789abcdef" for char in value)


def verify_handshake(params: Mapping[str, str], verify_tokens: Iterable[str]) -> str | None:
    """The subscription handshake: return `hub.challenge` (answer it with 200) when `hub.mode` is "subscribe"
    and `hub.verify_token` equals one of `verify_tokens` (constant time); otherwise None (answer 403)."""
    challenge = params.get("hub.challenge")
    received = params.get("hub.verify_token")
    if params.get("hub.mode") != "subscribe" or not challenge or not received:
        return None
    received_bytes = received.encode("utf-8")
    matched = False
    for token in verify_tokens:
        # no early exit: the time taken must not reveal which token matched
        matched |= bool(token) and hmac.compare_digest(token.encode("utf-8"), received_bytes)
    return challenge if matched else None


# ----------------------------------------------------------------------------------------------------------
# Parsing

class _Malformed(Exception):
    """Raised inside one item's parser; the item becomes an "ignored"/"malformed" event."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Entry:
    page_id: str
    time: datetime   # entry.time: stands in for an item without a usable timestamp
    standby: bool = False


def parse(raw_body: bytes) -> list[InboundEvent]:
    """Turn a verified webhook body into events, one per messaging/standby/changes item of every entry.

    Raises PayloadError when the body is not JSON, not an object, has no entry list, or its object is not
    "page" (Instagram and WhatsApp are not supported yet and raise PayloadError too). An item that cannot be
    read becomes an "ignored" event with extra {"item": "malformed", "reason", "raw"}; shapes we do not
    handle become "ignored" with extra {"item": ...}: nothing is dropped silently.
    """
    envelope = _load_envelope(raw_body)
    entry_parser = _ENTRY_PARSERS[envelope["object"]]
    events: list[InboundEvent] = []
    for entry in envelope["entry"]:
        events.extend(entry_parser(entry))
    return events


def _load_envelope(raw_body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise PayloadError("body is not a JSON object")
    kind = envelope.get("object")
    if kind not in _ENTRY_PARSERS:
        raise PayloadError(f"object {kind!r} is not supported yet: only 'page' (Messenger, Page feed) is read")
    if not isinstance(envelope.get("entry"), list):
        raise PayloadError("missing entry list")
    return envelope


def _parse_page_entry(entry: Any) -> list[InboundEvent]:
    if not isinstance(entry, dict) or not _id_or_none(entry.get("id")):
        # no page id, so no channel: route_key "" tells the ingest this cannot be routed
        return [_malformed(_Entry("", _now()), entry, "entry without id")]
    context = _Entry(str(entry["id"]), _entry_time(entry.get("time")))
    standby_context = _Entry(context.page_id, context.time, standby=True)
    events: list[InboundEvent] = []
    for key, item_parser, item_context in (("messaging", _messaging_event, context),
                                           ("standby", _messaging_event, standby_context),
                                           ("changes", _change_event, context)):
        items = entry.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            events.append(_malformed(context, items, f"entry.{key} is not a list"))
            continue
        events.extend(_parse_item(item_parser, item_context, item) for item in items)
    if not events:
        events.append(_ignored(context, {"item": "unknown", "raw": entry}))
    return events


def _parse_item(item_parser: Callable[[_Entry, Any], InboundEvent], context: _Entry,
                item: Any) -> InboundEvent:
    try:
        event = item_parser(context, item)
    except _Malformed as exc:
        event = _malformed(context, item, exc.reason)
    if context.standby:
        event.extra["standby"] = True
    return event


# --- Messenger (messaging[] and standby[]; timestamps in milliseconds)

def _messaging_event(context: _Entry, item: Any) -> InboundEvent:
    if not isinstance(item, dict):
        raise _Malformed("messaging item is not an object")
    sender = _required_id(item.get("sender"), "id", "sender.id")
    when = _from_ms(item.get("timestamp")) or context.time
    if "message" in item:
        return _message_event(context, item, sender, when)
    if "postback" in item:
        return _postback_event(context, item, sender, when)
    if "message_edit" in item:
        return _edit_event(context, item, sender, when)
    if "read" in item:
        read = _required_dict(item, "read")
        return _dm(context, "status", when, sender, status="read", watermark=_from_ms(read.get("watermark")))
    if "delivery" in item:
        delivery = _required_dict(item, "delivery")
        listed = delivery.get("mids")
        mids = [mid for mid in listed if isinstance(mid, str)] if isinstance(listed, list) else []
        return _dm(context, "status", when, sender, status="delivered", target_external_ids=mids,
                   watermark=_from_ms(delivery.get("watermark")))
    if "reaction" in item:
        return _dm(context, "ignored", when, sender, extra={"item": "reaction", "reaction": item["reaction"]})
    return _dm(context, "ignored", when, sender, extra={"item": "unknown", "raw": item})


def _message_event(context: _Entry, item: dict[str, Any], sender: str, when: datetime) -> InboundEvent:
    message = _required_dict(item, "message")
    mid = _required_str(message.get("mid"), "message.mid")
    if message.get("is_echo"):
        return _echo_event(context, item, message, mid, when)
    if message.get("is_deleted"):
        return _dm(context, "delete", when, sender, target_external_id=mid, dedupe_key=f"delete:{mid}")
    extra: dict[str, Any] = {}
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, dict) and "payload" in quick_reply:
        extra["quick_reply_payload"] = quick_reply["payload"]
    if "referral" in message:
        extra["referral"] = message["referral"]
    return _dm(context, "message", when, sender, external_id=mid, dedupe_key=mid, text=_text(message),
               attachments=_attachments(message.get("attachments")), reply_to=_reply_to_mid(message),
               extra=extra)


def _echo_event(context: _Entry, item: dict[str, Any], message: dict[str, Any], mid: str,
                when: datetime) -> InboundEvent:
    customer = _required_id(item.get("recipient"), "id", "recipient.id")
    app_id = message.get("app_id")
    return _dm(context, "echo", when, customer, author=Author(external_id=context.page_id),
               external_id=mid, dedupe_key=mid, text=_text(message),
               attachments=_attachments(message.get("attachments")), reply_to=_reply_to_mid(message),
               extra={"metadata": message.get("metadata"), "app_id": None if app_id is None else str(app_id)})


def _postback_event(context: _Entry, item: dict[str, Any], sender: str, when: datetime) -> InboundEvent:
    postback = _required_dict(item, "postback")
    payload = postback.get("payload")
    extra: dict[str, Any] = {"payload": payload}
    mid = _id_or_none(postback.get("mid"))
    if mid is None:
        # Redeliveries carry the same sender, timestamp and payload, so this id stays stable across them.
        seed = f"{sender}|{item.get('timestamp')}|{payload}".encode()
        mid = "postback:" + hashlib.sha256(seed).hexdigest()[:32]
        extra["synthetic_id"] = True
    if "referral" in postback:
        extra["referral"] = postback["referral"]
    return _dm(context, "postback", when, sender, external_id=mid, dedupe_key=mid,
               text=_text(postback, "title"), extra=extra)


def _edit_event(context: _Entry, item: dict[str, Any], sender: str, when: datetime) -> InboundEvent:
    edit = _required_dict(item, "message_edit")
    mid = _required_str(edit.get("mid"), "message_edit.mid")
    num_edit = edit.get("num_edit")
    return _dm(context, "edit", when, sender, target_external_id=mid, text=_text(edit),
               dedupe_key=f"edit:{mid}:{num_edit}:{item.get('timestamp')}", extra={"num_edit": num_edit})


def _dm(context: _Entry, kind: EventKind, when: datetime, psid: str, *, author: Author | None = None,
        **fields: Any) -> InboundEvent:
    """An event of the DM thread with `psid` (the customer, whoever wrote)."""
    return InboundEvent(route_key=context.page_id, kind=kind, platform_time=when, conversation_kind="dm",
                        thread_key=f"dm:{psid}", author=author or Author(external_id=psid), **fields)


def _attachments(raw: Any) -> list[Attachment]:
    if not isinstance(raw, list):
        return []
    return [_attachment(item) for item in raw]


def _attachment(raw: Any) -> Attachment:
    if not isinstance(raw, dict):
        return Attachment(type="unknown", payload={"raw": raw})
    payload = raw.get("payload") if isinstance(raw.get("payload"), dict) else {}
    # fallback attachments carry title/url beside a null payload: keep them
    details = {key: value for key, value in raw.items() if key not in ("type", "payload")}
    merged = {**details, **payload}
    url = next((value for value in (payload.get("url"), raw.get("url"), raw.get("URL"))
                if isinstance(value, str) and value), None)
    kind = raw.get("type")
    return Attachment(type=kind if isinstance(kind, str) and kind else "unknown", url=url, payload=merged)


def _reply_to_mid(message: dict[str, Any]) -> str | None:
    reply_to = message.get("reply_to")
    return _id_or_none(reply_to.get("mid")) if isinstance(reply_to, dict) else None


# --- Page feed (changes[] with field "feed"; created_time in seconds)

def _change_event(context: _Entry, change: Any) -> InboundEvent:
    if not isinstance(change, dict):
        raise _Malformed("change is not an object")
    field_name = change.get("field")
    if field_name != "feed":
        return _ignored(context, {"item": "unknown", "field": field_name, "raw": change})
    value = change.get("value")
    if not isinstance(value, dict):
        raise _Malformed("change value is not an object")
    item, verb = value.get("item"), value.get("verb")
    when = _from_seconds(value.get("created_time")) or context.time
    if item != "comment" or verb not in ("add", "edited", "remove"):
        return _ignored(context, {"item": item, "verb": verb}, when=when)
    return _comment_event(context, value, verb, when)


def _comment_event(context: _Entry, value: dict[str, Any], verb: str, when: datetime) -> InboundEvent:
    comment_id = _required_id(value, "comment_id", "comment_id")
    post = value.get("post") if isinstance(value.get("post"), dict) else {}
    post_id = _id_or_none(value.get("post_id")) or _id_or_none(post.get("id"))
    parent_id = _id_or_none(value.get("parent_id"))
    commenter = value.get("from") if isinstance(value.get("from"), dict) else {}
    commenter_id = _id_or_none(commenter.get("id"))
    by_page = commenter_id == context.page_id
    is_reply = parent_id is not None and parent_id != post_id
    event = InboundEvent(
        route_key=context.page_id, kind="comment", platform_time=when, conversation_kind="comment",
        author=Author(external_id=commenter_id, name=_text(commenter, "name")) if commenter_id else None,
        thread_key=_comment_thread_key(post_id, commenter_id, by_page),
        reply_to=parent_id if is_reply else None, text=_text(value, "message"),
        post=PostRef(external_id=post_id, text=_text(post, "message"), permalink=_text(post, "permalink_url"))
        if post_id else None,
        dedupe_key=f"comment:{comment_id}:{verb}:{value.get('created_time')}",
        extra={"verb": verb, "parent_id": parent_id, "post_id": post_id})
    if verb == "edited":
        event.kind, event.target_external_id = "edit", comment_id
        return event
    if verb == "remove":
        event.kind, event.target_external_id = "delete", comment_id
        return event
    if post_id is None:
        raise _Malformed("comment without post_id")
    if event.thread_key is None and not by_page:
        # no author (Meta withholds `from` in some cases): one conversation per top-level comment
        event.thread_key = f"comment:{post_id}:anonymous:{parent_id if is_reply else comment_id}"
    event.kind = "echo" if by_page else "comment"
    event.external_id = comment_id
    event.attachments = _comment_attachments(value)
    return event


def _comment_thread_key(post_id: str | None, commenter_id: str | None, by_page: bool) -> str | None:
    if by_page or post_id is None or commenter_id is None:
        return None
    return f"comment:{post_id}:{commenter_id}"


def _comment_attachments(value: dict[str, Any]) -> list[Attachment]:
    return [Attachment(type=kind, url=value[key]) for key, kind in (("photo", "image"), ("video", "video"))
            if isinstance(value.get(key), str) and value[key]]


# --- shared parsing helpers

def _ignored(context: _Entry, extra: dict[str, Any], *, when: datetime | None = None) -> InboundEvent:
    return InboundEvent(route_key=context.page_id, kind="ignored", platform_time=when or context.time,
                        extra=extra)


def _malformed(context: _Entry, raw: Any, reason: str) -> InboundEvent:
    return _ignored(context, {"item": "malformed", "reason": reason, "raw": raw})


def _required_dict(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise _Malformed(f"{key} is not an object")
    return value


def _required_id(container: Any, key: str, label: str) -> str:
    """`container[key]` as a string id (Meta ids are strings, sometimes integers); `label` names it."""
    value = _id_or_none(container.get(key)) if isinstance(container, dict) else None
    if value is None:
        raise _Malformed(f"missing {label}")
    return value


def _required_str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Malformed(f"missing {path}")
    return value


def _id_or_none(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value):
        return str(value)
    return None


def _text(container: dict[str, Any], key: str = "text") -> str | None:
    value = container.get(key)
    return value if isinstance(value, str) else None


def _from_ms(value: Any) -> datetime | None:
    number = _number(value)
    return None if number is None else _utc(number / 1000)


def _from_seconds(value: Any) -> datetime | None:
    number = _number(value)
    return None if number is None else _utc(number)


def _entry_time(value: Any) -> datetime:
    """entry.time is ms for messaging and seconds for feed entries: tell them apart by size."""
    number = _number(value)
    if number is None:
        return _now()
    # 1e11 seconds is the year 5138; 1e11 ms is 1973
    return _utc(number / 1000 if number > 1e11 else number) or _now()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _utc(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _now() -> datetime:
    return datetime.now(UTC)


_ENTRY_PARSERS: dict[str, Callable[[Any], list[InboundEvent]]] = {"page": _parse_page_entry}


# ----------------------------------------------------------------------------------------------------------
# Sending

def appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256(app_secret, access_token) as hex, sent with every Graph call."""
    return hmac.new(app_secret.encode("utf-8"), access_token.encode("utf-8"), hashlib.sha256).hexdigest()


def send_message(client: PlatformClient, creds: MetaCredentials, psid: str, text: str, *,
                 tag: str | None = None, metadata: str | None = None) -> SendResult:
    """Send a Messenger text to `psid`; returns the new message's mid.

    Without `tag` it is a RESPONSE (only inside the 24 h window); with a tag (normally HUMAN_AGENT_TAG, 7 days)
    a MESSAGE_TAG. `metadata` (our idempotency key) comes back in the echo's extra["metadata"].
    Raises PlatformError: non-retryable before any call when the text is empty or too long or the
    metadata too long; otherwise as mapped by PlatformClient (see `failure_reason`).
    """
    _check_text(text)
    message: dict[str, Any] = {"text": text}
    if metadata is not None:
        if len(metadata) >= MESSENGER_METADATA_LIMIT:
            raise PlatformError(f"metadata is {len(metadata)} characters; Messenger accepts fewer than "
                                f"{MESSENGER_METADATA_LIMIT}")
        message["metadata"] = metadata
    body: dict[str, Any] = {"recipient": {"id": psid}, "message": message}
    if tag:
        body.update(messaging_type="MESSAGE_TAG", tag=tag)
    else:
        body["messaging_type"] = "RESPONSE"
    return _send_api(client, creds, body)


def send_private_reply(client: PlatformClient, creds: MetaCredentials, comment_id: str,
                       text: str) -> SendResult:
    """Answer a comment in private (one message per comment, within 7 days); returns the new mid.

    A second private reply to the same comment fails with code 10900 (`is_already_replied`).
    """
    _check_text(text)
    return _send_api(client, creds, {"recipient": {"comment_id": comment_id}, "messaging_type": "RESPONSE",
                                     "message": {"text": text}})


def reply_to_comment(client: PlatformClient, creds: MetaCredentials, comment_id: str,
                     text: str) -> SendResult:
    """Publish the page's public reply under a comment; returns the new comment id."""
    if not text or not text.strip():
        raise PlatformError("reply text is empty")
    answer = client.request("POST", f"/{_segment(comment_id)}/comments", params=_auth(creds),
                            json={"message": text})
    return SendResult(external_id=_answer_id(answer, "id"), raw=answer)


_MODERATION: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "hide": ("POST", "", {"is_hidden": True}),
    "unhide": ("POST", "", {"is_hidden": False}),
    "delete": ("DELETE", "", None),
    "like": ("POST", "/likes", None),
    "unlike": ("DELETE", "/likes", None),
}


def moderate_comment(client: PlatformClient, creds: MetaCredentials, comment_id: str,
                     action: ModerationAction) -> None:
    """Hide, unhide, delete, like or unlike a comment as the page.

    Raises ValueError for an unknown action, PlatformError when Graph refuses or answers success=false.
    """
    if action not in _MODERATION:
        raise ValueError(f"unknown moderation action {action!r}; expected one of {sorted(_MODERATION)}")
    method, suffix, body = _MODERATION[action]
    answer = client.request(method, f"/{_segment(comment_id)}{suffix}", params=_auth(creds), json=body)
    if answer.get("success") is False or answer.get("data") is False:
        raise PlatformError(f"Graph refused to {action} comment {comment_id}")


PROFILE_FIELDS = "first_name,last_name,profile_pic"
GRAPH_BATCH_LIMIT = 50  # calls in one Graph batch request [doc: graph-api/batch-requests]


def get_user_profile(client: PlatformClient, creds: MetaCredentials, psid: str) -> Author:
    """The customer's name and picture (Messenger webhooks carry only the PSID)."""
    answer = client.request("GET", f"/{_segment(psid)}", params={**_auth(creds), "fields": PROFILE_FIELDS})
    return _profile_author(psid, answer)


def get_user_profiles(client: PlatformClient, creds: MetaCredentials,
                      psids: list[str]) -> list[Author | PlatformError]:
    """The names and pictures of up to GRAPH_BATCH_LIMIT customers of one page in ONE call: a Graph batch request
    (POST to the version root with `batch`, a JSON array of {"method": "GET", "relative_url": "<PSID>?fields=..."},
    and `include_headers=false`). Graph answers an array in the same order, each item {"code", "body": the call's
    JSON as a string}, or null for a call that did not complete; each call counts against the rate limits as one.

    Returns, for each psid in order, its Author, or the PlatformError of its own call: its Graph error envelope
    (`graph_error`: retryable for rate limits and transient codes), retryable for a call that did not complete.
    Raises PlatformError when the whole request fails (as `PlatformClient.request`), and a retryable one when the
    answer is not such an array."""
    if not psids or len(psids) > GRAPH_BATCH_LIMIT:
        raise ValueError(f"a Graph batch holds 1 to {GRAPH_BATCH_LIMIT} calls, not {len(psids)}")
    batch = [{"method": "GET", "relative_url": f"{_segment(psid)}?fields={PROFILE_FIELDS}"} for psid in psids]
    answer = client.request("POST", "", data={**_auth(creds), "batch": json.dumps(batch),
                                              "include_headers": "false"})
    items = answer.get("data")
    if not isinstance(items, list) or len(items) != len(psids):
        raise PlatformError(f"Graph batch answer is not a list of {len(psids)} results", retryable=True)
    return [_batch_item_profile(psid, item) for psid, item in zip(psids, items)]


def _batch_item_profile(psid: str, item: Any) -> Author | PlatformError:
    if not isinstance(item, dict):
        return PlatformError("Graph batch call did not complete", retryable=True)
    status = item.get("code") if type(item.get("code")) is int else None
    try:
        body = json.loads(item["body"]) if isinstance(item.get("body"), str) else None
    except ValueError:
        body = None
    if status is not None and 200 <= status < 300 and isinstance(body, dict):
        return _profile_author(psid, body)
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        return graph_error(envelope, http_status=status)
    return PlatformError(f"Graph batch call answered HTTP {status} without a profile", http_status=status,
                         retryable=status is None or status == 429 or status >= 500)


def _profile_author(psid: str, answer: Mapping[str, Any]) -> Author:
    names = [answer.get(key) for key in ("first_name", "last_name")]
    name = " ".join(part for part in names if isinstance(part, str) and part) or None
    picture = answer.get("profile_pic")
    return Author(external_id=psid, name=name, avatar_url=picture if isinstance(picture, str) else None)


def _send_api(client: PlatformClient, creds: MetaCredentials, body: dict[str, Any]) -> SendResult:
    answer = client.request("POST", f"/{_segment(creds.page_id)}/messages", params=_auth(creds), json=body)
    return SendResult(external_id=_answer_id(answer, "message_id"), raw=answer)


def _auth(creds: MetaCredentials) -> dict[str, str]:
    return {"access_token": creds.access_token,
            "appsecret_proof": appsecret_proof(creds.app_secret, creds.access_token)}


def _segment(object_id: str) -> str:
    # ids come from webhooks: quoting keeps a hostile one from reaching another Graph path
    return quote(str(object_id), safe="")


def _check_text(text: str) -> None:
    if not text or not text.strip():
        raise PlatformError("message text is empty")
    length = _utf16_length(text)
    if length >= MESSENGER_TEXT_LIMIT:
        raise PlatformError(f"message text is {length} characters; Messenger accepts fewer than "
                            f"{MESSENGER_TEXT_LIMIT}")


def _utf16_length(text: str) -> int:
    """Length as Meta counts it, conservatively: an emoji outside the BMP counts as two."""
    return len(text.encode("utf-16-le")) // 2


def _answer_id(answer: dict[str, Any], key: str) -> str:
    value = _id_or_none(answer.get(key))
    if value is None:
        # The call most likely succeeded: sending again could duplicate, so not retryable.
        raise PlatformError(f"unexpected Graph answer without {key}: {str(answer)[:200]}", maybe_delivered=True)
    return value


# ----------------------------------------------------------------------------------------------------------
# Known errors

OUTSIDE_WINDOW_CODE, OUTSIDE_WINDOW_SUBCODE = 10, 2018278
ALREADY_REPLIED_CODE = 10900
RECIPIENT_UNAVAILABLE_CODE = 551
INVALID_TOKEN_CODE = 190


def is_outside_window(err: PlatformError) -> bool:
    """The 24 h (or 7 d tagged) reply window is closed: code 10 / subcode 2018278, or Graph's message."""
    if err.code == OUTSIDE_WINDOW_CODE and err.subcode == OUTSIDE_WINDOW_SUBCODE:
        return True
    return "outside of allowed window" in err.message.lower()


def is_already_replied(err: PlatformError) -> bool:
    """A private reply was already sent for this comment (code 10900)."""
    return err.code == ALREADY_REPLIED_CODE


def is_recipient_unavailable(err: PlatformError) -> bool:
    """The person cannot be messaged right now (code 551)."""
    return err.code == RECIPIENT_UNAVAILABLE_CODE


def is_token_invalid(err: PlatformError) -> bool:
    """The page token expired or was revoked (code 190): the channel needs reconnecting."""
    return err.code == INVALID_TOKEN_CODE


def is_permission_denied(err: PlatformError) -> bool:
    """The app or token lacks a permission (code 10 other than the window, 200-299)."""
    if err.code == OUTSIDE_WINDOW_CODE:
        return not is_outside_window(err)
    return err.code is not None and 200 <= err.code <= 299


def is_rate_limited(err: PlatformError) -> bool:
    """Throttled by Meta (4, 17, 32, 613, 80000-80014) or HTTP 429."""
    return (err.code in (4, 17, 32, 613) or (err.code is not None and 80000 <= err.code <= 80014)
            or err.http_status == 429)


def failure_reason(err: PlatformError) -> str:
    """A short stable reason for a failed send, for the message's status and the agent's UI:
    outside_window, already_replied, recipient_unavailable, token_invalid, permission_denied, rate_limited,
    transient (retry later) or rejected (anything else, permanent)."""
    checks: tuple[tuple[str, Callable[[PlatformError], bool]], ...] = (
        ("outside_window", is_outside_window), ("already_replied", is_already_replied),
        ("recipient_unavailable", is_recipient_unavailable), ("token_invalid", is_token_invalid),
        ("permission_denied", is_permission_denied), ("rate_limited", is_rate_limited))
    for reason, check in checks:
        if check(err):
            return reason
    if err.retryable or is_retryable_graph_code(err.code):
        return "transient"
    return "rejected"
