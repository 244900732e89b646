"""The normalised shapes every adapter produces and the errors every sender raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

EventKind = Literal[
    "message",   # a customer's DM (text, attachments, quick reply)
    "postback",  # a button press in a DM; stored as an inbound message
    "comment",   # a customer's public comment (or reply to a comment) under a post
    "echo",      # our own or a teammate's native reply, seen coming back: stored as outbound
    "edit",      # the text of an existing message/comment changed (target_external_id)
    "delete",    # an existing message/comment was removed (target_external_id)
    "status",    # delivery / read receipt for our outbound messages (status + watermark or target ids)
    "ignored",   # a shape we deliberately do not turn into messages (reactions, likes, shares...): counted
]
ConversationKind = Literal["dm", "comment"]


class SignatureError(Exception):
    """The request is not authentic: missing or wrong signature, stale timestamp. `reason` is logged."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PayloadError(Exception):
    """The body is authentic but not a shape we can read at all (not JSON, no entries...)."""


@dataclass(frozen=True)
class Author:
    external_id: str
    name: str | None = None
    handle: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True)
class Attachment:
    type: str                       # image, audio, video, file, sticker, fallback, ...
    url: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "url": self.url, "payload": self.payload}


@dataclass(frozen=True)
class PostRef:
    """The brand's post a comment thread belongs to."""
    external_id: str
    text: str | None = None
    permalink: str | None = None


@dataclass
class InboundEvent:
    """One normalised thing that happened on a platform.

    route_key      which of our channels it belongs to (Meta: entry.id = page id; API channel: channel id)
    kind           see EventKind
    external_id    the platform id of the message/comment itself (unique per channel); None for status/ignored
    thread_key     the conversation key within the channel: "dm:<psid>" or "comment:<post_id>:<author_id>"
    platform_time  timezone-aware UTC
    reply_to       platform id of the message/comment this one answers (Messenger reply_to.mid, comment parent_id)
    target_external_id  for edit / delete / single-message status: the message concerned
    status         for kind "status": "delivered" | "read"; watermark = everything up to this time
    """
    route_key: str
    kind: EventKind
    platform_time: datetime
    conversation_kind: ConversationKind = "dm"
    external_id: str | None = None
    thread_key: str | None = None
    author: Author | None = None
    text: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    reply_to: str | None = None
    post: PostRef | None = None
    target_external_id: str | None = None
    target_external_ids: list[str] = field(default_factory=list)
    status: str | None = None
    watermark: datetime | None = None
    # platform extras kept for the agent and for matching echoes: quick_reply / postback payloads,
    # num_edit, app_id, echo metadata (our idempotency key), ignored item type, comment verb...
    extra: dict[str, Any] = field(default_factory=dict)
    # identifies this event (not the message) so a redelivered webhook is applied once: for messages the
    # external id; for edits/deletes it includes the edit number or the platform time, because one
    # message can be edited several times. None for status / ignored events (idempotent or only counted).
    dedupe_key: str | None = None


@dataclass(frozen=True)
class SendResult:
    external_id: str
    raw: dict[str, Any] = field(default_factory=dict)


class PlatformError(Exception):
    """A platform refused or failed a call.

    retryable    True for transient errors and rate limits (retry with backoff), False for permanent refusals
    retry_after  seconds the platform asked us to wait, when it said so
    error_type   the platform's error class when it gives one (Graph: "OAuthException"...), for logs
    trace_id     the platform's request id for support tickets (Graph: fbtrace_id)
    maybe_delivered  the request reached the platform but its answer was lost or unreadable (read timeout,
                 connection dropped mid-answer, 2xx without an id): sending again may duplicate the message
    """

    def __init__(self, message: str, *, code: int | None = None, subcode: int | None = None,
                 http_status: int | None = None, retryable: bool = False, retry_after: float | None = None,
                 error_type: str | None = None, trace_id: str | None = None, maybe_delivered: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after = retry_after
        self.error_type = error_type
        self.trace_id = trace_id
        self.maybe_delivered = maybe_delivered

    def __str__(self) -> str:
        bits = [self.message]
        if self.code is not None:
            bits.append(f"(code {self.code}" + (f"/{self.subcode}" if self.subcode else "") + ")")
        return " ".join(bits)
