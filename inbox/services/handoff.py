"""Passing conversations on: handoff to another team, linked conversations, resolving them together.

Handoff: the conversation moves to the receiving team, unassigned (or to the agent the receiving team's
policy picks), with the reason as an internal note and an activity row; nothing is sent to the customer.
Links: two conversations of the same brand about one matter (same contact, or any contact with an explicit
`confirm`), listed on both sides; resolving one with `resolve_linked` resolves the others.
"""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, object_session

from inbox import realtime
from inbox.api.schemas import MessageSchema
from inbox.db import utcnow
from inbox.errors import NotFound, ValidationFailed
from inbox.jobs import enqueue_after_commit
from inbox.models import Agent, Conversation, ConversationLink, Message, Team
from inbox.services import access, assignment
from inbox.services.conversations import _activity, publish_conversation, update_conversation

_message_schema = MessageSchema()


def handoff(session: Session, agent: Agent, conversation_id: int, team_id: int, note: str) -> Conversation:
    """Hand a conversation the agent can see over to `team_id` (which must serve its brand) with a note.

    Writes: team_id, assignee cleared (or set by the receiving team's policy), a note message and an activity
    row. Publishes message.created (note, activity, assignment activity) and conversation.updated. Enqueues,
    after commit, the backlog pickup of the former assignee, who has room again."""
    conversation = access.get_conversation_for(session, agent, conversation_id, lock=True)
    note = note.strip()
    if not note:
        raise ValidationFailed("a handoff needs a note", fields={"note": ["must not be blank"]})
    team = session.get(Team, team_id)
    if team is None:
        raise ValidationFailed("unknown team", fields={"team_id": ["no such team"]})
    if not assignment.team_serves_brand(session, team_id, conversation.brand_id):
        raise ValidationFailed(f"{team.name} does not serve {conversation.brand.name}",
                               fields={"team_id": [f"team {team.name!r} does not serve the conversation's brand "
                                                   f"{conversation.brand.name!r}"]})
    if conversation.team_id == team_id:
        raise ValidationFailed("the conversation is already with this team",
                               fields={"team_id": ["already the conversation's team"]})
    from_team = session.get(Team, conversation.team_id) if conversation.team_id else None
    previous_assignee = conversation.assignee_id
    now = utcnow()
    message = Message(conversation_id=conversation.id, channel_id=conversation.channel_id, direction="out",
                      kind="note", author_type="agent", author_agent_id=agent.id, author_name=agent.name,
                      text=note, platform_time=now, received_at=now, attachments=[], edit_history=[],
                      extra={"handoff": {"to_team_id": team_id}})
    session.add(message)
    session.flush()
    realtime.publish(session, "message.created", _message_schema.dump(message),
                     realtime.message_rooms(conversation.id))
    conversation.team_id = team_id
    conversation.assignee_id = None
    conversation.assigned_at = None
    conversation.updated_at = now
    _activity(session, conversation, agent,
              f"{agent.name} handed the conversation over to {team.name}"
              + (f" (from {from_team.name})" if from_team else ""),
              {"type": "handoff", "from_team_id": from_team.id if from_team else None, "to_team_id": team_id,
               "previous_assignee_id": previous_assignee, "note_id": message.id, "actor_name": agent.name,
               "to_team_name": team.name, "from_team_name": from_team.name if from_team else None})
    assignment.auto_assign(session, conversation)
    if previous_assignee is not None:
        from inbox.jobs.tasks import pick_up_backlog
        enqueue_after_commit(session, pick_up_backlog, previous_assignee)
    publish_conversation(session, conversation)
    return conversation


# ---------------------------------------------------------------- links
def targets(session: Session, agent: Agent, conversation_id: int) -> list[Team]:
    """The teams serving the conversation's brand, other than its current team: where it can be handed over."""
    from inbox.models import TeamBrand

    conversation = access.get_conversation_for(session, agent, conversation_id)
    query = (select(Team).join(TeamBrand, TeamBrand.team_id == Team.id)
             .where(TeamBrand.brand_id == conversation.brand_id).order_by(Team.name))
    return [team for team in session.execute(query).scalars() if team.id != conversation.team_id]


def links_of(session: Session, conversation_ids: list[int]) -> dict[int, list[int]]:
    """The linked conversation ids of each conversation, in one query."""
    links: dict[int, list[int]] = {}
    if not conversation_ids:
        return links
    for conversation_id, linked_id in session.execute(
            select(ConversationLink.conversation_id, ConversationLink.linked_id)
            .where(ConversationLink.conversation_id.in_(conversation_ids))
            .order_by(ConversationLink.conversation_id, ConversationLink.linked_id)):
        links.setdefault(conversation_id, []).append(linked_id)
    return links


def linked_ids(conversation: Conversation) -> list[int]:
    """Ids of the conversations linked to this one (for its JSON)."""
    session = object_session(conversation)
    if session is None or conversation.id is None:
        return []
    return list(session.execute(select(ConversationLink.linked_id)
                                .where(ConversationLink.conversation_id == conversation.id)
                                .order_by(ConversationLink.linked_id)).scalars())


def list_links(session: Session, agent: Agent, conversation_id: int) -> list[Conversation]:
    conversation = access.get_conversation_for(session, agent, conversation_id)
    ids = linked_ids(conversation)
    if not ids:
        return []
    return list(session.execute(select(Conversation).where(Conversation.id.in_(ids))
                                .order_by(Conversation.id)).scalars())


def link(session: Session, agent: Agent, conversation_id: int, other_id: int, *,
         confirm: bool = False) -> tuple[list[Conversation], bool]:
    """Link two conversations the agent can see, of the same brand; of two contacts only with `confirm`.
    Returns (the conversation's links, created). Writes the link both ways and an activity row on each side;
    publishes conversation.updated for both."""
    conversation = access.get_conversation_for(session, agent, conversation_id, lock=True)
    if other_id == conversation_id:
        raise ValidationFailed("a conversation cannot be linked to itself",
                               fields={"conversation_id": ["must be another conversation"]})
    try:
        other = access.get_conversation_for(session, agent, other_id, lock=True)
    except NotFound:
        raise ValidationFailed("unknown conversation", fields={"conversation_id": ["no such conversation"]}) \
            from None
    if other.brand_id != conversation.brand_id:
        raise ValidationFailed("linked conversations belong to the same brand",
                               fields={"conversation_id": ["belongs to another brand"]})
    if other.contact_id != conversation.contact_id and not confirm:
        raise ValidationFailed("these conversations are with two different contacts",
                               fields={"confirm": ["set to true to link conversations of different contacts"]})
    if session.get(ConversationLink, (conversation.id, other.id)) is not None:
        return list_links(session, agent, conversation_id), False
    now = utcnow()
    session.add_all([ConversationLink(conversation_id=conversation.id, linked_id=other.id,
                                      created_by_agent_id=agent.id, created_at=now),
                     ConversationLink(conversation_id=other.id, linked_id=conversation.id,
                                      created_by_agent_id=agent.id, created_at=now)])
    session.flush()
    for here, there in ((conversation, other), (other, conversation)):
        _activity(session, here, agent, f"{agent.name} linked this conversation to #{there.id}",
                  {"type": "linked", "conversation_id": there.id, "actor_name": agent.name})
        here.updated_at = now
        publish_conversation(session, here)
    return list_links(session, agent, conversation_id), True


def unlink(session: Session, agent: Agent, conversation_id: int, other_id: int) -> None:
    """Remove the link both ways (404 when there is none); activity rows and conversation.updated."""
    conversation = access.get_conversation_for(session, agent, conversation_id, lock=True)
    if session.get(ConversationLink, (conversation.id, other_id)) is None:
        raise NotFound("these conversations are not linked")
    session.execute(delete(ConversationLink).where(
        ((ConversationLink.conversation_id == conversation.id) & (ConversationLink.linked_id == other_id))
        | ((ConversationLink.conversation_id == other_id) & (ConversationLink.linked_id == conversation.id))))
    other = session.get(Conversation, other_id)
    now = utcnow()
    for here, there_id in ((conversation, other_id), (other, conversation.id)):
        if here is None:
            continue
        _activity(session, here, agent, f"{agent.name} unlinked this conversation from #{there_id}",
                  {"type": "unlinked", "conversation_id": there_id, "actor_name": agent.name})
        here.updated_at = now
        publish_conversation(session, here)


def resolve(session: Session, agent: Agent, conversation_id: int, *, resolve_linked: bool = False) -> Conversation:
    """Resolve the conversation (as PATCH status=resolved does) and, with `resolve_linked`, every linked
    conversation the agent can see that is not resolved yet."""
    conversation = update_conversation(session, agent, conversation_id, {"status": "resolved"})
    if resolve_linked:
        visible = access.brand_ids_for(session, agent)
        for other_id in linked_ids(conversation):
            other = session.get(Conversation, other_id)
            if other is None or other.status == "resolved" or (visible is not None and other.brand_id not in visible):
                continue
            update_conversation(session, agent, other_id, {"status": "resolved"})
    return conversation

