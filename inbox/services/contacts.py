"""Contacts as agents see them: only people who wrote to a brand the agent serves.

A contact is visible when at least one of their conversations belongs to a brand the agent may see
(`access.brand_ids_for`); anything else is a 404, so ids reveal nothing about other brands. Read-only:
nothing here writes, publishes or enqueues.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import exists, false, func, or_, select
from sqlalchemy.orm import Session, selectinload

from inbox.errors import NotFound
from inbox.models import Agent, Contact, ContactIdentity, Conversation
from inbox.services.access import brand_ids_for


def _visible(session: Session, agent: Agent) -> Any:
    """A WHERE clause on Contact for the agent's access; None for admins (everything)."""
    allowed = brand_ids_for(session, agent)
    if allowed is None:
        return None
    if not allowed:
        return false()
    return exists().where(Conversation.contact_id == Contact.id, Conversation.brand_id.in_(allowed))


def _matches(q: str) -> Any:
    """Name or handle of the contact, or of one of their identities, contains `q` (case-insensitive)."""
    needle = q.strip().lower()

    def contains(column: Any) -> Any:
        return func.lower(column).contains(needle, autoescape=True)

    by_identity = exists().where(ContactIdentity.contact_id == Contact.id,
                                 or_(contains(ContactIdentity.name), contains(ContactIdentity.handle)))
    return or_(contains(Contact.name), contains(Contact.handle), by_identity)


def _page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """rows were fetched with limit + 1: the extra row only says whether there is a next page."""
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1].id)
    return rows, None


def list_contacts(session: Session, agent: Agent, *, q: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> tuple[list[Contact], str | None]:
    """Visible contacts, newest first, keyset-paginated by id; `q` searches names and handles."""
    query = select(Contact).options(selectinload(Contact.identities)).order_by(Contact.id.desc()).limit(limit + 1)
    visible = _visible(session, agent)
    if visible is not None:
        query = query.where(visible)
    if q and q.strip():
        query = query.where(_matches(q))
    if cursor is not None:
        query = query.where(Contact.id < int(cursor))
    return _page(list(session.execute(query).scalars()), limit)


def get_contact(session: Session, agent: Agent, contact_id: int) -> Contact:
    """The contact with their identities if the agent may see them; 404 otherwise."""
    query = select(Contact).options(selectinload(Contact.identities)).where(Contact.id == contact_id)
    visible = _visible(session, agent)
    if visible is not None:
        query = query.where(visible)
    contact = session.execute(query).scalar_one_or_none()
    if contact is None:
        raise NotFound("contact not found")
    return contact


def contact_conversations(session: Session, agent: Agent, contact_id: int, *, limit: int = 50,
                          cursor: str | None = None) -> tuple[list[Conversation], str | None]:
    """The contact's conversations in brands the agent may see, newest first (404 for a hidden contact)."""
    get_contact(session, agent, contact_id)
    query = (select(Conversation)
             .options(selectinload(Conversation.brand), selectinload(Conversation.channel),
                      selectinload(Conversation.contact), selectinload(Conversation.assignee),
                      selectinload(Conversation.post))
             .where(Conversation.contact_id == contact_id)
             .order_by(Conversation.id.desc()).limit(limit + 1))
    allowed = brand_ids_for(session, agent)
    if allowed is not None:
        query = query.where(Conversation.brand_id.in_(allowed))
    if cursor is not None:
        query = query.where(Conversation.id < int(cursor))
    return _page(list(session.execute(query).scalars()), limit)
