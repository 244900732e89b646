"""The unit of the queue: a DM thread, or one person's comments under one post."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inbox.db import JSONType
from inbox.models.base import Base, TimestampMixin
from inbox.models.channel import Channel
from inbox.models.contact import Contact
from inbox.models.org import Agent, Brand

CONVERSATION_KINDS = ("dm", "comment")
STATUSES = ("open", "pending", "snoozed", "resolved")
PRIORITIES = ("low", "normal", "high", "urgent")  # stored as their index: sorting by priority is numeric


class Post(TimestampMixin, Base):
    """The brand's post a comment thread belongs to."""
    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("channel_id", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(256))
    text: Mapped[str | None] = mapped_column(Text)
    permalink: Mapped[str | None] = mapped_column(String(2000))


class Conversation(TimestampMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("channel_id", "thread_key"),
        # keyset pagination of each view, "longest waiting" and "newest"
        Index("ix_conversations_status_waiting", "status", "waiting_since", "id"),
        Index("ix_conversations_status_last_message", "status", "last_message_at", "id"),
        Index("ix_conversations_assignee_status_waiting", "assignee_id", "status", "waiting_since", "id"),
        Index("ix_conversations_brand_status_waiting", "brand_id", "status", "waiting_since", "id"),
        Index("ix_conversations_team_status_waiting", "team_id", "status", "waiting_since", "id"),
        Index("ix_conversations_contact", "contact_id"),
        Index("ix_conversations_snoozed_until", "snoozed_until"),
        Index("ix_conversations_status_sla_due", "status", "sla_due_at", "id"),
        Index("ix_conversations_status_sla_state", "status", "sla_state", "sla_due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    snoozed_until: Mapped[datetime | None]
    priority: Mapped[int] = mapped_column(SmallInteger, default=1)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="RESTRICT"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="RESTRICT"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime | None]
    thread_key: Mapped[str] = mapped_column(String(512))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    first_inbound_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    last_outbound_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime | None]
    # platform time of the oldest customer message not yet answered by a public reply; None = not waiting
    waiting_since: Mapped[datetime | None]
    last_message_preview: Mapped[str | None] = mapped_column(String(300))
    last_message_direction: Mapped[str | None] = mapped_column(String(4))
    resolved_at: Mapped[datetime | None]
    # the earliest due time among its running SLA clocks and their worst state (breached > warning >
    # running > paused), kept by services.sla so the queue sorts and filters on an index
    sla_due_at: Mapped[datetime | None]
    sla_state: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(10))  # guessed from the first inbound text
    # the latest read / delivery receipt watermarks of the thread (Messenger: everything the page sent up to
    # then is read / delivered), kept so an outbound message stored after its receipt is marked too
    read_watermark: Mapped[datetime | None]
    delivery_watermark: Mapped[datetime | None]
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    brand: Mapped[Brand] = relationship()
    channel: Mapped[Channel] = relationship()
    contact: Mapped[Contact] = relationship()
    assignee: Mapped[Agent | None] = relationship()
    post: Mapped[Post | None] = relationship()
    label_rows: Mapped[list["ConversationLabel"]] = relationship(
        cascade="all, delete-orphan", order_by="ConversationLabel.label", lazy="selectin")

    @property
    def labels(self) -> list[str]:
        return [row.label for row in self.label_rows]

    @property
    def priority_name(self) -> str:
        return PRIORITIES[self.priority]


class ConversationLabel(Base):
    __tablename__ = "conversation_labels"
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)
