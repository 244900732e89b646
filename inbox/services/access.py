"""Who may see and do what: the one place for access checks.

admin: everything. supervisor: conversations of the brands their teams serve, and may reassign anyone.
agent: conversations of the brands their teams serve; may claim, and assign/unassign themselves only.
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.errors import Forbidden, NotFound
from inbox.models import Agent, Conversation, TeamBrand, TeamMember


def brand_ids_for(session: Session, agent: Agent) -> set[int] | None:
    """The brands an agent may see; None means all (admin)."""
    if agent.role == "admin":
        return None
    rows = session.execute(
        select(TeamBrand.brand_id).join(TeamMember, TeamMember.team_id == TeamBrand.team_id)
        .where(TeamMember.agent_id == agent.id)
    ).scalars()
    return set(rows)


def team_ids_for(session: Session, agent: Agent) -> set[int]:
    return set(session.execute(select(TeamMember.team_id).where(TeamMember.agent_id == agent.id)).scalars())


def can_see_brand(session: Session, agent: Agent, brand_id: int) -> bool:
    allowed = brand_ids_for(session, agent)
    return allowed is None or brand_id in allowed


def get_conversation_for(session: Session, agent: Agent, conversation_id: int, *, lock: bool = False) -> Conversation:
    """The conversation if the agent may see it; 404 otherwise (no leak of what exists elsewhere)."""
    query = select(Conversation).where(Conversation.id == conversation_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    conversation = session.execute(query).scalar_one_or_none()
    if conversation is None or not can_see_brand(session, agent, conversation.brand_id):
        raise NotFound("conversation not found")
    return conversation


def require_admin(agent: Agent) -> None:
    if agent.role != "admin":
        raise Forbidden("administrators only")


def require_supervisor(agent: Agent) -> None:
    if agent.role not in ("admin", "supervisor"):
        raise Forbidden("supervisors and administrators only")


def check_assign(agent: Agent, conversation: Conversation, new_assignee_id: int | None) -> None:
    """Agents may take a free conversation or let go of their own; supervisors and admins may do anything."""
    if agent.role in ("admin", "supervisor"):
        return
    current = conversation.assignee_id
    if new_assignee_id == agent.id and current in (None, agent.id):
        return
    if new_assignee_id is None and current == agent.id:
        return
    raise Forbidden("only supervisors can reassign a conversation held by someone else or assign others")


def rooms_for(session: Session, agent: Agent) -> list[str]:
    """The Socket.IO rooms an agent is joined to on connect, from their access, never from the client."""
    rooms = [f"agent:{agent.id}"]
    brand_ids = brand_ids_for(session, agent)
    if brand_ids is None:
        rooms.append("admins")
    else:
        rooms.extend(f"brand:{b}" for b in sorted(brand_ids))
    return rooms


def visible_conversation_ids(session: Session, agent: Agent, conversation_ids: Iterable[int]) -> set[int]:
    """Those of `conversation_ids` the agent may see (the check of get_conversation_for, for several at once)."""
    ids = {int(i) for i in conversation_ids}
    if not ids:
        return set()
    rows = session.execute(select(Conversation.id, Conversation.brand_id).where(Conversation.id.in_(ids))).all()
    allowed = brand_ids_for(session, agent)
    return {cid for cid, brand_id in rows if allowed is None or brand_id in allowed}


def event_visible_to(rooms: list[str], agent_rooms: set[str]) -> bool:
    return any(r in agent_rooms for r in rooms)
