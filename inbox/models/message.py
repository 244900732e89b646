"""One item of a conversation: a customer message or comment, our reply, an internal note, an activity."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import JSONType
from inbox.models.base import Base

DIRECTIONS = ("in", "out")
MESSAGE_KINDS = ("message", "comment", "note", "activity")
REPLY_TYPES = ("reply", "private_reply")
# queued -> sending -> sent -> delivered -> read; queued/sending -> failed; sending -> unknown (crash mid-send)
DELIVERY_STATUSES = ("queued", "sending", "sent", "delivered", "read", "failed", "unknown")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel_id", "external_id"),
        UniqueConstraint("idempotency_key"),
        Index("ix_messages_conversation_time", "conversation_id", "platform_time", "id"),
        Index("ix_messages_delivery_due", "delivery_status", "next_attempt_at"),
        # text search (`q`) on PostgreSQL: trigram index, so ILIKE '%...%' does not scan every message
        Index("ix_messages_text_trgm", "text", postgresql_using="gin",
              postgresql_ops={"text": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        # reports scan a period of messages
        Index("ix_messages_platform_time", "platform_time"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(4))
    kind: Mapped[str] = mapped_column(String(16))
    reply_type: Mapped[str | None] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(256))
    author_type: Mapped[str] = mapped_column(String(16))  # contact | agent | page | system
    author_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    author_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    author_name: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    reply_to_external_id: Mapped[str | None] = mapped_column(String(256))
    platform_time: Mapped[datetime]
    received_at: Mapped[datetime]
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    delivery_error: Mapped[str | None] = mapped_column(Text)
    delivery_attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    # when a send job last claimed it (queued -> sending): while the status is `sending`, how long that send has
    # been under way, which is what the reconciler's "interrupted" verdict counts (not platform_time: a retry or
    # a send queued for a while is claimed long after the message was written). Not cleared when the status
    # moves on, so it means nothing outside `sending`. NULL for rows claimed before it was recorded (0009).
    sending_since: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    edited_at: Mapped[datetime | None]
    edit_history: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    deleted_at: Mapped[datetime | None]
    hidden: Mapped[bool] = mapped_column(default=False)
    liked: Mapped[bool] = mapped_column(default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
