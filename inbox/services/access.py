"""Who may see and do what: the one place for access checks.

admin: everything. supervisor: conversations of the brands their teams serve, and may reassign anyone.
agent: conversations of the brands their teams serve; may claim, and assign/unassign themselves only.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import Boolean, Text, and_, bindparam, exists, func, literal_column, or_, select, type_coerce, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from inbox.db import among
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


def watchable_conversation_ids(session: Session, agent_id: int, conversation_ids: Iterable[int]) -> set[int] | None:
    """`visible_conversation_ids` for an agent known by its id only, in ONE statement that checks the agent too:
    None if the agent no longer exists or is inactive, else those of `conversation_ids` it may see.

    A socket's `watch` (the console opening a conversation) asks this on every call: loading the agent, the
    conversations' brands and the agent's brands were three round trips each time, the web process's main
    database cost when hundreds of agents open new conversations at once. The agent's row is outer joined to
    the visible conversations, so an active agent that may see none still yields a row (NULL)."""
    dialect = session.get_bind().dialect.name
    statement = _watchable_statements.get(dialect)
    if statement is None:
        statement = _watchable_statements[dialect] = _watchable_statement(dialect)
    rows = session.execute(statement, {"agent_id": agent_id, "ids": sorted({int(i) for i in conversation_ids})})
    found = rows.scalars().all()
    return {cid for cid in found if cid is not None} if found else None


_watchable_statements: dict[str, Any] = {}  # watchable_conversation_ids', per dialect


def _watchable_statement(dialect: str) -> Any:
    """watchable_conversation_ids' SELECT, built once: on PostgreSQL the ids are one array parameter (db.among),
    one text whatever their number, so psycopg prepares it once per connection."""
    requested = among(dialect, Conversation.id, name="ids")
    served = exists().where(TeamMember.agent_id == Agent.id, TeamBrand.team_id == TeamMember.team_id,
                            TeamBrand.brand_id == Conversation.brand_id)  # brand_ids_for's rule
    return (select(Conversation.id).select_from(Agent)
            .outerjoin(Conversation, and_(requested, or_(Agent.role == "admin", served)))
            .where(Agent.id == bindparam("agent_id"), Agent.is_active))


def socket_access(session: Session, agent: Agent, conversation_ids: Iterable[int]) -> tuple[list[str], set[int]]:
    """`rooms_for(agent)` and `visible_conversation_ids(agent, conversation_ids)` in ONE statement: the rooms a
    socket joins and the conversations it may watch, at connect, on `resume` and when an access change re-checks
    its sockets. Apart, they were three SELECTs (the agent's brands twice); after a web process restarts, every
    console reconnects at once and each paid them."""
    dialect = session.get_bind().dialect.name
    statement = _socket_statements.get(dialect)
    if statement is None:
        statement = _socket_statements[dialect] = _socket_statement(dialect)
    admin = agent.role == "admin"
    brand_ids: set[int] = set()
    visible: set[int] = set()
    for kind, value in session.execute(statement, {"agent_id": agent.id, "admin": admin,
                                                   "ids": sorted({int(i) for i in conversation_ids})}):
        (brand_ids if kind == "b" else visible).add(value)
    rooms = [f"agent:{agent.id}"]
    rooms.extend(["admins"] if admin else (f"brand:{b}" for b in sorted(brand_ids)))
    return rooms, visible


_socket_statements: dict[str, Any] = {}  # socket_access', per dialect


def _socket_statement(dialect: str) -> Any:
    """socket_access' SELECT, built once: the agent's brands (brand_ids_for's rule) and, UNION ALL, those of the
    ids that exist and are of one of them (any, for an admin); the ids are one array parameter on PostgreSQL."""
    agent_id = bindparam("agent_id")
    brands = (select(literal_column("'b'").label("kind"), TeamBrand.brand_id.label("value"))
              .join(TeamMember, TeamMember.team_id == TeamBrand.team_id).where(TeamMember.agent_id == agent_id))
    served = exists().where(TeamMember.agent_id == agent_id, TeamBrand.team_id == TeamMember.team_id,
                            TeamBrand.brand_id == Conversation.brand_id)
    conversations = (select(literal_column("'c'"), Conversation.id)
                     .where(among(dialect, Conversation.id, name="ids"),
                            or_(bindparam("admin", type_=Boolean), served)))
    return union_all(brands, conversations)


def event_visible_to(rooms: list[str], agent_rooms: set[str]) -> bool:
    return any(r in agent_rooms for r in rooms)


def in_rooms(dialect: str, rooms: Any, name: str) -> Any:
    """event_visible_to in SQL: a stored event's `rooms` (a JSON list) holds one of the rooms given as the parameter
    `name` when the statement runs. PostgreSQL: `rooms ?| :name` (jsonb, one text[] parameter); SQLite: EXISTS over
    json_each. A replay reads only the events its socket may see, instead of every room's and then dropping most."""
    if dialect == "postgresql":
        return type_coerce(rooms, postgresql.JSONB).has_any(bindparam(name, type_=postgresql.ARRAY(Text)))
    each = func.json_each(rooms).table_valued("value")
    return exists().select_from(each).where(each.c.value.in_(bindparam(name, expanding=True)))
