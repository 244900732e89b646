"""Reports for the CM team's KPIs: overview, backlog, busiest hours. Read-only: no rows written, nothing published.

Definitions (design.md, "SLA semantics": reports use the clocks' own rules, through the same code):

- The period is the local dates `from`..`to` (inclusive) in `timezone`: [midnight of `from`, midnight after `to`)
  as real instants, so DST days last 23 or 25 hours. Day and hour buckets are real intervals of that timezone.
- An event counts in the period (and in a day / hour bucket) by its instant: inbound messages at their platform
  time capped at reception, replies at their send time, status changes at their activity row, clocks at their
  stop (response / resolution times, "met") or at their breach ("breached").
- volume_in: customer messages and comments; volume_out: public replies by a human (agent replies, private
  replies, replies made natively on the platform and seen as echoes; not notes, bots or failed sends). Both
  come from `services.sla.history_from_messages`, the history the clocks replay.
- conversations_opened / conversations_resolved: cycles opened (a first customer message, or one that reopens a
  resolved conversation) and cycles resolved, as the resolution clock counts them.
- Times (median and p90, business and calendar seconds) come from stopped clocks. A conversation's stored SLA
  clocks give them (business seconds on its policy's calendar, paused time excluded); where no stored clock
  exists (no policy, or a metric its policy does not track) the same engine replays the message history on
  calendar time, so business = calendar seconds there. Response times count only clocks stopped by a reply: a
  first-response clock stopped by resolving the conversation is nobody's response time.
- Attainment per metric = met / (met + breached) over stored SLA clocks (policies only): "met" when stopped on
  time in the period, "breached" when the breach happened in the period (counted once, stopped or not).
- Percentiles: linear interpolation between closest ranks (numpy's default, Excel's PERCENTILE.INC), so the
  median of an even count is the mean of the two middle values. None when there is no value.
- Grouping by brand / channel / team / agent uses the conversation's CURRENT brand, channel, team and assignee
  (agent = assignee; "unassigned" and "no team" are groups of their own).
- backlog: at the end of each local day or hour (points in the future are left out), counts of conversations
  unresolved (open, pending or snoozed), open, pending, snoozed, waiting (a customer message not yet answered by a
  public human reply) and unassigned (unresolved without assignee). Replayed from each conversation's history:
  status activity rows (a customer message reopens, as for the clocks), replies, and assignment activity rows
  (assigned, claimed, handoff; an agent's reply takes an unassigned conversation, as `services.replies` does).
- busiest_hours: volume_in by local weekday (0 = Monday) and hour.

Bucketing and timezone conversion happen in Python (SQLite and PostgreSQL convert timezones differently);
every query is bounded by the period and by the caller's brands.

Access: administrators see every brand; supervisors the brands their teams serve; agents are refused (403).
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.errors import Forbidden, ValidationFailed
from inbox.models import Agent, Brand, Channel, Conversation, Message, SlaClock, SlaPolicy, Team
from inbox.services import access
from inbox.services.sla import HistoryRow, business_calendar, history_from_messages
from inbox.sla import CalendarTime, Inbound, PublicReply, SlaTargets, StatusChange, elapsed, evaluate
from inbox.sla.calendar import Calendar as CalendarProtocol

UTC = timezone.utc
MAX_DAYS = 366
METRICS = ("first_response", "next_response", "resolution")
GROUPINGS = {
    "overview": ("day", "hour", "brand", "channel", "team", "agent"),
    "backlog": ("day", "hour"),
    "busiest_hours": ("weekday_hour",),
}
REPORTS = tuple(GROUPINGS)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CHUNK = 500
_CALENDAR_TIME = CalendarTime()
# measures every metric of every cycle on calendar time: targets far beyond any conversation, no warnings
_MEASURE = SlaTargets(first_response_seconds=100 * 366 * 86400.0, next_response_seconds=100 * 366 * 86400.0,
                      resolution_seconds=100 * 366 * 86400.0, warning_ratio=1.0)


# ---------------------------------------------------------------- pure math
def percentile(values: Sequence[float], share: float) -> float | None:
    """The `share` (0..1) percentile by linear interpolation between closest ranks; None for no values."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be within [0, 1], got {share!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * share
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)


def attainment(met: int, breached: int) -> float | None:
    """met / (met + breached), None when no clock ended either way."""
    return met / (met + breached) if met + breached else None


# ---------------------------------------------------------------- the period and its buckets
def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationFailed("unknown timezone", fields={"timezone": [f"not an IANA timezone: {name!r}"]}) \
            from None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local date begins, in UTC (fold=0: where midnight is skipped, the instant of the jump)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def bucket_starts(date_from: date, date_to: date, zone: ZoneInfo, unit: str) -> list[datetime]:
    """The starts of the local days, or of the real hours from local midnight, over `date_from`..`date_to`."""
    if unit == "day":
        return [local_midnight(date_from + timedelta(days=n), zone) for n in range((date_to - date_from).days + 1)]
    start, end = local_midnight(date_from, zone), local_midnight(date_to + timedelta(days=1), zone)
    return [start + timedelta(hours=n) for n in range(int((end - start) / timedelta(hours=1)))]


def bucket_label(start: datetime, zone: ZoneInfo, unit: str) -> str:
    local = start.astimezone(zone)
    return local.date().isoformat() if unit == "day" else local.isoformat(timespec="minutes")


def bucket_of(starts: Sequence[datetime], end: datetime, instant: datetime) -> int | None:
    """The index of the bucket holding `instant`, None outside [starts[0], end)."""
    if not starts or instant < starts[0] or instant >= end:
        return None
    return bisect_right(starts, instant) - 1


@dataclass(frozen=True)
class ReportQuery:
    report: str
    date_from: date
    date_to: date
    timezone: str
    group_by: str
    brand_id: int | None = None
    channel_id: int | None = None
    team_id: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start(self) -> datetime:
        return local_midnight(self.date_from, self.zone)

    @property
    def end(self) -> datetime:
        return local_midnight(self.date_to + timedelta(days=1), self.zone)


def check_query(report: str, params: dict[str, Any]) -> ReportQuery:
    """A validated query (422 naming the field: `to` before `from`, range over MAX_DAYS days, unknown timezone,
    a grouping the report does not offer)."""
    date_from, date_to = params["date_from"], params["date_to"]
    errors: dict[str, list[str]] = {}
    if date_to < date_from:
        errors["to"] = ["must be on or after 'from'"]
    elif (date_to - date_from).days + 1 > MAX_DAYS:
        errors["to"] = [f"the range may cover at most {MAX_DAYS} days"]
    group_by = params.get("group_by") or GROUPINGS[report][0]
    if group_by not in GROUPINGS[report]:
        errors["group_by"] = [f"must be one of: {', '.join(GROUPINGS[report])}"]
    timezone_name = params.get("timezone") or "UTC"
    try:
        zone_of(timezone_name)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed("invalid report query", fields=errors)
    return ReportQuery(report, date_from, date_to, timezone_name, group_by, params.get("brand_id"),
                       params.get("channel_id"), params.get("team_id"))


# ---------------------------------------------------------------- scope
def _scope(session: Session, actor: Agent, query: ReportQuery) -> list[Any]:
    """Conditions on Conversation: the actor's brands and the query's filters. 403 for agents, and for a
    brand outside the supervisor's brands."""
    access.require_supervisor(actor)
    conditions: list[Any] = []
    allowed = access.brand_ids_for(session, actor)
    if allowed is not None:
        if query.brand_id is not None and query.brand_id not in allowed:
            raise Forbidden("this brand is not served by your teams")
        conditions.append(Conversation.brand_id.in_(sorted(allowed) or [-1]))
    for value, column in ((query.brand_id, Conversation.brand_id), (query.channel_id, Conversation.channel_id),
                          (query.team_id, Conversation.team_id)):
        if value is not None:
            conditions.append(column == value)
    return conditions


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for index in range(0, len(ids), _CHUNK):
        yield ids[index:index + _CHUNK]


@dataclass(frozen=True)
class _Row:
    """A message row as reports need it: the SLA history columns plus who wrote it."""
    history: HistoryRow
    author_agent_id: int | None


def _rows_by_conversation(session: Session, ids: Sequence[int]) -> dict[int, list[_Row]]:
    rows: dict[int, list[_Row]] = defaultdict(list)
    query = (select(Message.conversation_id, Message.id, Message.direction, Message.kind, Message.reply_type,
                    Message.author_type, Message.delivery_status, Message.platform_time, Message.sent_at,
                    Message.extra, Message.author_agent_id)
             .where(Message.conversation_id.in_(ids), Message.kind != "note")
             .order_by(Message.conversation_id, Message.id))
    for conversation_id, *columns, author_agent_id in session.execute(query):
        rows[conversation_id].append(_Row(HistoryRow(*columns), author_agent_id))
    return rows


@dataclass(frozen=True)
class _Conversation:
    id: int
    brand_id: int
    channel_id: int
    team_id: int | None
    assignee_id: int | None


def _conversations(session: Session, ids: Sequence[int]) -> list[_Conversation]:
    query = select(Conversation.id, Conversation.brand_id, Conversation.channel_id, Conversation.team_id,
                   Conversation.assignee_id).where(Conversation.id.in_(ids)).order_by(Conversation.id)
    return [_Conversation(*row) for row in session.execute(query)]


# ---------------------------------------------------------------- overview
@dataclass
class _Figures:
    """What one group accumulates."""
    volume_in: int = 0
    volume_out: int = 0
    opened: int = 0
    resolved: int = 0
    business: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    calendar: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    met: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))
    breached: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"volume_in": self.volume_in, "volume_out": self.volume_out,
                               "conversations_opened": self.opened, "conversations_resolved": self.resolved}
        for metric in METRICS:
            row[f"{metric}_count"] = len(self.business[metric])
            for kind, values in (("business", self.business[metric]), ("calendar", self.calendar[metric])):
                row[f"{metric}_{kind}_median"] = _rounded(median(values))
                row[f"{metric}_{kind}_p90"] = _rounded(percentile(values, 0.9))
            row[f"{metric}_met"] = self.met[metric]
            row[f"{metric}_breached"] = self.breached[metric]
            share = attainment(self.met[metric], self.breached[metric])
            row[f"{metric}_attainment"] = None if share is None else round(share, 4)
        return row


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


OVERVIEW_COLUMNS = ["key", "label", *_Figures().as_row()]


@dataclass(frozen=True)
class _Measured:
    """A clock as reports count it (durations up to its stop; none while running)."""
    metric: str
    started_at: datetime
    stopped_at: datetime | None
    by_reply: bool
    business_seconds: float
    calendar_seconds: float


def _stored_durations(clock: SlaClock, calendars: dict[int, CalendarProtocol]) -> tuple[float, float]:
    pauses = [(datetime.fromisoformat(start), datetime.fromisoformat(end) if end else None)
              for start, end in clock.paused_intervals or []]
    assert clock.stopped_at is not None
    calendar = calendars.get(clock.policy_id) if clock.policy_id is not None else None
    _, calendar_seconds = elapsed(_CALENDAR_TIME, clock.started_at, clock.stopped_at, pauses)
    if calendar is None:  # its policy was deleted: the stored business time stands
        return clock.elapsed_seconds, calendar_seconds
    business_seconds, _ = elapsed(calendar, clock.started_at, clock.stopped_at, pauses)
    return business_seconds, calendar_seconds


def _policy_calendars(session: Session, policy_ids: Iterable[int]) -> dict[int, CalendarProtocol]:
    ids = sorted(set(policy_ids))
    if not ids:
        return {}
    policies = session.execute(select(SlaPolicy).where(SlaPolicy.id.in_(ids))).scalars()
    return {policy.id: business_calendar(policy.calendar) for policy in policies}


def overview(session: Session, actor: Agent, query: ReportQuery) -> dict[str, Any]:
    """Volumes, cycles opened and resolved, response and resolution times, SLA attainment, per group."""
    scope = _scope(session, actor, query)
    start, end, zone = query.start, query.end, query.zone

    def in_period(at: datetime | None) -> bool:
        return at is not None and start <= at < end

    by_message = (select(Message.conversation_id).join(Conversation, Conversation.id == Message.conversation_id)
                  .where(*scope, or_(and_(Message.platform_time >= start, Message.platform_time < end),
                                     and_(Message.sent_at >= start, Message.sent_at < end))))
    by_clock = (select(SlaClock.conversation_id).join(Conversation, Conversation.id == SlaClock.conversation_id)
                .where(*scope, or_(and_(SlaClock.stopped_at >= start, SlaClock.stopped_at < end),
                                   and_(SlaClock.breached_at >= start, SlaClock.breached_at < end))))
    ids = sorted(set(session.execute(by_message.distinct()).scalars()) | set(session.execute(by_clock.distinct())
                                                                              .scalars()))
    unit = query.group_by if query.group_by in ("day", "hour") else None
    starts = bucket_starts(query.date_from, query.date_to, zone, unit) if unit else []
    groups: dict[Any, _Figures] = defaultdict(_Figures)
    totals = _Figures()

    def add(conversation: _Conversation, at: datetime, update: Any) -> None:
        if unit:
            key: Any = bucket_of(starts, end, at)
            if key is None:
                return
        else:
            key = getattr(conversation, f"{query.group_by}_id" if query.group_by != "agent" else "assignee_id")
        update(groups[key])
        update(totals)

    for chunk in _chunks(ids):
        rows = _rows_by_conversation(session, chunk)
        stored: dict[int, list[SlaClock]] = defaultdict(list)
        for clock in session.execute(select(SlaClock).where(SlaClock.conversation_id.in_(chunk))).scalars():
            stored[clock.conversation_id].append(clock)
        calendars = _policy_calendars(session, (c.policy_id for cs in stored.values() for c in cs
                                                if c.policy_id is not None))
        for conversation in _conversations(session, chunk):
            history = history_from_messages(row.history for row in rows.get(conversation.id, []))
            for event in history:
                if isinstance(event, Inbound) and in_period(event.at):
                    add(conversation, event.at, lambda f: setattr(f, "volume_in", f.volume_in + 1))
                elif isinstance(event, PublicReply) and in_period(event.at):
                    add(conversation, event.at, lambda f: setattr(f, "volume_out", f.volume_out + 1))
            for clock in _measured_clocks(history, stored.get(conversation.id, []), calendars):
                if clock.metric == "resolution" and in_period(clock.started_at):
                    add(conversation, clock.started_at, lambda f: setattr(f, "opened", f.opened + 1))
                if not in_period(clock.stopped_at):
                    continue
                if clock.metric == "resolution":
                    add(conversation, clock.stopped_at, lambda f: setattr(f, "resolved", f.resolved + 1))
                if clock.metric == "resolution" or clock.by_reply:
                    add(conversation, clock.stopped_at, _duration_adder(clock))
            for sla_clock in stored.get(conversation.id, []):
                metric = sla_clock.metric
                if sla_clock.state == "met" and in_period(sla_clock.stopped_at):
                    add(conversation, sla_clock.stopped_at, _counter("met", metric))
                if in_period(sla_clock.breached_at):
                    add(conversation, sla_clock.breached_at, _counter("breached", metric))

    if unit:
        rows_out = [{"key": bucket_label(s, zone, unit), "label": bucket_label(s, zone, unit),
                     **groups.get(index, _Figures()).as_row()} for index, s in enumerate(starts)]
    else:
        labels = _labels(session, query.group_by, [key for key in groups if key is not None])
        rows_out = [{"key": key, "label": labels.get(key, str(key)) if key is not None else _NONE[query.group_by],
                     **figures.as_row()} for key, figures in groups.items()]
        rows_out.sort(key=lambda row: (row["key"] is None, str(row["label"]).casefold(), row["key"] or 0))
    return _result(query, OVERVIEW_COLUMNS, rows_out, totals=totals.as_row())


def _measured_clocks(history: Sequence[Inbound | PublicReply | StatusChange], stored: Sequence[SlaClock],
                     calendars: dict[int, CalendarProtocol]) -> list[_Measured]:
    """Every clock of the conversation (running ones with no duration): stopped ones as stored, the rest
    measured on calendar time."""
    own = {(c.metric, c.cycle, c.turn): c for c in stored if c.stopped_at is not None}
    measured = []
    for state in evaluate(_MEASURE, _CALENDAR_TIME, history).clocks if history else ():
        clock = own.get((state.metric, state.cycle, state.turn))
        if state.stopped_at is None:
            measured.append(_Measured(state.metric, state.started_at, None, False, 0.0, 0.0))
        elif clock is not None and clock.stopped_at is not None:
            business, calendar = _stored_durations(clock, calendars)
            measured.append(_Measured(clock.metric, clock.started_at, clock.stopped_at,
                                      (clock.stop_cause or "").startswith("message:"), business, calendar))
        else:
            _, seconds = elapsed(_CALENDAR_TIME, state.started_at, state.stopped_at)
            measured.append(_Measured(state.metric, state.started_at, state.stopped_at,
                                      (state.stop_cause or "").startswith("message:"), seconds, seconds))
    return measured


def _duration_adder(clock: _Measured) -> Any:
    def update(figures: _Figures) -> None:
        figures.business[clock.metric].append(clock.business_seconds)
        figures.calendar[clock.metric].append(clock.calendar_seconds)
    return update


def _counter(kind: str, metric: str) -> Any:
    def update(figures: _Figures) -> None:
        counts = getattr(figures, kind)
        counts[metric] += 1
    return update


_NONE = {"brand": "(none)", "channel": "(none)", "team": "(no team)", "agent": "(unassigned)"}


def _labels(session: Session, group_by: str, keys: list[int]) -> dict[int, str]:
    model = {"brand": Brand, "channel": Channel, "team": Team, "agent": Agent}[group_by]
    if not keys:
        return {}
    return {row.id: row.name for row in session.execute(select(model.id, model.name).where(model.id.in_(keys)))}


def _result(query: ReportQuery, columns: list[str], rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"report": query.report, "from": query.date_from.isoformat(), "to": query.date_to.isoformat(),
            "timezone": query.timezone, "group_by": query.group_by, "columns": columns, "rows": rows, **extra}


# ---------------------------------------------------------------- backlog
BACKLOG_STATES = ("unresolved", "open", "pending", "snoozed", "waiting", "unassigned")
BACKLOG_COLUMNS = ["key", "label", "at", *BACKLOG_STATES]


@dataclass(frozen=True)
class _Snapshot:
    status: str
    waiting: bool
    assignee_id: int | None

    def counts(self) -> Iterator[str]:
        if self.status == "resolved":
            return
        yield "unresolved"
        yield self.status
        if self.waiting:
            yield "waiting"
        if self.assignee_id is None:
            yield "unassigned"


def conversation_timeline(rows: Sequence[_Row]) -> list[tuple[datetime, _Snapshot]]:
    """The conversation's state after each of its history events, in time order (ties by message id)."""
    timed: list[tuple[datetime, int, _Row, Inbound | PublicReply | StatusChange | None]] = []
    for row in rows:
        events = history_from_messages([row.history])
        event = events[0] if events else None
        timed.append((event.at if event is not None else row.history.platform_time, row.history.id, row, event))
    timed.sort(key=lambda item: (item[0], item[1]))
    status, waiting, assignee = "open", False, None
    timeline: list[tuple[datetime, _Snapshot]] = []
    for at, _id, row, event in timed:
        history = row.history
        activity = ((history.extra or {}).get("activity") or {}) if history.kind == "activity" else {}
        if isinstance(event, Inbound):
            status, waiting = "open", True
        elif isinstance(event, PublicReply):
            waiting = False
        elif isinstance(event, StatusChange):
            status = event.status
            if status == "resolved":
                waiting = False
        if activity.get("type") == "assigned":
            assignee = activity.get("assignee_id")
        elif activity.get("type") == "claimed":
            assignee = activity.get("agent_id")
        elif activity.get("type") == "handoff":
            assignee = None
        elif (history.direction == "out" and history.author_type == "agent" and assignee is None
              and history.reply_type in ("reply", "private_reply") and row.author_agent_id is not None):
            assignee = row.author_agent_id  # services.replies: replying takes an unassigned conversation
        timeline.append((at, _Snapshot(status, waiting, assignee)))
    return timeline


def backlog(session: Session, actor: Agent, query: ReportQuery, *, now: datetime | None = None) -> dict[str, Any]:
    """Backlog counts at the end of each local day or hour of the period (up to now)."""
    scope = _scope(session, actor, query)
    now = now or utcnow()
    zone, unit = query.zone, query.group_by
    starts = bucket_starts(query.date_from, query.date_to, zone, unit)
    ends = [*starts[1:], query.end]
    kept = [index for index, point in enumerate(ends) if point <= now]
    points = [ends[index] for index in kept]
    totals = {state: [0] * (len(points) + 1) for state in BACKLOG_STATES}
    if points:
        # a conversation resolved before the first point and never reopened plays no part
        candidates = select(Conversation.id).where(*scope, or_(Conversation.status != "resolved",
                                                               Conversation.resolved_at.is_(None),
                                                               Conversation.resolved_at >= points[0]))
        ids = sorted(session.execute(candidates).scalars())
        for chunk in _chunks(ids):
            for rows in _rows_by_conversation(session, chunk).values():
                timeline = conversation_timeline(rows)
                for index, (at, snapshot) in enumerate(timeline):
                    until = timeline[index + 1][0] if index + 1 < len(timeline) else None
                    low = bisect_left(points, at)
                    high = bisect_left(points, until) if until is not None else len(points)
                    if high <= low:
                        continue
                    for state in snapshot.counts():
                        totals[state][low] += 1
                        totals[state][high] -= 1
    running = dict.fromkeys(BACKLOG_STATES, 0)
    rows_out = []
    for position, index in enumerate(kept):
        for state in BACKLOG_STATES:
            running[state] += totals[state][position]
        label = bucket_label(starts[index], zone, unit)
        rows_out.append({"key": label, "label": label, "at": points[position].isoformat(), **running})
    return _result(query, BACKLOG_COLUMNS, rows_out)


# ---------------------------------------------------------------- busiest hours
BUSIEST_COLUMNS = ["key", "label", "weekday", "hour", "volume_in"]


def busiest_hours(session: Session, actor: Agent, query: ReportQuery) -> dict[str, Any]:
    """Customer messages by local weekday (0 = Monday) and hour, 168 rows."""
    scope = _scope(session, actor, query)
    zone = query.zone
    inbound = (select(Message.platform_time).join(Conversation, Conversation.id == Message.conversation_id)
               .where(*scope, Message.direction == "in", Message.kind.in_(("message", "comment")),
                      Message.author_type == "contact", Message.platform_time >= query.start,
                      Message.platform_time < query.end))
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for (at,) in session.execute(inbound):
        local = at.astimezone(zone)
        counts[(local.weekday(), local.hour)] += 1
    rows_out = [{"key": f"{weekday}-{hour:02d}", "label": f"{WEEKDAYS[weekday]} {hour:02d}:00",
                 "weekday": weekday, "hour": hour, "volume_in": counts[(weekday, hour)]}
                for weekday in range(7) for hour in range(24)]
    return _result(query, BUSIEST_COLUMNS, rows_out)


def run_report(session: Session, actor: Agent, report: str, params: dict[str, Any]) -> dict[str, Any]:
    """Checks access (403 for agents) then the query (422), and computes the report."""
    access.require_supervisor(actor)
    query = check_query(report, params)
    return {"overview": overview, "backlog": backlog, "busiest_hours": busiest_hours}[report](session, actor, query)
