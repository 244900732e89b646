"""SLA clocks of conversations: which policy applies, the history replayed by `inbox.sla.evaluate`, the stored
clocks and their log, and the live sla.warning / sla.breached pushes.

`refresh_conversation(session, conversation, cause)` is THE entry point, called by ingest, delivery, status
changes and the timer inside their transaction. Without any live policy it returns at once (the policies are
cached per process for POLICY_CACHE_SECONDS, and the cache is dropped when a policy or calendar changes here).

Calendars and policies are administered here too (admins write, supervisors read).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable

from sqlalchemy import and_, or_, select
from sqlalchemy import event as _sa_event
from sqlalchemy.orm import Session, object_session

from inbox import realtime
from inbox.db import insert_for, utcnow
from inbox.errors import NotFound, ValidationFailed
from inbox.models import Agent, Calendar, Conversation, Message, SlaClock, SlaEvent, SlaPolicy
from inbox.services import sla_timer
from inbox.services.access import require_admin, require_supervisor
from inbox.sla import (BusinessCalendar, CalendarTime, ClockState, Inbound, Interval, Now, PublicReply, SlaResult,
                       SlaTargets, StatusChange, evaluate, holidays_from_ics, next_deadline, parse_hhmm)
from inbox.sla.calendar import Calendar as CalendarProtocol
from inbox.sla.engine import ClockEvent

log = logging.getLogger(__name__)
POLICY_CACHE_SECONDS = 5.0
POLICY_CHANGED = "policy:changed"
CONDITION_KEYS = ("brand_ids", "channel_kinds", "conversation_kinds", "priorities", "labels")
_SENT = ("sent", "delivered", "read")


# ---------------------------------------------------------------- policies, as the engine needs them
@dataclass(frozen=True)
class ActivePolicy:
    """A live policy, detached from any session: safe to share between threads."""
    id: int
    position: int
    conditions: dict[str, Any]
    targets: SlaTargets
    calendar: CalendarProtocol


@dataclass(frozen=True)
class ConversationFacts:
    """What policy conditions look at."""
    brand_id: int
    channel_kind: str
    conversation_kind: str
    priority: str
    labels: frozenset[str]


def policy_matches(conditions: dict[str, Any], facts: ConversationFacts) -> bool:
    """Every condition given (a non-empty list) must match; within one list, any value matches."""
    checks = (("brand_ids", {facts.brand_id}), ("channel_kinds", {facts.channel_kind}),
              ("conversation_kinds", {facts.conversation_kind}), ("priorities", {facts.priority}),
              ("labels", facts.labels))
    for key, values in checks:
        wanted = conditions.get(key)
        if wanted and not set(wanted) & values:
            return False
    return True


def first_matching(policies: Sequence[ActivePolicy], facts: ConversationFacts) -> ActivePolicy | None:
    """The first policy by position (then id) whose conditions match."""
    for policy in sorted(policies, key=lambda p: (p.position, p.id)):
        if policy_matches(policy.conditions, facts):
            return policy
    return None


def business_calendar(calendar: Calendar | None) -> CalendarProtocol:
    if calendar is None:
        return CalendarTime()
    return BusinessCalendar(calendar.timezone, _intervals(calendar.intervals),
                            {date.fromisoformat(day) for day in calendar.holidays})


def _intervals(rows: Iterable[dict[str, Any]]) -> list[Interval]:
    return [Interval(row["weekday"], parse_hhmm(row["start"]), parse_hhmm(row["end"])) for row in rows]


def targets_of(policy: SlaPolicy) -> SlaTargets:
    return SlaTargets(first_response_seconds=policy.first_response_seconds,
                      next_response_seconds=policy.next_response_seconds,
                      resolution_seconds=policy.resolution_seconds,
                      warning_ratio=policy.warning_ratio, pause_on=frozenset(policy.pause_on or ()))


class _PolicyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policies: tuple[ActivePolicy, ...] | None = None
        self._loaded_at = 0.0

    def get(self, session: Session) -> tuple[ActivePolicy, ...]:
        with self._lock:
            if self._policies is not None and time.monotonic() - self._loaded_at < POLICY_CACHE_SECONDS:
                return self._policies
        policies = _load_policies(session)
        with self._lock:
            self._policies, self._loaded_at = policies, time.monotonic()
        return policies

    def invalidate(self) -> None:
        with self._lock:
            self._policies = None


_cache = _PolicyCache()
_OWN_POLICIES = "relais.sla_policies"


def _load_policies(session: Session) -> tuple[ActivePolicy, ...]:
    rows = session.execute(select(SlaPolicy).where(SlaPolicy.archived.is_(False))
                           .order_by(SlaPolicy.position, SlaPolicy.id)).scalars()
    active = []
    for policy in rows:
        try:
            active.append(ActivePolicy(policy.id, policy.position, dict(policy.conditions or {}),
                                       targets_of(policy), business_calendar(policy.calendar)))
        except (ValueError, TypeError):  # validated on write; a bad row must not stop every conversation
            log.exception("SLA policy %s is unusable and ignored", policy.id)
    return tuple(active)


def active_policies(session: Session) -> tuple[ActivePolicy, ...]:
    """The live policies by position, cached per process for POLICY_CACHE_SECONDS; a transaction that
    changes policies sees its own (uncommitted) version, never shared with other threads."""
    own = session.info.get(_OWN_POLICIES)
    if own is not None:
        return own
    return _cache.get(session)


def invalidate_policy_cache() -> None:
    _cache.invalidate()


def facts_of(conversation: Conversation) -> ConversationFacts:
    return ConversationFacts(brand_id=conversation.brand_id, channel_kind=conversation.channel.kind,
                             conversation_kind=conversation.kind, priority=conversation.priority_name,
                             labels=frozenset(conversation.labels))


# ---------------------------------------------------------------- history
@dataclass(frozen=True)
class HistoryRow:
    """The columns of a message that matter to SLA clocks."""
    id: int
    direction: str
    kind: str
    reply_type: str | None
    author_type: str
    delivery_status: str | None
    platform_time: datetime
    sent_at: datetime | None
    extra: dict[str, Any] | None


def history_from_messages(rows: Iterable[HistoryRow]) -> list[Inbound | PublicReply | StatusChange]:
    """The SLA history of a conversation, in time order (ties by message id).

    Customer messages count from their platform time (capped at reception at ingest); public replies by an
    agent (reply / private_reply) or made natively on the platform (echo, extra.native) count once sent, at
    their send time; status changes come from the activity rows. Notes and other activities do not count."""
    timed: list[tuple[datetime, int, Inbound | PublicReply | StatusChange]] = []
    for row in rows:
        extra = row.extra or {}
        if row.direction == "in" and row.kind in ("message", "comment") and row.author_type == "contact":
            timed.append((row.platform_time, row.id, Inbound(row.platform_time, row.id)))
        elif row.direction == "out" and row.kind in ("message", "comment"):
            if row.delivery_status not in _SENT:
                continue
            human = (row.author_type == "agent" and row.reply_type in ("reply", "private_reply")) \
                or bool(extra.get("native"))
            if human:
                at = row.sent_at or row.platform_time
                timed.append((at, row.id, PublicReply(at, row.id, by_human=True)))
        elif row.kind == "activity":
            activity = extra.get("activity") or {}
            if activity.get("type") == "status" and activity.get("to") in ("open", "pending", "snoozed", "resolved"):
                timed.append((row.platform_time, row.id, StatusChange(row.platform_time, activity["to"])))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [event for _at, _id, event in timed]


def _history_rows(session: Session, conversation_id: int) -> list[HistoryRow]:
    query = (select(Message.id, Message.direction, Message.kind, Message.reply_type, Message.author_type,
                    Message.delivery_status, Message.platform_time, Message.sent_at, Message.extra)
             .where(Message.conversation_id == conversation_id,
                    or_(and_(Message.direction == "in", Message.kind.in_(("message", "comment"))),
                        and_(Message.direction == "out", Message.kind.in_(("message", "comment")),
                             Message.delivery_status.in_(_SENT)),
                        Message.kind == "activity"))
             .order_by(Message.id))
    return [HistoryRow(*row) for row in session.execute(query)]


# ---------------------------------------------------------------- refresh: evaluate, store, log, push
def refresh_conversation(session: Session, conversation: Conversation, cause: str, *,
                         now: datetime | None = None, locked: bool = False) -> None:
    """Re-evaluate the conversation's SLA clocks in the caller's transaction.

    Writes: sla_clocks (upserted; removed when no policy applies), sla_events (only events not logged yet).
    Publishes sla.warning / sla.breached for a running clock that newly warned / breached (a breach found
    together with its warning pushes the breach only), to the conversation's rooms and its assignee.
    Wakes this process' SLA timer after commit when a deadline comes earlier than it planned.
    `cause` names why ("message:<id>", "status:<status>", "timer", "policy:changed"); it is logged when a
    policy change moves a running clock. `locked`: the caller's transaction holds the conversation's row lock
    already (ingest), so it is not taken again (a statement per conversation)."""
    policies = active_policies(session)
    if not policies:
        if conversation.current_sla_clocks:  # left by a policy archived in another process
            _remove_clocks(session, conversation)
        return
    if not locked and session.get_bind().dialect.name == "postgresql":
        # one refresher per conversation at a time (conversation first, then clocks: the order ingest and
        # status changes use), so a warning or breach is pushed once
        session.execute(select(Conversation.id).where(Conversation.id == conversation.id).with_for_update())
    policy = first_matching(policies, facts_of(conversation))
    if policy is None:
        _remove_clocks(session, conversation)
        return
    now = now or utcnow()
    try:
        result = evaluate(policy.targets, policy.calendar,
                          [*history_from_messages(_history_rows(session, conversation.id)), Now(now)])
    except ValueError:  # e.g. a calendar with no open time ahead: keep what was stored, log loudly
        log.exception("SLA evaluation failed for conversation %s", conversation.id)
        return
    _store(session, conversation, policy, result, cause, now)


def _remove_clocks(session: Session, conversation: Conversation) -> None:
    for clock in session.execute(select(SlaClock).where(SlaClock.conversation_id == conversation.id)).scalars():
        session.delete(clock)
    session.flush()
    _set_current(conversation, [])


SLA_STATE_RANK = {"breached": 4, "warning": 3, "running": 2, "paused": 1}


def _set_current(conversation: Conversation, clocks: list[SlaClock]) -> None:
    """Keep the current clocks on the object and the queue columns (sla_due_at, sla_state) in step: the
    list sorts and filters by them with an index instead of joining the clocks."""
    from sqlalchemy.orm.attributes import set_committed_value
    set_committed_value(conversation, "current_sla_clocks", sorted(clocks, key=lambda c: c.metric))
    open_clocks = [c for c in clocks if c.state in SLA_STATE_RANK]
    due = min((c.due_at for c in open_clocks if c.due_at is not None and c.state != "paused"), default=None)
    state = max((c.state for c in open_clocks), key=SLA_STATE_RANK.__getitem__, default=None)
    if conversation.sla_due_at != due:
        conversation.sla_due_at = due
    if conversation.sla_state != state:
        conversation.sla_state = state


def _store(session: Session, conversation: Conversation, policy: ActivePolicy, result: SlaResult, cause: str,
           now: datetime) -> None:
    existing = {(c.metric, c.cycle, c.turn): c for c in session.execute(
        select(SlaClock).where(SlaClock.conversation_id == conversation.id)
        .execution_options(populate_existing=True)).scalars()}
    latest: dict[str, tuple[int, int]] = {}
    for state in result.clocks:
        latest[state.metric] = max(latest.get(state.metric, (0, 0)), (state.cycle, state.turn))
    marks = _warn_and_breach_marks(result.events)
    kept: set[tuple[str, int, int]] = set()
    current: list[SlaClock] = []
    pushes: list[tuple[str, SlaClock]] = []
    moved: list[SlaClock] = []
    earliest: datetime | None = None
    for state in result.clocks:
        key = (state.metric, state.cycle, state.turn)
        kept.add(key)
        clock = existing.get(key)
        if clock is None:
            clock = SlaClock(conversation_id=conversation.id, metric=state.metric, cycle=state.cycle,
                             turn=state.turn)
            session.add(clock)
        elif cause == POLICY_CHANGED and state.stopped_at is None and (
                clock.policy_id != policy.id or clock.due_at != state.due_at or clock.warning_at != state.warning_at):
            moved.append(clock)
        warned_at, breached_at = marks.get(key, (None, None))
        if state.stopped_at is None:
            if breached_at is not None and clock.breached_at is None:
                pushes.append(("sla.breached", clock))
            elif warned_at is not None and clock.warned_at is None and breached_at is None:
                pushes.append(("sla.warning", clock))
        _copy_state(clock, state, policy.id, now, warned_at, breached_at)
        clock.is_current = latest[state.metric] == (state.cycle, state.turn)
        if clock.is_current:
            current.append(clock)
        if clock.next_deadline_at is not None and (earliest is None or clock.next_deadline_at < earliest):
            earliest = clock.next_deadline_at
    for key, clock in existing.items():
        if key not in kept:
            session.delete(clock)
    session.flush()
    _set_current(conversation, current)
    _append_events(session, conversation.id, policy.id, result.events,
                   [(clock, now) for clock in moved], now)
    rooms = realtime.conversation_rooms(conversation.brand_id)
    if conversation.assignee_id is not None:
        rooms.append(f"agent:{conversation.assignee_id}")
    for name, clock in pushes:
        due = clock.breached_at if name == "sla.breached" else clock.due_at
        realtime.publish(session, name, {"conversation_id": conversation.id, "metric": clock.metric,
                                         "due_at": due.isoformat() if due else None}, rooms)
    if earliest is not None:
        sla_timer.wake_after_commit(session, earliest)


def _warn_and_breach_marks(events: Iterable[ClockEvent]) -> dict[tuple[str, int, int], tuple[Any, Any]]:
    marks: dict[tuple[str, int, int], tuple[Any, Any]] = {}
    for event in events:
        key = (event.metric, event.cycle, event.turn)
        warned, breached = marks.get(key, (None, None))
        if event.kind == "warned":
            warned = event.at
        elif event.kind == "breached":
            breached = event.at
        marks[key] = (warned, breached)
    return marks


def _copy_state(clock: SlaClock, state: ClockState, policy_id: int, now: datetime, warned_at: datetime | None,
                breached_at: datetime | None) -> None:
    clock.policy_id = policy_id
    clock.state = state.state
    clock.target_seconds = state.target_seconds
    clock.started_at = state.started_at
    clock.due_at = state.due_at
    clock.warning_at = state.warning_at
    clock.stopped_at = state.stopped_at
    clock.stop_cause = state.stop_cause
    clock.warned_at = warned_at
    clock.breached_at = breached_at
    clock.elapsed_seconds = state.elapsed_seconds
    clock.paused_seconds = state.paused_seconds
    clock.paused_intervals = [[start.isoformat(), end.isoformat() if end else None]
                              for start, end in state.paused_intervals]
    clock.next_deadline_at = next_deadline([state])
    clock.evaluated_at = now


def _append_events(session: Session, conversation_id: int, policy_id: int, events: Sequence[ClockEvent],
                   moved: Sequence[tuple[SlaClock, datetime]], now: datetime) -> None:
    """Insert the log entries not written yet (a unique index makes a concurrent twin a no-op)."""
    query = select(SlaEvent.metric, SlaEvent.cycle, SlaEvent.turn, SlaEvent.kind, SlaEvent.at) \
        .where(SlaEvent.conversation_id == conversation_id)
    logged = {tuple(row) for row in session.execute(query)}
    rows = []
    for event in events:
        key = (event.metric, event.cycle, event.turn, event.kind, event.at)
        if key not in logged:
            logged.add(key)
            rows.append({"metric": event.metric, "cycle": event.cycle, "turn": event.turn, "kind": event.kind,
                         "at": event.at, "cause": event.cause})
    for clock, at in moved:  # the running clock now counts down to the changed policy's targets
        key = (clock.metric, clock.cycle, clock.turn, "started", at)
        if key not in logged:
            logged.add(key)
            rows.append({"metric": clock.metric, "cycle": clock.cycle, "turn": clock.turn, "kind": "started",
                         "at": at, "cause": POLICY_CHANGED})
    if rows:
        for row in rows:
            row.update(conversation_id=conversation_id, policy_id=policy_id, created_at=now)
        session.execute(insert_for(session, SlaEvent).values(rows).on_conflict_do_nothing())


def refresh_running(batch_size: int = 200, cause: str = POLICY_CHANGED) -> int:
    """Re-evaluate every conversation with a clock not stopped yet (a job, after a policy or calendar change),
    in batches of their own transactions, so a change with a million running clocks never holds one request or
    one transaction. Each batch locks its conversations with SKIP LOCKED: one being changed right now (ingest,
    a reply) is refreshed by that change itself, under the new policies, and is looked at again in a final pass.
    Returns how many conversations were re-evaluated."""
    from inbox.db import db

    invalidate_policy_cache()  # this job may start before the committing thread's own invalidation
    done, last_id, skipped = 0, 0, []
    while True:
        with db.transaction() as session:
            ids = list(session.execute(
                select(SlaClock.conversation_id).where(SlaClock.stopped_at.is_(None),
                                                       SlaClock.conversation_id > last_id)
                .distinct().order_by(SlaClock.conversation_id).limit(batch_size)).scalars())
            if not ids:
                break
            last_id = ids[-1]
            # (SQLite renders no FOR UPDATE: it has one writer at a time)
            locked = list(session.execute(select(Conversation).where(Conversation.id.in_(ids))
                                          .order_by(Conversation.id).with_for_update(skip_locked=True)).scalars())
            skipped.extend(sorted(set(ids) - {c.id for c in locked}))
            for conversation in locked:
                refresh_conversation(session, conversation, cause)
            done += len(locked)
    for conversation_id in skipped:  # the ones busy during their batch: one at a time, waiting for the lock
        with db.transaction() as session:
            conversation = session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is not None:
                refresh_conversation(session, conversation, cause)
                done += 1
    return done


# ---------------------------------------------------------------- reading
def time_left(clock: Any, now: datetime, calendar_of: Callable[[int], Any]) -> tuple[float | None, float | None]:
    """(business seconds left, calendar seconds left) of a clock (row or model): None when stopped; a paused clock
    keeps its remaining target; business time needs the policy's calendar (`calendar_of(policy_id)`, None for
    calendar-time policies), asked only when it is needed."""
    if clock.stopped_at is not None:
        return None, None
    if clock.state == "paused":
        return max(0.0, clock.target_seconds - clock.elapsed_seconds), None
    if clock.due_at is None:
        return None, None
    calendar = calendar_of(clock.policy_id) if clock.policy_id is not None else None
    business_left = calendar.business_seconds_between(now, clock.due_at) if calendar is not None else None
    return business_left, (clock.due_at - now).total_seconds()


def current_clocks(conversation: Conversation, now: datetime | None = None) -> list[dict[str, Any]]:
    """The current clock of each metric, as the conversation JSON shows it (no re-evaluation: stored rows),
    with the time left in business and in calendar seconds (negative when overdue, None when stopped)."""
    clocks = conversation.current_sla_clocks
    if not clocks:
        return []
    now = now or utcnow()
    session = object_session(conversation)
    calendars = {p.id: p.calendar for p in (active_policies(session) if session is not None else ())}
    out = []
    for clock in clocks:
        business_left, calendar_left = time_left(clock, now, lambda policy_id: calendars.get(policy_id))
        out.append({"metric": clock.metric, "state": clock.state, "cycle": clock.cycle, "turn": clock.turn,
                    "due_at": clock.due_at, "warning_at": clock.warning_at, "started_at": clock.started_at,
                    "stopped_at": clock.stopped_at, "business_seconds_left": business_left,
                    "calendar_seconds_left": calendar_left})
    return out


def list_events(session: Session, conversation_id: int) -> list[SlaEvent]:
    return list(session.execute(select(SlaEvent).where(SlaEvent.conversation_id == conversation_id)
                                .order_by(SlaEvent.at, SlaEvent.id)).scalars())


# ---------------------------------------------------------------- calendars
def _checked_calendar(timezone: str, intervals: list[dict[str, Any]], holidays: Iterable[str]) -> None:
    try:
        BusinessCalendar(timezone, _intervals(intervals), {date.fromisoformat(day) for day in holidays})
    except ValueError as exc:
        field = "timezone" if "timezone" in str(exc) else "intervals"
        raise ValidationFailed(str(exc), fields={field: [str(exc)]}) from None


def list_calendars(session: Session, actor: Agent) -> list[Calendar]:
    require_supervisor(actor)
    return list(session.execute(select(Calendar).order_by(Calendar.name, Calendar.id)).scalars())


def get_calendar(session: Session, actor: Agent, calendar_id: int) -> Calendar:
    require_supervisor(actor)
    calendar = session.get(Calendar, calendar_id)
    if calendar is None:
        raise NotFound("calendar not found")
    return calendar


def _name_free(session: Session, calendar_id: int | None, name: str) -> None:
    query = select(Calendar.id).where(Calendar.name == name)
    if calendar_id is not None:
        query = query.where(Calendar.id != calendar_id)
    if session.execute(query).first() is not None:
        raise ValidationFailed("a calendar with this name exists", fields={"name": ["already exists"]})


def create_calendar(session: Session, actor: Agent, *, name: str, timezone: str, intervals: list[dict[str, Any]],
                    holidays: list[str]) -> Calendar:
    """Writes a Calendar (admins)."""
    require_admin(actor)
    _checked_calendar(timezone, intervals, holidays)
    _name_free(session, None, name)
    calendar = Calendar(name=name, timezone=timezone, intervals=intervals, holidays=sorted(set(holidays)))
    session.add(calendar)
    session.flush()
    return calendar


def update_calendar(session: Session, actor: Agent, calendar_id: int, changes: dict[str, Any]) -> Calendar:
    """Changes a calendar (admins); the running clocks of the policies using it are re-evaluated."""
    calendar = get_calendar(session, actor, calendar_id)
    require_admin(actor)
    if "name" in changes:
        _name_free(session, calendar.id, changes["name"])
        calendar.name = changes["name"]
    timezone = changes.get("timezone", calendar.timezone)
    intervals = changes.get("intervals", calendar.intervals)
    holidays = sorted(set(changes.get("holidays", calendar.holidays)))
    _checked_calendar(timezone, intervals, holidays)
    calendar.timezone, calendar.intervals, calendar.holidays = timezone, intervals, holidays
    calendar.updated_at = utcnow()
    _policies_changed(session)
    return calendar


def import_holidays(session: Session, actor: Agent, calendar_id: int, ics: bytes) -> tuple[Calendar, int]:
    """Adds the dates of an iCalendar feed to the calendar's holidays (admins). Returns (calendar, added)."""
    calendar = get_calendar(session, actor, calendar_id)
    require_admin(actor)
    try:
        dates = holidays_from_ics(ics, timezone=calendar.timezone)
    except ValueError as exc:
        raise ValidationFailed("not an iCalendar file", fields={"ics": [str(exc)]}) from None
    before = set(calendar.holidays)
    merged = before | {day.isoformat() for day in dates}
    calendar.holidays = sorted(merged)
    calendar.updated_at = utcnow()
    _policies_changed(session)
    return calendar, len(merged - before)


# ---------------------------------------------------------------- policies
def list_policies(session: Session, actor: Agent, *, include_archived: bool = False) -> list[SlaPolicy]:
    require_supervisor(actor)
    query = select(SlaPolicy).order_by(SlaPolicy.position, SlaPolicy.id)
    if not include_archived:
        query = query.where(SlaPolicy.archived.is_(False))
    return list(session.execute(query).scalars())


def get_policy(session: Session, actor: Agent, policy_id: int) -> SlaPolicy:
    require_supervisor(actor)
    policy = session.get(SlaPolicy, policy_id)
    if policy is None:
        raise NotFound("SLA policy not found")
    return policy


def _check_policy(session: Session, policy: SlaPolicy) -> None:
    if policy.calendar_id is not None and session.get(Calendar, policy.calendar_id) is None:
        raise ValidationFailed("unknown calendar", fields={"calendar_id": ["no such calendar"]})
    if all(getattr(policy, f"{metric}_seconds") is None for metric in ("first_response", "next_response",
                                                                          "resolution")):
        raise ValidationFailed("a policy needs a target", fields={"first_response_seconds": [
            "give at least one of first_response_seconds, next_response_seconds, resolution_seconds"]})
    try:
        targets_of(policy)
    except ValueError as exc:
        raise ValidationFailed(str(exc), fields={"_schema": [str(exc)]}) from None


def create_policy(session: Session, actor: Agent, data: dict[str, Any]) -> SlaPolicy:
    """Writes an SlaPolicy (admins). Open conversations without clocks get them from a job after commit;
    the others at their next refresh."""
    require_admin(actor)
    policy = SlaPolicy(**data)
    _check_policy(session, policy)
    session.add(policy)
    session.flush()
    invalidate_policy_cache()
    from inbox.jobs import enqueue_after_commit
    from inbox.jobs.tasks import cover_open_conversations
    enqueue_after_commit(session, cover_open_conversations)
    return policy


def update_policy(session: Session, actor: Agent, policy_id: int, changes: dict[str, Any]) -> SlaPolicy:
    """Changes a policy (admins): the running clocks are re-evaluated, moved ones logged ("policy:changed")."""
    policy = get_policy(session, actor, policy_id)
    require_admin(actor)
    for key, value in changes.items():
        setattr(policy, key, value)
    _check_policy(session, policy)
    policy.updated_at = utcnow()
    _policies_changed(session)
    return policy


def archive_policy(session: Session, actor: Agent, policy_id: int) -> None:
    """Archives a policy (admins): it stops applying; running clocks are re-evaluated."""
    policy = get_policy(session, actor, policy_id)
    require_admin(actor)
    if not policy.archived:
        policy.archived = True
        policy.updated_at = utcnow()
        _policies_changed(session)


def _policies_changed(session: Session) -> None:
    """After commit, jobs re-evaluate the running clocks and give clocks to open conversations without any."""
    session.flush()
    session.info[_OWN_POLICIES] = _load_policies(session)
    invalidate_policy_cache()
    from inbox.jobs import enqueue_after_commit
    from inbox.jobs.tasks import cover_open_conversations, refresh_running_clocks
    enqueue_after_commit(session, refresh_running_clocks)
    enqueue_after_commit(session, cover_open_conversations)


def cover_open_conversations(batch_size: int = 200) -> int:
    """Give clocks to the unresolved conversations that have none (a policy created or widened after they
    opened), in batches of their own transactions. Returns how many conversations were evaluated."""
    from sqlalchemy import exists

    from inbox.db import db

    invalidate_policy_cache()  # this job may start before the committing thread's own invalidation
    done, last_id = 0, 0
    while True:
        with db.transaction() as session:
            conversations = list(session.execute(
                select(Conversation).where(Conversation.status != "resolved", Conversation.id > last_id,
                                           ~exists().where(SlaClock.conversation_id == Conversation.id))
                .order_by(Conversation.id).limit(batch_size)).scalars())
            for conversation in conversations:
                refresh_conversation(session, conversation, POLICY_CHANGED)
        done += len(conversations)
        if len(conversations) < batch_size:
            return done
        last_id = conversations[-1].id


@_sa_event.listens_for(Session, "after_commit")
@_sa_event.listens_for(Session, "after_rollback")
def _forget_own_policies(session: Session) -> None:
    if session.in_nested_transaction():
        return
    if session.info.pop(_OWN_POLICIES, None) is not None:
        invalidate_policy_cache()  # committed: everyone reloads; rolled back: nobody keeps what it saw
