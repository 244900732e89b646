"""A saved answer with placeholders, inserted in the composer with "/" + its shortcut."""
from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from inbox.models.base import Base, TimestampMixin

SCOPES = ("global", "brand", "team")

# A shortcut is unique among the live (not archived) replies of one scope: "livraison" may exist once
# globally, once per brand and once per team; archiving frees it.
_LIVE = "archived = false"


class CannedReply(TimestampMixin, Base):
    __tablename__ = "canned_replies"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'global' AND brand_id IS NULL AND team_id IS NULL)"
            " OR (scope = 'brand' AND brand_id IS NOT NULL AND team_id IS NULL)"
            " OR (scope = 'team' AND team_id IS NOT NULL AND brand_id IS NULL)",
            name="scope_target"),
        Index("uq_canned_replies_global_shortcut", "shortcut", unique=True,
              sqlite_where=text(f"scope = 'global' AND {_LIVE}"),
              postgresql_where=text(f"scope = 'global' AND {_LIVE}")),
        Index("uq_canned_replies_brand_shortcut", "brand_id", "shortcut", unique=True,
              sqlite_where=text(f"scope = 'brand' AND {_LIVE}"),
              postgresql_where=text(f"scope = 'brand' AND {_LIVE}")),
        Index("uq_canned_replies_team_shortcut", "team_id", "shortcut", unique=True,
              sqlite_where=text(f"scope = 'team' AND {_LIVE}"),
              postgresql_where=text(f"scope = 'team' AND {_LIVE}")),
        # the composer search: live replies by shortcut prefix, most used first
        Index("ix_canned_replies_live_shortcut", "archived", "shortcut"),
        Index("ix_canned_replies_live_usage", "archived", "usage_count"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(16))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    language: Mapped[str | None] = mapped_column(String(10))
    usage_count: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    archived: Mapped[bool] = mapped_column(default=False)
