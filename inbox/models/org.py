"""Brands, teams, agents, who serves what, and API tokens."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inbox.models.base import Base, TimestampMixin

ROLES = ("admin", "supervisor", "agent")
AVAILABILITIES = ("online", "busy", "offline")


class Brand(TimestampMixin, Base):
    __tablename__ = "brands"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Team(TimestampMixin, Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    members: Mapped[list["TeamMember"]] = relationship(back_populates="team", cascade="all, delete-orphan")
    brands: Mapped[list["TeamBrand"]] = relationship(back_populates="team", cascade="all, delete-orphan")


class Agent(TimestampMixin, Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="agent")
    availability: Mapped[str] = mapped_column(String(20), default="offline")
    is_active: Mapped[bool] = mapped_column(default=True)
    language: Mapped[str | None] = mapped_column(String(10))
    capacity: Mapped[int] = mapped_column(default=20)
    session_version: Mapped[int] = mapped_column(default=1)
    last_seen_at: Mapped[datetime | None]
    memberships: Mapped[list["TeamMember"]] = relationship(back_populates="agent", cascade="all, delete-orphan")

    @property
    def first_name(self) -> str:
        return (self.name or "").split(" ")[0]


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True)
    team: Mapped[Team] = relationship(back_populates="members")
    agent: Mapped[Agent] = relationship(back_populates="memberships")


class TeamBrand(Base):
    """A team serves a brand: its members see and answer that brand's conversations."""
    __tablename__ = "team_brands"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), primary_key=True, index=True)
    team: Mapped[Team] = relationship(back_populates="brands")


class ApiToken(Base):
    """A bearer token for integrations; only its SHA-256 is stored."""
    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
