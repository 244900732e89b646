"""The live events that were published, kept a while so a reconnecting client can catch up."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import JSONTextType, JSONType
from inbox.models.base import Base


class RealtimeEvent(Base):
    __tablename__ = "realtime_events"
    id: Mapped[int] = mapped_column(primary_key=True)    # the `seq` clients see
    name: Mapped[str] = mapped_column(String(64))
    rooms: Mapped[list[str]] = mapped_column(JSONType)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONTextType)  # replayed as its stored text
    created_at: Mapped[datetime] = mapped_column(index=True)
