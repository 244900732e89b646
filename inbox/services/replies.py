"""Agents' replies, private replies and internal notes; moderation of comments."""
from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import realtime
from inbox.api.schemas import PageRefs, conversation_model_json, message_item_json
from inbox.db import utcnow
from inbox.errors import Conflict, DomainError, NotFound, ReplyWindowClosed, ValidationFailed
from inbox.jobs import SEND, enqueue_after_commit
from inbox.models import Agent, Conversation, Message
from inbox.services import access, handoff
from inbox.services.windows import private_reply_open, reply_window

MESSENGER_MAX_TEXT = 2000


class PlatformRefused(DomainError):
    status = 502
    code = "platform_error"


def create_reply(session: Session, agent: Agent, conversation_id: int, *, text: str, kind: str,
                 reply_to_message_id: int | None = None, idempotency_key: str | None = None) -> Message:
    """Checks access and the platform window, writes an outbound Message (status queued; notes: no status),
    assigns an unassigned conversation to the replying agent, publishes message.created (and
    conversation.updated), and enqueues send_message after commit. A repeated idempotency_key returns the
    message created the first time instead of a second one."""
    if idempotency_key:
        existing = session.execute(
            select(Message).where(Message.idempotency_key == idempotency_key)).scalar_one_or_none()
        if existing is not None:
            access.get_conversation_for(session, agent, existing.conversation_id)
            return existing
    conversation = access.get_conversation_for(session, agent, conversation_id, lock=True)
    now = utcnow()
    rooms = realtime.message_rooms(conversation.id)
    values = {"conversation_id": conversation.id, "channel_id": conversation.channel_id, "direction": "out",
              "author_type": "agent", "author_agent_id": agent.id, "author_name": agent.name, "text": text,
              "platform_time": now, "received_at": now, "attachments": [], "edit_history": [], "extra": {}}
    if kind == "note":
        message = Message(kind="note", **values)
        session.add(message)
        session.flush()
        realtime.publish(session, "message.created", message_item_json(message), rooms)
        return message

    extra: dict[str, object] = {}
    target: Message | None = None
    if kind == "private_reply":
        if conversation.kind != "comment":
            raise ValidationFailed("private replies answer a comment", fields={"kind": ["only for comments"]})
        target = _target_comment(session, conversation, reply_to_message_id)
        if not private_reply_open(target.platform_time, now):
            raise ReplyWindowClosed("a private reply is only possible within 7 days of the comment")
        if _already_private_replied(session, target):
            raise Conflict("this comment already received its one private reply", code="already_replied")
    elif conversation.kind == "comment":
        target = _target_comment(session, conversation, reply_to_message_id)
    else:
        window = reply_window(conversation, now)
        if not window["open"]:
            raise ReplyWindowClosed(
                "Messenger only allows replies within 7 days of the customer's last message "
                "(24 h, then with the HUMAN_AGENT tag); this window is closed.",
                details={"human_agent_until": window["human_agent_until"].isoformat()
                         if window["human_agent_until"] else None})
        if window["mode"] == "human_agent":
            extra["tag"] = "HUMAN_AGENT"
    if conversation.channel.kind == "facebook_page" and kind != "private_reply" and conversation.kind == "dm" \
            and len(text) > MESSENGER_MAX_TEXT:
        raise ValidationFailed("message too long", fields={"text": [f"Messenger accepts at most "
                                                                    f"{MESSENGER_MAX_TEXT} characters"]})
    message = Message(kind="comment" if conversation.kind == "comment" and kind == "reply" else "message",
                      reply_type=kind, delivery_status="queued",
                      idempotency_key=idempotency_key or uuid.uuid4().hex,
                      reply_to_id=target.id if target else None,
                      reply_to_external_id=target.external_id if target else None,
                      **{**values, "extra": extra})
    session.add(message)
    if conversation.assignee_id is None:
        conversation.assignee_id = agent.id
        conversation.assigned_at = now
    conversation.updated_at = now
    session.flush()
    realtime.publish(session, "message.created", message_item_json(message), rooms)
    realtime.publish(session, "conversation.updated",
                     conversation_model_json(conversation, handoff.linked_ids(conversation), PageRefs(), now),
                     realtime.conversation_rooms(conversation.brand_id))
    from inbox.jobs.tasks import send_message
    enqueue_after_commit(session, send_message, message.id, queue=SEND)
    return message


def _target_comment(session: Session, conversation: Conversation, message_id: int | None) -> Message:
    query = select(Message).where(Message.conversation_id == conversation.id, Message.direction == "in",
                                  Message.kind == "comment")
    if message_id is not None:
        target = session.execute(query.where(Message.id == message_id)).scalar_one_or_none()
        if target is None:
            raise ValidationFailed("unknown comment", fields={"reply_to_message_id": ["not a comment of this "
                                                                                     "conversation"]})
        return target
    target = session.execute(query.where(Message.deleted_at.is_(None))
                             .order_by(Message.platform_time.desc(), Message.id.desc()).limit(1)).scalar_one_or_none()
    if target is None:
        raise ValidationFailed("no customer comment to answer", fields={"reply_to_message_id": ["required"]})
    return target


def _already_private_replied(session: Session, comment: Message) -> bool:
    return session.execute(select(Message.id).where(
        Message.reply_to_id == comment.id, Message.reply_type == "private_reply",
        Message.delivery_status.in_(("queued", "sending", "sent", "delivered", "read", "unknown")))).first() is not None


def retry_message(session: Session, agent: Agent, message_id: int) -> Message:
    """An agent asks to send a failed (or unknown) message again: back to queued, send job enqueued."""
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound("message not found")
    conversation = access.get_conversation_for(session, agent, message.conversation_id)
    if message.direction != "out" or message.delivery_status not in ("failed", "unknown"):
        raise Conflict("only failed messages can be sent again")
    message.delivery_status = "queued"
    message.delivery_error = None
    message.next_attempt_at = None
    message.delivery_attempts = 0
    session.flush()
    realtime.publish(session, "message.updated", message_item_json(message),
                     realtime.message_rooms(conversation.id))
    from inbox.jobs.tasks import send_message
    enqueue_after_commit(session, send_message, message.id, queue=SEND)
    return message


def moderate_comment(session: Session, agent: Agent, message_id: int, action: str) -> Message:
    """Hide / unhide / delete / like a customer comment on the platform, then record it and publish
    message.updated. The platform is called first: if it refuses, nothing changes here (502)."""
    from adapters.base import PlatformError
    from inbox.services.delivery import meta_client, meta_credentials
    from adapters import meta

    message = session.get(Message, message_id)
    if message is None:
        raise NotFound("message not found")
    conversation = access.get_conversation_for(session, agent, message.conversation_id)
    if message.kind != "comment" or message.direction != "in" or conversation.channel.kind != "facebook_page":
        raise ValidationFailed("only customer comments can be moderated", fields={"action": ["not a comment"]})
    if message.deleted_at is not None:
        raise Conflict("this comment is already deleted")
    assert message.external_id is not None
    try:
        meta.moderate_comment(meta_client(), meta_credentials(conversation.channel), message.external_id, action)
    except PlatformError as exc:
        if exc.retryable:  # unreachable, busy or rate-limiting: not a refusal, and worth another try soon
            raise PlatformRefused(f"Facebook could not do it now, nothing changed; try again in a moment ({exc})") \
                from exc
        raise PlatformRefused(f"Facebook refused: {exc}") from exc
    now = utcnow()
    if action in ("hide", "unhide"):
        message.hidden = action == "hide"
    elif action == "delete":
        message.deleted_at = now
    elif action == "like":
        message.liked = True
    history = list(message.extra.get("moderation", []))
    history.append({"action": action, "agent_id": agent.id, "at": now.isoformat()})
    message.extra = {**message.extra, "moderation": history}
    session.flush()
    realtime.publish(session, "message.updated", message_item_json(message),
                     realtime.message_rooms(conversation.id))
    return message
