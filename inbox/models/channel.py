"""A connected page / account / number / API endpoint of a brand, with its encrypted credentials."""
from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inbox.db import JSONType
from inbox.models.base import Base, TimestampMixin
from inbox.models.org import Brand

CHANNEL_KINDS = ("facebook_page", "api")
CHANNEL_STATUSES = ("active", "disabled", "error")


class Channel(TimestampMixin, Base):
    __tablename__ = "channels"
    __table_args__ = (
        # one Relais channel per platform account (page id); NULL for kinds without one (API channel)
        Index("uq_channels_kind_external_id", "kind", "external_id", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(128))
    # non-secret settings shown to admins (page_id, webhook_url...)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Fernet token of a JSON object: access_token, app_secret, verify_token, webhook_secret...
    credentials_encrypted: Mapped[str] = mapped_column(Text)
    # SHA-256 of the verify token (Meta handshake) so the handshake needs no decryption
    verify_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_detail: Mapped[str | None] = mapped_column(Text)
    brand: Mapped[Brand] = relationship()
