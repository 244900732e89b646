"""From stored raw webhook events to conversations and messages: nothing lost, nothing doubled.

`drain_webhook_events()` claims a batch of pending events (FOR UPDATE SKIP LOCKED on PostgreSQL, so several
workers never take the same ones), applies each in its own savepoint inside ONE transaction, commits, and the
live events recorded with `realtime.publish` go out after the commit. It loops while events are pending.
Messages are inserted with ON CONFLICT (channel_id, external_id) DO NOTHING: a duplicate delivery, or two
workers on the same platform event, give one message.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters import api as api_adapter
from adapters import meta as meta_adapter
from adapters.base import InboundEvent, PayloadError
from inbox import realtime
from inbox.api.schemas import ConversationSchema, MessageSchema
from inbox.db import db, insert_for, utcnow
from inbox.jobs import enqueue_after_commit
from inbox.models import Channel, Contact, ContactIdentity, Conversation, Message, Post, WebhookEvent
from inbox.services import channels as channel_service
from inbox.services import assignment, sla
from inbox.settings import get_settings

log = logging.getLogger(__name__)
PREVIEW_LENGTH = 280
_conversation_schema = ConversationSchema()
_message_schema = MessageSchema()


class RetryLater(Exception):
    """The event refers to something not seen yet (an edit before its message): try again later."""


@dataclass
class BatchContext:
    session: Session
    received_at: datetime
    channels_by_page: dict[str, Channel | None] = field(default_factory=dict)
    touched: dict[int, bool] = field(default_factory=dict)   # conversation id -> created in this batch
    stats: dict[str, Any] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n


# ---------------------------------------------------------------- the drain
def drain_webhook_events(*, batch_size: int = 200, time_budget: float = 30.0) -> int:
    """Process pending raw events until none is left (or the time budget is spent). Returns how many.

    Writes: conversations, messages, contacts, posts, webhook event statuses. Publishes: conversation.created,
    conversation.updated, message.created, message.updated (after each batch's commit)."""
    started = time.monotonic()
    total = 0
    while time.monotonic() - started < time_budget:
        done = _drain_one_batch(batch_size)
        total += done
        if done < batch_size:
            break
    return total


def _claim(session: Session, batch_size: int) -> list[WebhookEvent]:
    now = utcnow()
    query = (select(WebhookEvent)
             .where(or_(WebhookEvent.status == "pending",
                        (WebhookEvent.status == "failed") & (WebhookEvent.next_attempt_at <= now)))
             .order_by(WebhookEvent.id).limit(batch_size))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query).scalars())


def _drain_one_batch(batch_size: int) -> int:
    settings = get_settings()
    with db.transaction() as session:
        events = _claim(session, batch_size)
        if not events:
            return 0
        ctx = BatchContext(session=session, received_at=utcnow())
        for event in events:
            _process_one(ctx, event, settings.event_max_attempts)
        _publish_touched_conversations(ctx)
    return len(events)


def _process_one(ctx: BatchContext, event: WebhookEvent, max_attempts: int) -> None:
    session = ctx.session
    mark = realtime.pending_count(session)
    ctx.stats = {}
    savepoint = session.begin_nested()
    try:
        status = _apply_raw_event(ctx, event)
        savepoint.commit()
        event.status = status
        event.error = None if status == "processed" else event.error
        event.processed_at = utcnow()
        event.stats = dict(ctx.stats)
    except Exception as exc:  # noqa: BLE001 - one bad event must not block the others; it is kept and retried
        savepoint.rollback()
        realtime.discard_after(session, mark)
        event.attempts += 1
        permanent = isinstance(exc, PayloadError)
        event.error = f"{type(exc).__name__}: {exc}"[:4000]
        if permanent:
            event.status = "invalid"
        elif event.attempts >= max_attempts:
            event.status = "dead"
            log.error("webhook event %s dead after %s attempts: %s", event.id, event.attempts, exc)
        else:
            event.status = "failed"
            event.next_attempt_at = utcnow() + timedelta(seconds=min(600, 5 * 2 ** event.attempts))
        if not isinstance(exc, RetryLater | PayloadError):
            log.exception("webhook event %s failed (attempt %s)", event.id, event.attempts)


def _apply_raw_event(ctx: BatchContext, event: WebhookEvent) -> str:
    """Apply every normalised event of one raw webhook; returns the raw event's new status."""
    if event.source == "meta":
        inbound = meta_adapter.parse(event.body)
        fingerprint = event.verification_detail
        unroutable: list[str] = []
        for item in inbound:
            channel = _meta_channel(ctx, item.route_key, fingerprint)
            if channel is None:
                unroutable.append(item.route_key)
                ctx.count("unroutable")
                continue
            apply_inbound(ctx, channel, item)
        if unroutable:
            ctx.stats["unroutable_ids"] = sorted(set(unroutable))
            event.error = f"no connected channel for id(s) {', '.join(sorted(set(unroutable)))}"
            return "unroutable"
        return "processed"
    if event.source == "api":
        channel = ctx.session.get(Channel, event.channel_id) if event.channel_id else None
        if channel is None:
            event.error = "the API channel no longer exists"
            return "unroutable"
        for item in api_adapter.parse(event.body, str(channel.id)):
            apply_inbound(ctx, channel, item)
        return "processed"
    raise PayloadError(f"unknown webhook source {event.source!r}")


def _meta_channel(ctx: BatchContext, page_id: str, fingerprint: str | None) -> Channel | None:
    """The page's channel, only if the event was signed with that page's own app secret."""
    if page_id not in ctx.channels_by_page:
        channel = channel_service.channel_by_page(ctx.session, page_id)
        if channel is not None:
            from inbox.webhooks import app_secret_fingerprint
            if app_secret_fingerprint(channel_service.credentials(channel)["app_secret"]) != fingerprint:
                log.warning("event for page %s signed by another Meta app: not routed", page_id)
                channel = None
        ctx.channels_by_page[page_id] = channel
    return ctx.channels_by_page[page_id]


# ---------------------------------------------------------------- one normalised event
def apply_inbound(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    """Apply one normalised event to the channel's conversations (inside the caller's transaction)."""
    ctx.count(item.kind)
    if item.kind in ("message", "postback", "comment"):
        _apply_customer_message(ctx, channel, item)
    elif item.kind == "echo":
        _apply_echo(ctx, channel, item)
    elif item.kind == "edit":
        _apply_edit(ctx, channel, item)
    elif item.kind == "delete":
        _apply_delete(ctx, channel, item)
    elif item.kind == "status":
        _apply_status(ctx, channel, item)
    else:
        ctx.count(f"ignored:{item.extra.get('item', 'unknown')}")


def customer_time(item: InboundEvent, received_at: datetime) -> datetime:
    """The platform's time, capped at our reception time if the platform's clock is ahead (design.md)."""
    return min(item.platform_time, received_at)


def _identity_kind(channel: Channel) -> str:
    # API channel ids are the integrator's own: scope them to the channel so two integrators never collide
    return f"api:{channel.id}" if channel.kind == "api" else channel.kind


def upsert_contact(session: Session, channel: Channel, item: InboundEvent) -> Contact:
    """The contact behind the event's author, created with its identity on first sight (unique per kind)."""
    assert item.author is not None
    kind, external_id = _identity_kind(channel), item.author.external_id
    query = select(ContactIdentity).where(ContactIdentity.channel_kind == kind,
                                          ContactIdentity.external_id == external_id)
    identity = session.execute(query).scalar_one_or_none()
    if identity is None:
        try:
            with session.begin_nested():
                contact = Contact(name=item.author.name, handle=item.author.handle,
                                  avatar_url=item.author.avatar_url)
                session.add(contact)
                session.flush()
                identity = ContactIdentity(contact_id=contact.id, channel_kind=kind, external_id=external_id,
                                           name=item.author.name, handle=item.author.handle,
                                           avatar_url=item.author.avatar_url)
                session.add(identity)
                session.flush()
                if not item.author.name and channel.kind == "facebook_page" and item.conversation_kind == "dm":
                    from inbox.jobs.tasks import fetch_contact_profile
                    enqueue_after_commit(session, fetch_contact_profile, identity.id, channel.id)
                return contact
        except IntegrityError:  # another worker created it between our read and our insert
            identity = session.execute(query).scalar_one()
    contact = session.get(Contact, identity.contact_id)
    assert contact is not None
    if item.author.name and item.author.name != identity.name:
        identity.name = item.author.name
        if not contact.name or contact.name == identity.name:
            contact.name = item.author.name
    return contact


def upsert_post(session: Session, channel: Channel, item: InboundEvent) -> Post | None:
    if item.post is None:
        return None
    values = {"channel_id": channel.id, "external_id": item.post.external_id, "text": item.post.text,
              "permalink": item.post.permalink, "created_at": utcnow(), "updated_at": utcnow()}
    session.execute(insert_for(session, Post).values(**values)
                    .on_conflict_do_nothing(index_elements=["channel_id", "external_id"]))
    post = session.execute(select(Post).where(Post.channel_id == channel.id,
                                              Post.external_id == item.post.external_id)).scalar_one()
    if item.post.text and not post.text:
        post.text = item.post.text
    if item.post.permalink and not post.permalink:
        post.permalink = item.post.permalink
    return post


def find_or_open_conversation(ctx: BatchContext, channel: Channel, thread_key: str, kind: str,
                              contact: Contact, post: Post | None) -> Conversation:
    """The conversation of (channel, thread_key), opened if new; locked for update on PostgreSQL."""
    session = ctx.session
    now = utcnow()
    stmt = (insert_for(session, Conversation)
            .values(kind=kind, status="open", priority=1, brand_id=channel.brand_id, channel_id=channel.id,
                    contact_id=contact.id, thread_key=thread_key, post_id=post.id if post else None,
                    created_at=now, updated_at=now, extra={})
            .on_conflict_do_nothing(index_elements=["channel_id", "thread_key"])
            .returning(Conversation.id))
    created_id = session.execute(stmt).scalar()
    query = select(Conversation).where(Conversation.channel_id == channel.id, Conversation.thread_key == thread_key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    conversation = session.execute(query.execution_options(populate_existing=True)).scalar_one()
    if created_id is not None:
        ctx.touched[conversation.id] = True
    else:
        ctx.touched.setdefault(conversation.id, False)
    return conversation


def insert_message(session: Session, values: dict[str, Any]) -> Message | None:
    """INSERT ... ON CONFLICT (channel_id, external_id) DO NOTHING; the new Message, or None if it existed."""
    values.setdefault("attachments", [])
    values.setdefault("edit_history", [])
    values.setdefault("extra", {})
    values.setdefault("hidden", False)
    values.setdefault("liked", False)
    values.setdefault("delivery_attempts", 0)
    stmt = (insert_for(session, Message).values(**values)
            .on_conflict_do_nothing(index_elements=["channel_id", "external_id"])
            .returning(Message.id))
    new_id = session.execute(stmt).scalar()
    return session.get(Message, new_id) if new_id is not None else None


def _preview(text: str | None, attachments: list[Any]) -> str | None:
    if text:
        return text[:PREVIEW_LENGTH]
    if attachments:
        return f"[{attachments[0].type if hasattr(attachments[0], 'type') else 'attachment'}]"
    return None


def note_inbound(conversation: Conversation, at: datetime, preview: str | None) -> None:
    """A customer message at `at` (platform time): waiting, reopened, preview (out-of-order safe)."""
    if conversation.first_inbound_at is None or at < conversation.first_inbound_at:
        conversation.first_inbound_at = at
    if conversation.last_inbound_at is None or at > conversation.last_inbound_at:
        conversation.last_inbound_at = at
    answered = conversation.last_outbound_at is not None and at <= conversation.last_outbound_at
    if not answered and (conversation.waiting_since is None or at < conversation.waiting_since):
        conversation.waiting_since = at
    if conversation.status != "open" and not answered:
        conversation.status = "open"
        conversation.snoozed_until = None
        conversation.resolved_at = None
    _note_last_message(conversation, at, preview, "in")


def note_public_reply(conversation: Conversation, at: datetime, preview: str | None) -> None:
    """A public reply went out at `at`: everything the customer sent before it is answered."""
    if conversation.last_outbound_at is None or at > conversation.last_outbound_at:
        conversation.last_outbound_at = at
    if conversation.waiting_since is not None and conversation.waiting_since <= at:
        conversation.waiting_since = None
    _note_last_message(conversation, at, preview, "out")


def _note_last_message(conversation: Conversation, at: datetime, preview: str | None, direction: str) -> None:
    if conversation.last_message_at is None or at >= conversation.last_message_at:
        conversation.last_message_at = at
        conversation.last_message_preview = preview
        conversation.last_message_direction = direction
    conversation.updated_at = utcnow()


def _apply_customer_message(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    session = ctx.session
    if item.author is None or item.thread_key is None or item.external_id is None:
        ctx.count("ignored:incomplete")
        return
    contact = upsert_contact(session, channel, item)
    post = upsert_post(session, channel, item)
    conversation = find_or_open_conversation(ctx, channel, item.thread_key, item.conversation_kind, contact, post)
    at = customer_time(item, ctx.received_at)
    reply_to = _message_by_external_id(session, channel.id, item.reply_to) if item.reply_to else None
    extra = {k: v for k, v in item.extra.items() if k in ("quick_reply_payload", "postback_payload", "verb",
                                                          "parent_id", "post_id", "echo_id", "payload")}
    if item.kind == "postback":
        extra.setdefault("postback_payload", item.extra.get("payload"))
    message = insert_message(session, {
        "conversation_id": conversation.id, "channel_id": channel.id, "direction": "in",
        "kind": "comment" if item.kind == "comment" else "message", "external_id": item.external_id,
        "author_type": "contact", "author_contact_id": contact.id, "author_name": item.author.name or contact.name,
        "text": item.text, "attachments": [a.as_dict() for a in item.attachments],
        "reply_to_id": reply_to.id if reply_to else None, "reply_to_external_id": item.reply_to,
        "platform_time": at, "received_at": ctx.received_at, "extra": extra,
    })
    if message is None:
        ctx.count("duplicates")
        return
    note_inbound(conversation, at, _preview(item.text, item.attachments))
    realtime.publish(session, "message.created", _message_schema.dump(message),
                     realtime.conversation_rooms(conversation.brand_id, conversation.id))


def _message_by_external_id(session: Session, channel_id: int, external_id: str | None) -> Message | None:
    if not external_id:
        return None
    return session.execute(select(Message).where(Message.channel_id == channel_id,
                                                 Message.external_id == external_id)).scalar_one_or_none()


def _apply_echo(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    """Our own send coming back (matched by metadata = idempotency key, or by mid), or a teammate's native
    reply on the platform: stored as an outbound public reply, which answers the customer."""
    session = ctx.session
    key = item.extra.get("metadata")
    if key:
        ours = session.execute(select(Message).where(Message.idempotency_key == key)).scalar_one_or_none()
        if ours is not None:
            if ours.external_id is None and item.external_id:
                ours.external_id = item.external_id
            if ours.delivery_status in ("queued", "sending", "unknown", "failed"):
                _mark_sent(session, ours, item.platform_time)
            ctx.count("echo_matched")
            return
    if _message_by_external_id(session, channel.id, item.external_id) is not None:
        ctx.count("duplicates")
        return
    conversation = _echo_conversation(ctx, channel, item)
    if conversation is None:
        ctx.count("ignored:echo_without_thread")
        return
    at = min(item.platform_time, ctx.received_at)
    message = insert_message(session, {
        "conversation_id": conversation.id, "channel_id": channel.id, "direction": "out",
        "kind": "comment" if item.conversation_kind == "comment" else "message", "reply_type": "reply",
        "external_id": item.external_id, "author_type": "page", "author_name": channel.name, "text": item.text,
        "attachments": [a.as_dict() for a in item.attachments], "reply_to_external_id": item.reply_to,
        "platform_time": at, "received_at": ctx.received_at, "delivery_status": "sent", "sent_at": at,
        "extra": {"native": True, "app_id": item.extra.get("app_id")},
    })
    if message is None:
        ctx.count("duplicates")
        return
    ctx.touched.setdefault(conversation.id, False)
    note_public_reply(conversation, at, _preview(item.text, item.attachments))
    realtime.publish(session, "message.created", _message_schema.dump(message),
                     realtime.conversation_rooms(conversation.brand_id, conversation.id))


def _echo_conversation(ctx: BatchContext, channel: Channel, item: InboundEvent) -> Conversation | None:
    session = ctx.session
    if item.conversation_kind == "comment":
        parent = _message_by_external_id(session, channel.id, item.reply_to)
        return session.get(Conversation, parent.conversation_id) if parent else None
    if item.thread_key is None:
        return None
    conversation = session.execute(select(Conversation).where(
        Conversation.channel_id == channel.id, Conversation.thread_key == item.thread_key)).scalar_one_or_none()
    if conversation is None and item.author is not None:
        # the page wrote first (natively): open the thread with the customer (the echo's recipient)
        recipient = item.extra.get("recipient_id") or item.thread_key.split(":", 1)[-1]
        contact_event = InboundEvent(route_key=item.route_key, kind="message", platform_time=item.platform_time,
                                     author=type(item.author)(external_id=recipient))
        contact = upsert_contact(session, channel, contact_event)
        conversation = find_or_open_conversation(ctx, channel, item.thread_key, "dm", contact, None)
    return conversation


def _mark_sent(session: Session, message: Message, at: datetime) -> None:
    message.delivery_status = "sent"
    message.delivery_error = None
    message.sent_at = message.sent_at or at
    conversation = session.get(Conversation, message.conversation_id)
    assert conversation is not None
    note_public_reply(conversation, at, message.text[:PREVIEW_LENGTH] if message.text else None)
    realtime.publish(session, "message.updated", _message_schema.dump(message),
                     realtime.conversation_rooms(conversation.brand_id, conversation.id))
    realtime.publish(session, "conversation.updated", _conversation_schema.dump(conversation),
                     realtime.conversation_rooms(conversation.brand_id, conversation.id))


def _apply_edit(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    session = ctx.session
    message = _message_by_external_id(session, channel.id, item.target_external_id)
    if message is None:
        if item.conversation_kind == "comment" and item.author is not None and item.thread_key:
            # an edit of a comment we never saw: keep it as the comment itself
            item.external_id = item.target_external_id
            _apply_customer_message(ctx, channel, item)
            return
        raise RetryLater(f"edit of unknown message {item.target_external_id}")
    at = item.platform_time
    if message.edited_at is not None and at <= message.edited_at or message.text == item.text:
        ctx.count("duplicates")
        return
    message.edit_history = [*message.edit_history, {"text": message.text, "replaced_at": at.isoformat()}]
    message.text = item.text
    message.edited_at = at
    _publish_message_update(ctx, message)


def _apply_delete(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    message = _message_by_external_id(ctx.session, channel.id, item.target_external_id)
    if message is None:
        ctx.count("ignored:delete_of_unknown")
        return
    if message.deleted_at is None:
        message.deleted_at = item.platform_time
        _publish_message_update(ctx, message)


def _apply_status(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    """Delivery and read receipts for our outbound messages (by message ids and/or a watermark)."""
    session = ctx.session
    status = item.status
    if status not in ("delivered", "read"):
        ctx.count("ignored:status")
        return
    rank = {"sent": 1, "unknown": 1, "delivered": 2, "read": 3}
    targets: list[Message] = []
    ids = list(item.target_external_ids) + ([item.target_external_id] if item.target_external_id else [])
    if ids:
        targets += session.execute(select(Message).where(Message.channel_id == channel.id,
                                                         Message.external_id.in_(ids),
                                                         Message.direction == "out")).scalars()
    if item.watermark is not None and item.thread_key:
        conversation_id = session.execute(select(Conversation.id).where(
            Conversation.channel_id == channel.id, Conversation.thread_key == item.thread_key)).scalar()
        if conversation_id is not None:
            targets += session.execute(select(Message).where(
                Message.conversation_id == conversation_id, Message.direction == "out",
                Message.platform_time <= item.watermark,
                Message.delivery_status.in_(("sent", "delivered", "unknown")))).scalars()
    for message in {m.id: m for m in targets}.values():
        if rank.get(message.delivery_status or "", 0) >= rank[status] or message.delivery_status not in rank:
            continue
        message.delivery_status = status
        if status == "read":
            message.read_at = item.watermark or item.platform_time
        message.delivered_at = message.delivered_at or item.watermark or item.platform_time
        _publish_message_update(ctx, message)


def _publish_message_update(ctx: BatchContext, message: Message) -> None:
    conversation = ctx.session.get(Conversation, message.conversation_id)
    assert conversation is not None
    realtime.publish(ctx.session, "message.updated", _message_schema.dump(message),
                     realtime.conversation_rooms(conversation.brand_id, conversation.id))


def _publish_touched_conversations(ctx: BatchContext) -> None:
    """One conversation.created / conversation.updated per conversation per batch, with its final state."""
    for conversation_id, created in ctx.touched.items():
        conversation = ctx.session.get(Conversation, conversation_id)
        if conversation is None:
            continue
        ctx.session.flush()
        assignment.route_conversation(ctx.session, conversation)  # team, language, auto-assignment
        sla.refresh_conversation(ctx.session, conversation, "ingest")
        name = "conversation.created" if created else "conversation.updated"
        realtime.publish(ctx.session, name, _conversation_schema.dump(conversation),
                         realtime.conversation_rooms(conversation.brand_id, conversation.id))
    ctx.touched.clear()


