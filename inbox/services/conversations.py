"""The queue: listing with filters and keyset pagination, counts per view, claim, and changes."""
from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import (String, bindparam, exists, func, literal, or_, select, tuple_, union_all,
                        update)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction, aliased

from inbox import realtime
from inbox.api.schemas import (ConversationSchema, MessageSchema, PageRefs, RenderedConversation,
                               conversation_item_json, message_item_json)
from inbox.db import among, utcnow
from inbox.errors import Conflict, NotFound, ValidationFailed
from inbox.models import (Agent, Brand, Channel, Contact, Conversation, ConversationLabel, ConversationLink, Message,
                          Post, SlaClock, Team)
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
def _filters(session: Session, agent: Agent, params: dict[str, Any], *, include_assignee: bool = True,
             include_q: bool = True) -> list[Any]:
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
    if include_q and params.get("q"):  # the COUNT of view_counts; list pages search with _search_page
        pattern = _like_pattern(params["q"])
        conditions.append(or_(
            Conversation.contact_id.in_(select(Contact.id).where(or_(Contact.name.ilike(pattern, escape="\\"),
                                                                     Contact.handle.ilike(pattern, escape="\\")))),
            Conversation.id.in_(select(Message.conversation_id).where(Message.text.ilike(pattern, escape="\\"))),
        ))
    return conditions


def _among(session: Session, column: Any, ids: Any) -> Any:
    """`column IN ids` (db.among): a page's fifty ids, or a search's thousand, as one array on PostgreSQL."""
    return among(session.get_bind().dialect.name, column, ids)


def _like_pattern(q: str) -> str:
    """ILIKE '%q%' with q's own % _ and \\ taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# What a list item shows, as plain columns of one statement: ORM objects for fifty conversations and their five
# many-to-ones cost several times the SQL on a slow CPU, and the whole rows of channels and agents (credentials,
# password hashes) travelled for a name. Every statement costs a round trip, and a plan until psycopg prepares it
# (from its fifth run on a connection; read-only requests end in COMMIT so that those survive, db.end_request), so:
#  * brand, channel and assignee names are scalar subqueries, not joins: a join of six tables took PostgreSQL ~4 ms
#    to plan for 0.5 ms of execution;
#  * labels and linked ids come as one list per row (they were two more statements);
#  * contact and post are joined under aliases, so a filter's own subquery on contacts (q) stays uncorrelated.
_item_contact = aliased(Contact, name="item_contact")
_item_post = aliased(Post, name="item_post")
_item_queries: dict[str, Any] = {}


def _ordered_list(column: Any, owner: Any, dialect: str) -> Any:
    """The values of `column` whose `owner` is the row's conversation, as one list, in the order of `column`."""
    if dialect == "postgresql":
        # array_agg ORDER BY: the database's collation, as the ORM relationship's ORDER BY label
        return (select(func.array_agg(aggregate_order_by(column, column))).where(owner == Conversation.id)
                .scalar_subquery())
    # SQLite: no ORDER BY inside aggregates before 3.44; conversation_items sorts (BINARY collation = code points)
    return select(func.json_group_array(column)).where(owner == Conversation.id).scalar_subquery()


def _item_query(dialect: str) -> Any:
    query = _item_queries.get(dialect)
    if query is not None:
        return query
    query = (
        select(
            Conversation.id, Conversation.kind, Conversation.status, Conversation.snoozed_until,
            Conversation.priority, Conversation.brand_id, Conversation.channel_id, Conversation.contact_id,
            Conversation.team_id, Conversation.assignee_id, Conversation.post_id, Conversation.last_message_preview,
            Conversation.last_message_direction, Conversation.last_inbound_at, Conversation.last_outbound_at,
            Conversation.last_message_at, Conversation.waiting_since, Conversation.resolved_at,
            Conversation.created_at, Conversation.updated_at, Conversation.language, Conversation.sla_due_at,
            select(Brand.name).where(Brand.id == Conversation.brand_id).scalar_subquery().label("brand_name"),
            select(Channel.name).where(Channel.id == Conversation.channel_id).scalar_subquery().label("channel_name"),
            select(Channel.kind).where(Channel.id == Conversation.channel_id).scalar_subquery().label("channel_kind"),
            select(Team.name).where(Team.id == Conversation.team_id).scalar_subquery().label("team_name"),
            select(Agent.name).where(Agent.id == Conversation.assignee_id).scalar_subquery().label("assignee_name"),
            _item_contact.name.label("contact_name"), _item_contact.handle.label("contact_handle"),
            _item_contact.avatar_url.label("contact_avatar_url"), _item_post.external_id.label("post_external_id"),
            _item_post.text.label("post_text"), _item_post.permalink.label("post_permalink"),
            _ordered_list(ConversationLabel.label, ConversationLabel.conversation_id, dialect).label("label_list"),
            _ordered_list(ConversationLink.linked_id, ConversationLink.conversation_id, dialect).label("link_list"),
        )
        .select_from(Conversation)
        .join(_item_contact, _item_contact.id == Conversation.contact_id)
        .outerjoin(_item_post, _item_post.id == Conversation.post_id)
    )
    _item_queries[dialect] = query
    return query


def _row_list(value: Any) -> list[Any]:
    """A label_list / link_list value: a list (PostgreSQL; None when empty) or JSON text (SQLite)."""
    if value is None:
        return []
    if isinstance(value, str):
        return sorted(json.loads(value))
    return value


def conversation_items(session: Session, rows: list[Any]) -> list[RenderedConversation]:
    """The JSON of each row of `_item_query` (ConversationSchema, field by field): the current SLA clocks of the
    whole page in one query, nested brand / channel / assignee built once per page."""
    if not rows:
        return []
    now = utcnow()
    clocks = _current_clocks(session, [row.id for row in rows], now)
    refs = PageRefs()
    return [conversation_item_json(row, _row_list(row.label_list), clocks.get(row.id, []),
                                   _row_list(row.link_list), refs, now) for row in rows]


def read_conversation(session: Session, agent: Agent, conversation_id: int) -> RenderedConversation:
    """One conversation's JSON (GET /conversations/<id>), built as a list item: two statements after the access
    check, where loading the model took one per many-to-one, labels, clocks and links (404 as
    access.get_conversation_for; its check without loading the model)."""
    if conversation_id not in access.visible_conversation_ids(session, agent, [conversation_id]):
        raise NotFound("conversation not found")
    row = session.execute(_item_query(session.get_bind().dialect.name)
                          .where(Conversation.id == conversation_id)).one_or_none()
    if row is None:  # deleted in between
        raise NotFound("conversation not found")
    return conversation_items(session, [row])[0]


def _current_clocks(session: Session, conversation_ids: list[int], now: datetime) -> dict[int, list[dict[str, Any]]]:
    """`sla.current_clocks` of several conversations, from one query: the same dicts for each (the current clock
    of each metric by metric, time left in business and calendar seconds)."""
    out: dict[int, list[dict[str, Any]]] = {}
    calendars: dict[int, Any] = {}

    def calendar_of(policy_id: int) -> Any:
        if not calendars:  # the live policies (cached per process), read once a page needs one
            calendars.update({p.id: p.calendar for p in sla.active_policies(session)})
        return calendars.get(policy_id)

    for clock in session.execute(
            select(SlaClock.conversation_id, SlaClock.policy_id, SlaClock.metric, SlaClock.state, SlaClock.cycle,
                   SlaClock.turn, SlaClock.due_at, SlaClock.warning_at, SlaClock.started_at, SlaClock.stopped_at,
                   SlaClock.target_seconds, SlaClock.elapsed_seconds)
            .where(_among(session, SlaClock.conversation_id, conversation_ids), SlaClock.is_current.is_(True))
            .order_by(SlaClock.conversation_id, SlaClock.metric)):
        business_left, calendar_left = sla.time_left(clock, now, calendar_of)
        out.setdefault(clock.conversation_id, []).append({
            "metric": clock.metric, "state": clock.state, "cycle": clock.cycle, "turn": clock.turn,
            "due_at": clock.due_at, "warning_at": clock.warning_at, "started_at": clock.started_at,
            "stopped_at": clock.stopped_at, "business_seconds_left": business_left,
            "calendar_seconds_left": calendar_left})
    return out


def list_conversations(session: Session, agent: Agent, params: dict[str, Any]) -> dict[str, Any]:
    """{"items", "next_cursor", "counts"} for the agent's visible conversations matching the filters; the items are
    their JSON already (RenderedConversation), which the page schemas pass through.

    sort "waiting": longest-waiting customer first (waiting_since ascending), then those not waiting;
    sort "newest": latest message first. Keyset pagination: the cursor holds the last row's sort key."""
    limit = params.get("limit", 50)
    conditions = _filters(session, agent, params, include_q=False)
    # One statement for the page's rows, their many-to-ones, labels and links, then one for their SLA clocks
    # (conversation_items): a page costs the same few statements at any size.
    base = _item_query(session.get_bind().dialect.name)
    if params.get("q"):
        rows, next_cursor = _search_page(session, base, conditions, params["q"], params.get("cursor"), limit)
        # no counts: counting every match is the unbounded work the search avoids (the views keep theirs)
        return {"items": conversation_items(session, rows), "next_cursor": next_cursor}
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
    result: dict[str, Any] = {"items": conversation_items(session, rows[:limit]), "next_cursor": next_cursor}
    if params.get("counts", True) and not params.get("cursor"):  # the next pages do not need them again
        result["counts"] = view_counts(session, agent, params)
    return result


def _ascending_run(session: Session, query: Any, column: Any, after: Any, after_id: int | None,
                   limit: int) -> list[Any]:
    """Up to limit + 1 rows with `column` set, by (column, id) ascending, after the cursor's (after, after_id)."""
    query = query.where(column.is_not(None))
    if after is not None:
        # a row comparison, so PostgreSQL seeks the index instead of filtering every row before the cursor
        query = query.where(tuple_(column, Conversation.id) > tuple_(_when(after), after_id))
    return list(session.execute(query.order_by(column, Conversation.id).limit(limit + 1)))


# Most recent activity first: last_message_at descending, NULLs first, then id descending. A NULL (a conversation
# without any message) does not occur in practice, as a conversation gets its first message in the transaction that
# opens it, but the order must not be left to the database: PostgreSQL puts NULLs first for DESC, SQLite last, and
# the pages of one list would then differ by database. First, because it is PostgreSQL's own DESC: the order is
# still the index (status, last_message_at, id) read backwards (ascending is NULLS LAST, so backwards is NULLS
# FIRST); and it is the console's order (frontend conversationView.ts, byNewest), against which it places a live
# row next to the cursor's. SQLite reads the same index in two passes for it, the NULLs, then the others.
_NEWEST = (Conversation.last_message_at.desc().nulls_first(), Conversation.id.desc())


def _after_newest(at: datetime | None, last_id: int) -> Any:
    """The rows after the cursor's (at, last_id) in the _NEWEST order."""
    if at is not None:
        # a row comparison, so PostgreSQL seeks the index; it also leaves out every NULL row, as it should (they
        # came first): a comparison with NULL is NULL
        return tuple_(Conversation.last_message_at, Conversation.id) < tuple_(at, last_id)
    # the cursor's row has no message: the other such rows of lower id, then every row with one. An index filter
    # rather than a seek, for a cursor that does not occur in practice
    return or_(Conversation.last_message_at.is_not(None), Conversation.id < last_id)


def _page_waiting(session: Session, base: Any, conditions: list[Any], cursor: str | None, limit: int) -> list[Any]:
    """Waiting customers first (oldest waiting_since first), then the others (most recent activity first).
    The cursor says which of the two runs it stopped in: ["w", waiting_since, id] or ["n", last_message_at, id]."""
    phase, last_at, last_id = decode_cursor(cursor, 3) if cursor else ("w", None, None)
    query = base.where(*conditions)
    rows: list[Any] = []
    if phase == "w":
        rows = _ascending_run(session, query, Conversation.waiting_since, last_at, last_id, limit)
        if len(rows) > limit:
            return rows
        last_at = last_id = None
    # The others, most recent activity first, as "newest" orders them (_NEWEST, _after_newest): a page stops after
    # its rows instead of sorting every answered conversation of the view.
    query = query.where(Conversation.waiting_since.is_(None))
    if last_id is not None:
        query = query.where(_after_newest(_when(last_at), last_id))
    rows += list(session.execute(query.order_by(*_NEWEST).limit(limit + 1 - len(rows))))
    return rows


def _page_sla_due(session: Session, base: Any, conditions: list[Any], cursor: str | None, limit: int) -> list[Any]:
    """Soonest SLA due time first; conversations without a running clock follow, by id."""
    due_at, last_id = decode_cursor(cursor, 2) if cursor else (None, None)
    query = base.where(*conditions)
    rows: list[Any] = []
    if cursor is None or due_at is not None:
        rows = _ascending_run(session, query, Conversation.sla_due_at, due_at, last_id, limit)
        if len(rows) > limit:
            return rows
        last_id = None
    query = query.where(Conversation.sla_due_at.is_(None))
    if last_id is not None:
        query = query.where(Conversation.id > last_id)
    rows += list(session.execute(query.order_by(Conversation.id).limit(limit + 1 - len(rows))))
    return rows


def _waiting_key(conversation: Any) -> list[Any]:
    if conversation.waiting_since is not None:
        return ["w", conversation.waiting_since, conversation.id]
    return ["n", conversation.last_message_at, conversation.id]


def _page_newest(session: Session, base: Any, conditions: list[Any], cursor: str | None, limit: int) -> list[Any]:
    """Up to limit + 1 rows in the _NEWEST order, after the cursor [last_message_at, id]."""
    query = base.where(*conditions)
    if cursor:
        last_at, last_id = decode_cursor(cursor, 2)  # last_at is null when the cursor's row has no message
        query = query.where(_after_newest(_when(last_at), last_id))
    return list(session.execute(query.order_by(*_NEWEST).limit(limit + 1)))


# ---------------------------------------------------------------- text search
# `q` matches the contact's name or handle or the text of any message of the conversation (ILIKE '%q%'). Results
# come newest first (last_message_at, id descending, whatever `sort` says), and each page's cost is bounded
# whatever the size of the tables:
#  * a probe asks the trigram indexes for the matching contacts, then (unless those are already too many) for the
#    conversations of the matching messages, at most SEARCH_CANDIDATES of each, under a statement timeout of
#    SEARCH_PROBE_MS (a text made of common trigrams makes the index scan itself long, before LIMIT can stop
#    anything: 30-50 ms for a word in 0.05% of 10M messages). When both lists are complete (a rare text: a
#    customer's name, an order number), the page is the newest `limit` conversations among them, and the next
#    page probes again;
#  * otherwise (a common text, or a slow probe) the page examines the next SEARCH_WINDOW conversations of the
#    view, newest first, and keeps those that match: a page may then hold fewer than `limit` items (even none)
#    with a next_cursor after the last conversation examined, so a client keeps asking while it wants more.
#  * a failed probe is pure loss, and it was most of a common text's page (the whole timeout, then the slice). So
#    each process remembers for SEARCH_MEMO_SECONDS the texts whose probe failed twice in a row (a timeout may be
#    a busy moment; more candidates than the cap counts twice), and does not probe them again: not for their
#    next pages (their cursors say so, "s", for the other processes too), nor for their first page when the
#    console fetches the search again or another agent searches the same text.
# Every cursor is the key (last_message_at, id) down to which nothing was missed, so whichever way each page is
# built, the matches over all pages are the same conversations, once each.
SEARCH_CANDIDATES = 1000
SEARCH_PROBE_MS = 5
SEARCH_WINDOW = 100
SEARCH_MEMO_SECONDS = 600
SEARCH_MEMO_SIZE = 1000
# lowercased pattern -> (time.monotonic() of its last failed probe, failures since its last success: 1 per timeout,
# 2 per overflow), oldest first
_failed_probes: dict[str, tuple[float, int]] = {}
_failed_probes_lock = threading.Lock()


def _search_page(session: Session, base: Any, conditions: list[Any], q: str, cursor: str | None,
                 limit: int) -> tuple[list[Any], str | None]:
    pattern = _like_pattern(q)
    newest = (Conversation.last_message_at.desc(), Conversation.id.desc())
    key = (Conversation.last_message_at, Conversation.id)
    # every conversation gets its last_message_at with its first message (same transaction): a key to page on
    conditions = [*conditions, Conversation.last_message_at.is_not(None)]
    slices = False
    if cursor:
        slices, last_at, last_id = _decode_search_cursor(cursor)
        conditions.append(tuple_(*key) < tuple_(_when(last_at), last_id))
    query = base.where(*conditions)
    probe = None
    if not slices and not _probe_failed_recently(pattern):
        probe = _search_probe(session, pattern)
    if probe is not None:
        contact_ids, conversation_ids = probe
        if not contact_ids and not conversation_ids:
            return [], None
        rows = list(session.execute(query.where(or_(_among(session, Conversation.contact_id, contact_ids),
                                                    _among(session, Conversation.id, conversation_ids)))
                                    .order_by(*newest).limit(limit + 1)))
        boundary = None
    else:
        # the SEARCH_WINDOW-th conversation after the cursor: this page examines those up to it
        boundary = session.execute(select(*key).where(*conditions).order_by(*newest)
                                   .offset(SEARCH_WINDOW - 1).limit(1)).first()
        if boundary is not None:
            query = query.where(tuple_(*key) >= tuple_(*boundary))
        matches = or_(_item_contact.name.ilike(pattern, escape="\\"),
                      _item_contact.handle.ilike(pattern, escape="\\"),
                      exists().where(Message.conversation_id == Conversation.id,
                                     Message.text.ilike(pattern, escape="\\")))
        rows = list(session.execute(query.where(matches).order_by(*newest).limit(limit + 1)))
    mode = "s" if probe is None and (slices or _probe_failed_recently(pattern)) else "p"
    if len(rows) > limit:
        return rows[:limit], encode_cursor([mode, rows[limit - 1].last_message_at, rows[limit - 1].id])
    if boundary is not None:  # fewer than a page among those examined; the next page goes on after them
        return rows, encode_cursor([mode, boundary[0], boundary[1]])
    return rows, None


def _decode_search_cursor(cursor: str) -> tuple[bool, Any, Any]:
    """(pages go on by slices, last_message_at, id) of a search cursor ["p" | "s", at, id]."""
    try:
        mode, last_at, last_id = decode_cursor(cursor, 3)
    except ValidationFailed:  # [at, id], from before the cursor said how its page was built
        (last_at, last_id), mode = decode_cursor(cursor, 2), "p"
    if mode not in ("p", "s"):
        raise ValidationFailed("invalid cursor", fields={"cursor": ["not a cursor returned by this API"]})
    return mode == "s", last_at, last_id


def _probe_failed_recently(pattern: str) -> bool:
    failed_at, failures = _failed_probes.get(pattern.lower(), (0.0, 0))
    return failures >= 2 and time.monotonic() - failed_at < SEARCH_MEMO_SECONDS


def _note_probe(pattern: str, failures: int) -> None:
    """Count `failures` more failed probes of `pattern` (after those of its last SEARCH_MEMO_SECONDS), or forget
    them (0: a probe that succeeded)."""
    key, now = pattern.lower(), time.monotonic()
    with _failed_probes_lock:
        failed_at, before = _failed_probes.pop(key, (0.0, 0))
        if failures:
            _failed_probes[key] = (now, failures + (before if now - failed_at < SEARCH_MEMO_SECONDS else 0))
            while len(_failed_probes) > SEARCH_MEMO_SIZE:
                del _failed_probes[next(iter(_failed_probes))]


def _probe_statement() -> Any:
    """Rows (found, id) for the text of the bound parameter `pattern`: found 1 = a contact whose name or handle
    matches, 2 = the conversation of a matching message; at most SEARCH_CANDIDATES + 1 of each (the trigram indexes
    of migration 0006 find them). The messages are not searched when the contacts are already too many (a common
    name: slices will build the page). Built once per cap: building it took longer than a failing probe's SQL."""
    statement = _probe_statements.get(SEARCH_CANDIDATES)
    if statement is None:
        pattern = bindparam("pattern", type_=String)
        contacts = (select(Contact.id).where(or_(Contact.name.ilike(pattern, escape="\\"),
                                                 Contact.handle.ilike(pattern, escape="\\")))
                    .limit(SEARCH_CANDIDATES + 1).cte("probe_contacts"))
        messages = (select(Message.conversation_id).where(Message.text.ilike(pattern, escape="\\"))
                    .limit(SEARCH_CANDIDATES + 1).subquery())
        few_contacts = select(func.count()).select_from(contacts).scalar_subquery() <= SEARCH_CANDIDATES
        statement = _probe_statements[SEARCH_CANDIDATES] = union_all(
            select(literal(1).label("found"), contacts.c.id.label("id")),
            select(literal(2), messages.c.conversation_id).where(few_contacts))
    return statement


_probe_statements: dict[int, Any] = {}


def _rollback_keeping_prepared(raw: Any, savepoint: SessionTransaction) -> None:
    """Roll back the probe's savepoint without psycopg forgetting the prepared statements of the connection `raw`.

    psycopg clears its cache of prepared statements, and sends DEALLOCATE ALL, after a command whose status tag is
    ROLLBACK, which ROLLBACK TO SAVEPOINT answers (psycopg/_preparing.py, _should_discard): each probe, cancelled
    or not, made the rest of the request, and the requests after it on that connection, prepare every statement
    again (inbox/db.py, end_request, ends read-only requests with COMMIT to keep them). That clearing guards
    against a rollback that undid DDL; this one undoes a set_config and a SELECT. PostgreSQL's prepared statements
    belong to the session, not to the transaction: one prepared inside the savepoint (the probe, once run often
    enough) survives its rollback. A statement whose Parse failed there was never cached (psycopg raises first),
    and nothing runs between the probe's failure and this rollback. With prepare_threshold None psycopg prepares
    nothing and keeps no account of what it runs, status tags included: the rollback is sent so, and the
    threshold restored."""
    threshold = getattr(raw, "prepare_threshold", None)
    if threshold is None:  # not psycopg, or a connection that prepares nothing: nothing to keep
        savepoint.rollback()
        return
    raw.prepare_threshold = None
    try:
        savepoint.rollback()
    finally:
        raw.prepare_threshold = threshold


def _search_probe(session: Session, pattern: str) -> tuple[set[int], set[int]] | None:
    """(ids of the contacts whose name or handle matches, ids of the conversations with a matching message), or
    None when either holds more than SEARCH_CANDIDATES or PostgreSQL needed more than SEARCH_PROBE_MS for them.
    Counts the failure, or forgets the text's past ones (_note_probe)."""
    statement, params = _probe_statement(), {"pattern": pattern}
    if session.get_bind().dialect.name != "postgresql":
        rows = session.execute(statement, params).all()
    else:
        # A savepoint carries the timeout: rolling it back ends the SET LOCAL, and a cancelled probe with it. A
        # cancelled statement aborts its transaction, which only a ROLLBACK (TO SAVEPOINT) ends, so the probe would
        # cost that rollback wherever it ran: on a connection of its own, to that connection's prepared statements
        # (another request's: the pool hands out its hot ones first), plus a second connection held per search.
        # Here, its rollback keeps them (_rollback_keeping_prepared).
        savepoint = session.begin_nested()
        raw = session.connection().connection.dbapi_connection
        try:
            session.execute(select(func.set_config("statement_timeout", str(SEARCH_PROBE_MS), True)))
            rows = session.execute(statement, params).all()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "57014":  # query_canceled: the timeout
                raise
            rows = None
        finally:
            _rollback_keeping_prepared(raw, savepoint)
        if rows is None:
            _note_probe(pattern, 1)
            return None
    contact_ids = {row.id for row in rows if row.found == 1}
    message_rows = sum(1 for row in rows if row.found == 2)
    if len(contact_ids) > SEARCH_CANDIDATES or message_rows > SEARCH_CANDIDATES:
        _note_probe(pattern, 2)
        return None
    _note_probe(pattern, 0)
    return contact_ids, {row.id for row in rows if row.found == 2}


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


# What a message of a page shows (MessageSchema), as plain columns: no ORM objects, and no edit history or
# delivery bookkeeping travelling for nothing.
_MESSAGE_COLUMNS = (
    Message.id, Message.conversation_id, Message.direction, Message.kind, Message.reply_type, Message.text,
    Message.attachments, Message.author_type, Message.author_agent_id, Message.author_contact_id,
    Message.author_name, Message.platform_time, Message.received_at, Message.delivery_status,
    Message.delivery_error, Message.external_id, Message.edited_at, Message.deleted_at, Message.hidden,
    Message.liked, Message.reply_to_id, Message.extra,
)


def list_messages(session: Session, agent: Agent, conversation_id: int, limit: int,
                  cursor: str | None) -> dict[str, Any]:
    """Newest first; `next_cursor` pages to older messages. The items are their JSON already (RenderedMessage)."""
    # the check of access.get_conversation_for without loading the model (and its labels and clocks)
    if conversation_id not in access.visible_conversation_ids(session, agent, [conversation_id]):
        raise NotFound("conversation not found")
    query = select(*_MESSAGE_COLUMNS).where(Message.conversation_id == conversation_id)
    if cursor:
        last_at, last_id = decode_cursor(cursor, 2)
        query = query.where(tuple_(Message.platform_time, Message.id) < tuple_(_when(last_at), last_id))
    rows = list(session.execute(query.order_by(Message.platform_time.desc(), Message.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([rows[limit - 1].platform_time, rows[limit - 1].id]) if len(rows) > limit else None
    return {"items": [message_item_json(row) for row in rows[:limit]], "next_cursor": next_cursor}


# ---------------------------------------------------------------- changes
def _activity(session: Session, conversation: Conversation, agent: Agent | None, text: str,
              details: dict[str, Any]) -> None:
    """A history row (kind activity): seen by the team only, never sent. `text` is its English sentence (API
    clients, exports); `details` (the message's `extra.activity`) carry its type and the names it shows, from
    which the console writes the sentence in the agent's language."""
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
              {"type": "claimed", "agent_id": agent.id, "agent_name": agent.name})
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
            assignee = None
            text = f"{agent.name} unassigned the conversation"
        conversation.assignee_id = new_id
        conversation.assigned_at = now if new_id else None
        _activity(session, conversation, agent, text, {"type": "assigned", "assignee_id": new_id,
                                                       "assignee_name": assignee.name if assignee else None,
                                                       "actor_name": agent.name})
    if "team_id" in changes and changes["team_id"] != conversation.team_id:
        if changes["team_id"] is not None and session.get(Team, changes["team_id"]) is None:
            raise ValidationFailed("unknown team", fields={"team_id": ["no such team"]})
        conversation.team_id = changes["team_id"]
    if "status" in changes and changes["status"] != conversation.status:
        status = changes["status"]
        if status == "snoozed":
            until = changes.get("snoozed_until")
            if until is None or until <= now:
                raise ValidationFailed("snooze needs a future time",
                                       fields={"snoozed_until": ["must be in the future"]})
            conversation.snoozed_until = until
        else:
            conversation.snoozed_until = None
        conversation.resolved_at = now if status == "resolved" else None
        _activity(session, conversation, agent, f"{agent.name} set the status to {status}",
                  {"type": "status", "from": conversation.status, "to": status, "actor_name": agent.name})
        conversation.status = status
    elif "snoozed_until" in changes and conversation.status == "snoozed":
        conversation.snoozed_until = changes["snoozed_until"]
    if "priority" in changes and PRIORITIES.index(changes["priority"]) != conversation.priority:
        before_priority = PRIORITIES[conversation.priority]
        conversation.priority = PRIORITIES.index(changes["priority"])
        _activity(session, conversation, agent, f"{agent.name} set the priority to {changes['priority']}",
                  {"type": "priority", "from": before_priority, "to": changes["priority"], "actor_name": agent.name})
    if "labels" in changes:
        wanted = sorted({label.strip() for label in changes["labels"] if label.strip()})
        have = {row.label for row in conversation.label_rows}
        added, removed = [label for label in wanted if label not in have], sorted(have - set(wanted))
        conversation.label_rows = [row for row in conversation.label_rows if row.label in wanted]
        conversation.label_rows += [ConversationLabel(label=label) for label in added]
        if added or removed:  # who tagged what: the history a supervisor reads back
            text = f"{agent.name} changed the labels" + (f": +{', +'.join(added)}" if added else "") \
                + (f"{',' if added else ':'} -{', -'.join(removed)}" if removed else "")
            _activity(session, conversation, agent, text,
                      {"type": "labels", "added": added, "removed": removed, "actor_name": agent.name})
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
