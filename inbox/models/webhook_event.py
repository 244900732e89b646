"""Every webhook request as it arrived: the truth from which messages are (re)built."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import JSONType
from inbox.models.base import Base

# pending -> processed | unroutable (some entries for unknown accounts) | failed (will retry) -> dead
# rejected = bad signature (never processed); invalid = authentic but unreadable body
EVENT_STATUSES = ("pending", "processed", "unroutable", "failed", "dead", "rejected", "invalid")


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_status_id", "status", "id"),
        Index("ix_webhook_events_received_at", "received_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))           # meta | api
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    received_at: Mapped[datetime]
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    verification: Mapped[str] = mapped_column(String(16))     # valid | invalid
    verification_detail: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
