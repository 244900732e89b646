"""SLA: business-hours calendars, policies, the clocks of each conversation and their log.

The clocks are the stored result of `inbox.sla.evaluate` (services.sla writes them); `next_deadline_at` is the
next warning or breach of a running clock, indexed so the timer finds the earliest one without a scan.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint, and_
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from inbox.db import JSONType
from inbox.models.base import Base, TimestampMixin
from inbox.models.conversation import Conversation

METRICS = ("first_response", "next_response", "resolution")
CLOCK_STATES = ("running", "paused", "warning", "breached", "met")
EVENT_KINDS = ("started", "paused", "resumed", "warned", "breached", "met", "stopped")


class Calendar(TimestampMixin, Base):
    """Weekly opening hours in a timezone, with holidays: intervals [{"weekday", "start", "end"}] ("HH:MM",
    an end at or before its start runs past midnight), holidays ["YYYY-MM-DD"]."""
    __tablename__ = "sla_calendars"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    intervals: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    holidays: Mapped[list[str]] = mapped_column(JSONType, default=list)


class SlaPolicy(TimestampMixin, Base):
    """Targets in seconds (None: not tracked) for the conversations matching `conditions`; the first live
    policy by `position` applies. `calendar_id` None counts calendar time."""
    __tablename__ = "sla_policies"
    __table_args__ = (Index("ix_sla_policies_live_position", "archived", "position", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("sla_calendars.id", ondelete="RESTRICT"), index=True)
    first_response_seconds: Mapped[int | None]
    next_response_seconds: Mapped[int | None]
    resolution_seconds: Mapped[int | None]
    warning_ratio: Mapped[float] = mapped_column(Float, default=0.8)
    pause_on: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # {"brand_ids", "channel_kinds", "conversation_kinds", "priorities", "labels"}: each given list must match
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    archived: Mapped[bool] = mapped_column(default=False)
    calendar: Mapped[Calendar | None] = relationship()


class SlaClock(Base):
    """One clock: a metric of one cycle (and, for next_response, one customer turn) of a conversation.

    `warned_at` / `breached_at` are set in the same transaction as the sla.warning / sla.breached push, so a
    warning or breach is pushed once. `is_current` marks the latest clock of each metric (shown in the API)."""
    __tablename__ = "sla_clocks"
    __table_args__ = (
        UniqueConstraint("conversation_id", "metric", "cycle", "turn"),
        Index("ix_sla_clocks_next_deadline_at", "next_deadline_at"),
        Index("ix_sla_clocks_current", "conversation_id", "is_current"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policies.id", ondelete="SET NULL"), index=True)
    metric: Mapped[str] = mapped_column(String(20))
    cycle: Mapped[int]
    turn: Mapped[int]
    is_current: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16))
    target_seconds: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    warning_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    stop_cause: Mapped[str | None] = mapped_column(String(100))
    warned_at: Mapped[datetime | None]
    breached_at: Mapped[datetime | None]
    elapsed_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # business seconds, as of evaluated_at
    paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # [[start, end or null], ...] in ISO 8601 UTC
    paused_intervals: Mapped[list[list[str | None]]] = mapped_column(JSONType, default=list)
    next_deadline_at: Mapped[datetime | None]
    evaluated_at: Mapped[datetime]


class SlaEvent(Base):
    """The clocks' log: what happened to which clock, when, and why ("message:<id>", "status:<status>",
    "timer", "policy:changed"). Append-only; the same event is never written twice."""
    __tablename__ = "sla_events"
    __table_args__ = (
        Index("uq_sla_events_clock_kind_at", "conversation_id", "metric", "cycle", "turn", "kind", "at",
              unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(20))
    cycle: Mapped[int]
    turn: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    cause: Mapped[str] = mapped_column(String(100))
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policies.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime]


# The API shows each conversation's current clocks: loaded with the conversation in one IN query per page.
Conversation.current_sla_clocks = relationship(  # type: ignore[attr-defined]
    SlaClock,
    primaryjoin=and_(foreign(SlaClock.conversation_id) == Conversation.id, SlaClock.is_current.is_(True)),
    order_by=SlaClock.metric,
    lazy="selectin",
    viewonly=True,
)
