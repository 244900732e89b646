"""The queue: listing with filters and keyset pagination, counts per view, claim, and changes."""
from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, joinedload

from inbox import realtime
from inbox.api.schemas import ConversationSchema, MessageSchema
from inbox.db import utcnow
from inbox.errors import Conflict, ValidationFailed
from inbox.models import Agent, Channel, Contact, Conversation, ConversationLabel, Message, Team
from inbox.models.conversation import PRIORITIES
from inbox.services import access, sla
from inbox.services import view_counts as counter_tables

_conversation_schema = ConversationSchema()
_message_schema = MessageSchema()


# ---------------------------------------------------------------- cursors
def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != size:
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise ValidationFailed("invalid cursor", fields={"cursor": ["not a cursor returned by this API"]}) from None


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# ---------------------------------------------------------------- listing
def _filters(session: Session, agent: Agent, params: dict[str, Any], *, include_assignee: bool = True) -> list[Any]:
    conditions: list[Any] = []
    allowed = access.brand_ids_for(session, agent)
    if allowed is not None:
        conditions.append(Conversation.brand_id.in_(sorted(allowed) or [-1]))
    if params.get("status"):
        conditions.append(Conversation.status == params["status"])
    assignee = params.get("assignee")
    if include_assignee and assignee is not None:
        if assignee == "me":
            conditions.append(Conversation.assignee_id == agent.id)
        elif assignee == "none":
            conditions.append(Conversation.assignee_id.is_(None))
        else:
            conditions.append(Conversation.assignee_id == int(assignee))
    for key, column in (("team_id", Conversation.team_id), ("brand_id", Conversation.brand_id),
                        ("channel_id", Conversation.channel_id), ("contact_id", Conversation.contact_id),
                        ("kind", Conversation.kind)):
        if params.get(key) is not None:
            conditions.append(column == params[key])
    if params.get("priority"):
        conditions.append(Conversation.priority == PRIORITIES.index(params["priority"]))
    if params.get("channel_kind"):
        conditions.append(Conversation.channel_id.in_(select(Channel.id).where(Channel.kind == params["channel_kind"])))
    if params.get("sla") == "due":
        conditions.append(Conversation.sla_due_at.is_not(None))
    elif params.get("sla") == "at_risk":
        conditions.append(Conversation.sla_state == "warning")
    elif params.get("sla") == "breached":
        conditions.append(Conversation.sla_state == "breached")
    if params.get("label"):
        conditions.append(exists().where(ConversationLabel.conversation_id == Conversation.id,
                                         ConversationLabel.label == params["label"]))
    if params.get("q"):
        pattern = "%" + params["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(
            Conversation.contact_id.in_(select(Contact.id).where(or_(Contact.name.ilike(pattern, escape="\\"),
                                                                     Contact.handle.ilike(pattern, escape="\\")))),
            Conversation.id.in_(select(Message.conversation_id).where(Message.text.ilike(pattern, escape="\\"))),
        ))
    return conditions


def list_conversations(session: Session, agent: Agent, params: dict[str, Any]) -> dict[str, Any]:
    """{"items", "next_cursor", "counts"} for the agent's visible conversations matching the filters.

    sort "waiting": longest-waiting customer first (waiting_since ascending), then those not waiting;
    sort "newest": latest message first. Keyset pagination: the cursor holds the last row's sort key."""
    limit = params.get("limit", 50)
    conditions = _filters(session, agent, params)
    # The many-to-one rows the JSON shows come in the page's own statement (joined: one round trip, not five
    # IN queries); labels and SLA clocks follow in one IN query each (their relationships are lazy="selectin"),
    # and the schema loads the page's links in one more: a page costs the same few statements at any size.
    base = select(Conversation).options(joinedload(Conversation.brand, innerjoin=True),
                                        joinedload(Conversation.channel, innerjoin=True),
                                        joinedload(Conversation.contact, innerjoin=True),
                                        joinedload(Conversation.assignee), joinedload(Conversation.post))
    if params.get("sort") == "sla_due":
        rows = _page_sla_due(session, base, conditions, params.get("cursor"), limit)
        key = (lambda c: [c.sla_due_at, c.id])
    elif params.get("sort") == "newest":
        rows = _page_newest(session, base, conditions, params.get("cursor"), limit)
        key = (lambda c: [c.last_message_at, c.id])
    else:
        rows = _page_waiting(session, base, conditions, params.get("cursor"), limit)
        key = _waiting_key
    next_cursor = encode_cursor(key(rows[limit - 1])) if len(rows) > limit else None
    result: dict[str, Any] = {"items": rows[:limit], "next_cursor": next_cursor}
    if params.get("counts", True) and not params.get("cursor"):  # the next pages do not need them again
        result["counts"] = view_counts(session, agent, params)
    return result


def _ascending_run(session: Session, query: Any, column: Any, after: Any, after_id: int | None,
                   limit: int) -> list[Conversation]:
    """Up to limit + 1 rows with `column` set, by (column, id) ascending, after the cursor's (after, after_id)."""
    query = query.where(column.is_not(None))
    if after is not None:
        # a row comparison, so PostgreSQL seeks the index instead of filtering every row before the cursor
        query = query.where(tuple_(column, Conversation.id) > tuple_(_when(after), after_id))
    return list(session.execute(query.order_by(column, Conversation.id).limit(limit + 1)).scalars())


def _page_waiting(session: Session, base: Any, conditions: list[Any], cursor: str | None, limit: int) -> list[Any]:
    """Waiting customers first (oldest waiting_since first), then the others (most recent activity first).
    The cursor says which of the two runs it stopped in: ["w", waiting_since, id] or ["n", last_message_at, id]."""
    phase, last_at, last_id = decode_cursor(cursor, 3) if cursor else ("w", None, None)
    query = base.where(*conditions)
    rows: list[Conversation] = []
    if phase == "w":
        rows = _ascending_run(session, query, Conversation.waiting_since, last_at, last_id, limit)
        if len(rows) > limit:
            return rows
        last_at = last_id = None
    query = query.where(Conversation.waiting_since.is_(None))
    if last_id is not None:
        at = _when(last_at)
        query = query.where(or_(Conversation.last_message_at < at,
                                and_(Conversation.last_message_at == at, Conversation.id < last_id),
                                Conversation.last_message_at.is_(None) & (Conversation.id < last_id))
                            if at is not None else
                            and_(Conversation.last_message_at.is_(None), Conversation.id < last_id))
    rows += list(session.execute(query.order_by(Conversation.last_message_at.desc().nulls_last(),
                                                Conversation.id.desc()).limit(limit + 1 - len(rows))).scalars())
    return rows


def _page_sla_due(session: Session, base: Any, conditions: list[Any], cursor: str | None, limit: int) -> list[Any]:
    """Soonest SLA due time first; conversations without a running clock follow, by id."""
    due_at, last_id = decode_cursor(cursor, 2) if cursor else (None, None)
    query = base.where(*conditions)
    rows: list[Conversation] = []
    if cursor is None or due_at is not None:
        rows = _ascending_run(session, query, Conversation.sla_due_at, due_at, last_id, limit)
        if len(rows) > limit:
            return rows
        last_id = None
    query = query.where(Conversation.sla_due_at.is_(None))
    if last_id is not None:
        query = query.where(Conversation.id > last_id)
    rows += list(session.execute(query.order_by(Conversation.id).limit(limit + 1 - len(rows))).scalars())
    return rows


def _waiting_key(conversation: Conversation) -> list[Any]:
    if conversation.waiting_since is not None:
        return ["w", conversation.waiting_since, conversation.id]
    return ["n", conversation.last_message_at, conversation.id]


def _page_newest(session: Session, base: Any, conditions: list[Any], cursor: str | None, limit: int) -> list[Any]:
    query = base.where(*conditions)
    if cursor:
        last_at, last_id = decode_cursor(cursor, 2)
        query = query.where(tuple_(Conversation.last_message_at, Conversation.id) < tuple_(_when(last_at), last_id))
    return list(session.execute(query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
                                .limit(limit + 1)).scalars())


def view_counts(session: Session, agent: Agent, params: dict[str, Any]) -> dict[str, int]:
    """Counts of the three views (mine, unassigned, all) under the other filters, in one query: from the
    trigger-maintained counter tables when they cover the filters (services.view_counts), else by counting."""
    counted = counter_tables.counts_for(session, agent, params)
    if counted is not None:
        return counted
    conditions = _filters(session, agent, params, include_assignee=False)
    row = session.execute(select(
        func.count(),
        func.count().filter(Conversation.assignee_id == agent.id),
        func.count().filter(Conversation.assignee_id.is_(None)),
    ).select_from(Conversation).where(*conditions)).one()
    return {"all": row[0], "mine": row[1], "unassigned": row[2]}


def list_messages(session: Session, agent: Agent, conversation_id: int, limit: int,
                  cursor: str | None) -> dict[str, Any]:
    """Newest first; `next_cursor` pages to older messages."""
    access.get_conversation_for(session, agent, conversation_id)
    query = select(Message).where(Message.conversation_id == conversation_id)
    if cursor:
        last_at, last_id = decode_cursor(cursor, 2)
        query = query.where(tuple_(Message.platform_time, Message.id) < tuple_(_when(last_at), last_id))
    rows = list(session.execute(query.order_by(Message.platform_time.desc(), Message.id.desc())
                                .limit(limit + 1)).scalars())
    next_cursor = encode_cursor([rows[limit - 1].platform_time, rows[limit - 1].id]) if len(rows) > limit else None
    return {"items": rows[:limit], "next_cursor": next_cursor}


# ---------------------------------------------------------------- changes
def _activity(session: Session, conversation: Conversation, agent: Agent | None, text: str,
              details: dict[str, Any]) -> None:
    """A history row (kind activity): seen by the team only, never sent."""
    now = utcnow()
    message = Message(conversation_id=conversation.id, channel_id=conversation.channel_id, direction="out",
                      kind="activity", author_type="agent" if agent else "system",
                      author_agent_id=agent.id if agent else None, author_name=agent.name if agent else None,
                      text=text, platform_time=now, received_at=now, attachments=[], edit_history=[],
                      extra={"activity": details})
    session.add(message)
    session.flush()
    realtime.publish(session, "message.created", _message_schema.dump(message),
                     realtime.message_rooms(conversation.id))


def publish_conversation(session: Session, conversation: Conversation) -> None:
    session.flush()
    session.refresh(conversation)
    realtime.publish(session, "conversation.updated", _conversation_schema.dump(conversation),
                     realtime.conversation_rooms(conversation.brand_id))


def claim(session: Session, agent: Agent, conversation_id: int) -> Conversation:
    """Atomically make `agent` the assignee if nobody holds the conversation (409 naming the holder otherwise).
    A conditional UPDATE, so two agents claiming at the same instant get one owner on any database."""
    conversation = access.get_conversation_for(session, agent, conversation_id)
    now = utcnow()
    taken = session.execute(update(Conversation)
                            .where(Conversation.id == conversation_id,
                                   or_(Conversation.assignee_id.is_(None), Conversation.assignee_id == agent.id))
                            .values(assignee_id=agent.id, assigned_at=now, updated_at=now)
                            .execution_options(synchronize_session=False)).rowcount
    session.refresh(conversation)
    if taken != 1:
        holder = conversation.assignee
        raise Conflict(f"already taken by {holder.name if holder else 'someone else'}",
                       details={"assignee": {"id": holder.id, "name": holder.name} if holder else None})
    _activity(session, conversation, agent, f"{agent.name} claimed the conversation",
              {"type": "claimed", "agent_id": agent.id})
    publish_conversation(session, conversation)
    return conversation


def update_conversation(session: Session, agent: Agent, conversation_id: int, changes: dict[str, Any]) -> Conversation:
    """Apply a PATCH (status, snoozed_until, priority, labels, assignee_id, team_id) with access checks;
    writes activity rows and publishes conversation.updated."""
    conversation = access.get_conversation_for(session, agent, conversation_id, lock=True)
    before = (conversation.assignee_id, conversation.status, conversation.team_id)
    now = utcnow()
    if "assignee_id" in changes and changes["assignee_id"] != conversation.assignee_id:
        new_id = changes["assignee_id"]
        access.check_assign(agent, conversation, new_id)
        if new_id is not None:
            assignee = session.get(Agent, new_id)
            if assignee is None or not assignee.is_active or not access.can_see_brand(session, assignee,
                                                                                       conversation.brand_id):
                raise ValidationFailed("cannot assign", fields={"assignee_id": ["no active agent serving this brand"]})
            text = f"{agent.name} assigned the conversation to {assignee.name}"
        else:
            text = f"{agent.name} unassigned the conversation"
        conversation.assignee_id = new_id
        conversation.assigned_at = now if new_id else None
        _activity(session, conversation, agent, text, {"type": "assigned", "assignee_id": new_id})
    if "team_id" in changes and changes["team_id"] != conversation.team_id:
        if changes["team_id"] is not None and session.get(Team, changes["team_id"]) is None:
            raise ValidationFailed("unknown team", fields={"team_id": ["no such team"]})
        conversation.team_id = changes["team_id"]
    if "status" in changes and changes["status"] != conversation.status:
        status = changes["status"]
        if status == "snoozed":
            until = changes.get("snoozed_until")
            if until is None or until <= now:
                raise ValidationFailed("snooze needs a future time", fields={"snoozed_until": ["must be in the future"]})
            conversation.snoozed_until = until
        else:
            conversation.snoozed_until = None
        conversation.resolved_at = now if status == "resolved" else None
        _activity(session, conversation, agent, f"{agent.name} set the status to {status}",
                  {"type": "status", "from": conversation.status, "to": status})
        conversation.status = status
    elif "snoozed_until" in changes and conversation.status == "snoozed":
        conversation.snoozed_until = changes["snoozed_until"]
    if "priority" in changes:
        conversation.priority = PRIORITIES.index(changes["priority"])
    if "labels" in changes:
        wanted = sorted({label.strip() for label in changes["labels"] if label.strip()})
        conversation.label_rows = [row for row in conversation.label_rows if row.label in wanted]
        have = {row.label for row in conversation.label_rows}
        conversation.label_rows += [ConversationLabel(label=label) for label in wanted if label not in have]
    conversation.updated_at = now
    sla.refresh_conversation(session, conversation, f"status:{conversation.status}")
    from inbox.services.assignment import after_update  # freed capacity -> backlog pickup
    after_update(session, conversation, before)
    publish_conversation(session, conversation)
    return conversation


def wake_snoozed(session: Session, now: datetime | None = None) -> int:
    """Reopen conversations whose snooze time has come; publishes conversation.updated for each."""
    now = now or utcnow()
    query = (select(Conversation).where(Conversation.status == "snoozed", Conversation.snoozed_until <= now)
             .order_by(Conversation.id).limit(500))
    if session.get_bind().dialect.name == "postgresql":  # reconcilers of several workers share the work
        query = query.with_for_update(skip_locked=True)
    rows = list(session.execute(query).scalars())
    for conversation in rows:
        conversation.status = "open"
        conversation.snoozed_until = None
        _activity(session, conversation, None, "The snooze ended: the conversation is open again",
                  {"type": "status", "from": "snoozed", "to": "open"})
        sla.refresh_conversation(session, conversation, "status:open")
        publish_conversation(session, conversation)
    return len(rows)
