"""Triage: each team's assignment policy, each brand's default team, agents' presence and routing state,
and links between conversations."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import JSONType
from inbox.models.base import Base, TimestampMixin

ASSIGNMENT_MODES = ("manual", "round_robin", "least_loaded")


class AssignmentPolicy(TimestampMixin, Base):
    """How a team's new conversations find an owner; no row means `manual`."""
    __tablename__ = "assignment_policies"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), default="manual")
    # per channel kind, the most open conversations of that kind an agent holds ({"facebook_page": 5})
    capacity_by_channel_kind: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    match_language: Mapped[bool] = mapped_column(default=False)
    unassign_after_offline_minutes: Mapped[int | None]


class BrandRouting(TimestampMixin, Base):
    """Where a brand's new conversations go: the team they open in."""
    __tablename__ = "brand_routings"
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), primary_key=True)
    default_team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)


class AgentState(Base):
    """Presence and routing facts about an agent, kept apart from the account itself.

    `connections`: live Socket.IO connections over all web processes. `restore_availability`: what presence
    put back when the agent reconnects (set when presence, not the agent, took them offline)."""
    __tablename__ = "agent_states"
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    connections: Mapped[int] = mapped_column(default=0)
    disconnected_at: Mapped[datetime | None]
    restore_availability: Mapped[str | None] = mapped_column(String(20))
    offline_since: Mapped[datetime | None]
    last_assigned_at: Mapped[datetime | None]
    languages: Mapped[list[str]] = mapped_column(JSONType, default=list)


class ConversationLink(Base):
    """Two conversations about the same matter; stored in both directions so each side lists the other."""
    __tablename__ = "conversation_links"
    __table_args__ = (CheckConstraint("conversation_id <> linked_id", name="not_self"),)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    linked_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True,
                                           index=True)
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


def policy_dict(policy: AssignmentPolicy | None) -> dict[str, Any]:
    """The policy as the API shows it; the default (manual) when the team has none."""
    if policy is None:
        return {"mode": "manual", "capacity_by_channel_kind": {}, "match_language": False,
                "unassign_after_offline_minutes": None}
    return {"mode": policy.mode, "capacity_by_channel_kind": dict(policy.capacity_by_channel_kind or {}),
            "match_language": policy.match_language,
            "unassign_after_offline_minutes": policy.unassign_after_offline_minutes}
