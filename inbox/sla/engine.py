"""SLA clocks computed from a conversation's history: pure, database-free, deterministic.

`evaluate(targets, calendar, history)` replays the history and returns every clock and an ordered event log;
timers, alerts and reports all call it, so they agree (design.md, "SLA semantics").

Rules, per conversation:

- A cycle opens at the first `Inbound` (or the first one after the conversation was resolved). It starts the
  first_response and resolution clocks of that cycle, counting from the inbound's `at` (the platform time
  capped at reception, so an ingestion delay counts against us).
- first_response stops ("met") at the first public reply by a human; bot/automated replies (`by_human=False`)
  do not stop it. A reply before any inbound (an outbound-first conversation) belongs to no cycle.
- next_response: after a human reply in the cycle, the next inbound starts a clock (one per customer turn,
  `turn` 1, 2, ...) from that OLDEST unanswered inbound; later inbounds of the same turn do not restart it; the
  next human reply stops it.
- resolution stops at `StatusChange("resolved")`. Resolving also stops the running response clocks of the
  cycle, with cause "status:resolved": nobody is left waiting on a resolved conversation.
- A new inbound reopens the conversation (status becomes "open"): it resumes paused clocks, and after a
  resolution starts cycle n+1. A manual `StatusChange("open")` after resolution starts no cycle: clocks count
  from the customer's message.
- While the status is in `targets.pause_on`, the clocks of `targets.pause_metrics` are paused: paused time does
  not count, so the due time moves later by the paused business time.
- Elapsed time is business time on the calendar (`CalendarTime` for 24/7). Warning when `warning_ratio` of the
  target has elapsed, breach at the due time; a stop exactly at the due time is on time. A clock stopped after
  its breach ends in state "breached" with a "stopped" event (not "met").
- History is replayed in the given order (the order we recorded it). Each effect happens at the latest `at`
  seen so far, except that a clock starts at its inbound's own `at`, even when that is earlier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeAlias

from .calendar import Calendar

__all__ = [
    "METRICS",
    "ClockEvent",
    "ClockState",
    "Event",
    "Inbound",
    "Now",
    "PublicReply",
    "SlaResult",
    "SlaTargets",
    "StatusChange",
    "elapsed",
    "evaluate",
    "next_deadline",
]

UTC = timezone.utc

Metric: TypeAlias = Literal["first_response", "next_response", "resolution"]
ClockStateName: TypeAlias = Literal["running", "paused", "warning", "breached", "met"]
ClockEventKind: TypeAlias = Literal["started", "paused", "resumed", "warned", "breached", "met", "stopped"]
MessageId: TypeAlias = int | str

METRICS: tuple[Metric, ...] = ("first_response", "next_response", "resolution")
STATUSES = frozenset({"open", "pending", "snoozed", "resolved"})
PAUSABLE_STATUSES = frozenset({"pending", "snoozed"})
TIMER_CAUSE = "timer"


def _aware_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


# --- inputs ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaTargets:
    """A policy's targets in seconds (None: metric not tracked) and its pause and warning settings.

    `warning_ratio` is the share of the target after which a clock warns, in (0, 1]; 1 means no warning.
    `pause_on` lists the statuses that pause clocks (among "pending", "snoozed"); `pause_metrics` which clocks
    they pause (all three by default).
    """

    first_response_seconds: float | None = None
    next_response_seconds: float | None = None
    resolution_seconds: float | None = None
    warning_ratio: float = 0.8
    pause_on: frozenset[str] = frozenset()
    pause_metrics: frozenset[str] = frozenset(METRICS)

    def __post_init__(self) -> None:
        for metric in METRICS:
            target = self.target(metric)
            if target is not None and (isinstance(target, bool) or not target > 0 or target == float("inf")):
                raise ValueError(f"{metric}_seconds must be a positive number of seconds or None, got {target!r}")
        if not 0 < self.warning_ratio <= 1:
            raise ValueError(f"warning_ratio must be in (0, 1], got {self.warning_ratio!r}")
        object.__setattr__(self, "pause_on", frozenset(self.pause_on))
        object.__setattr__(self, "pause_metrics", frozenset(self.pause_metrics))
        if not self.pause_on <= PAUSABLE_STATUSES:
            raise ValueError(f"pause_on may only contain {sorted(PAUSABLE_STATUSES)}, got {sorted(self.pause_on)}")
        if not self.pause_metrics <= set(METRICS):
            raise ValueError(f"pause_metrics may only contain {list(METRICS)}, got {sorted(self.pause_metrics)}")

    def target(self, metric: Metric) -> float | None:
        return getattr(self, f"{metric}_seconds")

    def pauses(self, metric: Metric, status: str) -> bool:
        return status in self.pause_on and metric in self.pause_metrics


@dataclass(frozen=True)
class Inbound:
    """A customer message; `at` is the platform time capped at the time we received it."""

    at: datetime
    message_id: MessageId


@dataclass(frozen=True)
class PublicReply:
    """A public outbound reply (an echo of a reply made natively on the platform included). Notes are not
    replies; pass them not at all, or as `by_human=False` like bots, automations and auto-replies."""

    at: datetime
    message_id: MessageId
    by_human: bool


@dataclass(frozen=True)
class StatusChange:
    """The conversation's status became `status` ("open", "pending", "snoozed" or "resolved")."""

    at: datetime
    status: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, got {self.status!r}")


@dataclass(frozen=True)
class Now:
    """Evaluate the clocks at `at`: warnings and breaches due by then (inclusive) are emitted."""

    at: datetime


Event: TypeAlias = Inbound | PublicReply | StatusChange | Now


# --- outputs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockEvent:
    """One entry of the SLA log. `cause` is "message:<id>", "status:<status>" or "timer" (warned/breached).

    "met" is a stop before the due time; "stopped" a stop after the clock had breached.
    """

    metric: Metric
    cycle: int
    turn: int
    kind: ClockEventKind
    at: datetime
    cause: str


@dataclass(frozen=True)
class ClockState:
    """One clock (a metric for one cycle, and for next_response one customer turn) as of `SlaResult.as_of`.

    - `turn` is 1 for first_response and resolution, the customer turn number for next_response.
    - `state`: running | warning (running, past the warning) | paused | breached (sticky, also once stopped
      or paused) | met (stopped on time).
    - `due_at`: the breach instant if breached; while running, when it will breach unless paused or stopped;
      when stopped on time, the due time in force at the stop; None while paused.
    - `warning_at`: when it warned / will warn, None while paused and not yet warned, or if warnings are off.
    - `elapsed_seconds` and `paused_seconds`: business seconds counted and paused, up to the stop or as_of.
    - `paused_intervals`: real (start, end) pauses; end None while paused.
    - `stop_cause`: "message:<id>" or "status:resolved" once stopped.
    """

    metric: Metric
    cycle: int
    turn: int
    state: ClockStateName
    target_seconds: float
    started_at: datetime
    due_at: datetime | None
    warning_at: datetime | None
    stopped_at: datetime | None
    elapsed_seconds: float
    paused_seconds: float
    paused_intervals: tuple[tuple[datetime, datetime | None], ...]
    cause_message_id: MessageId
    stop_cause: str | None

    @property
    def is_running(self) -> bool:
        """Counting time now: not stopped and not paused."""
        return self.stopped_at is None and not (self.paused_intervals and self.paused_intervals[-1][1] is None)


@dataclass(frozen=True)
class SlaResult:
    """Every clock in start order, the log in time order, and the instant they were evaluated at."""

    clocks: tuple[ClockState, ...]
    events: tuple[ClockEvent, ...]
    as_of: datetime | None

    def for_metric(self, metric: Metric) -> tuple[ClockState, ...]:
        return tuple(clock for clock in self.clocks if clock.metric == metric)


# --- the replay -----------------------------------------------------------------------------------------------


@dataclass(eq=False)  # clocks are compared by identity
class _Clock:
    """A clock being replayed. `consumed` business seconds were counted before `segment_start`."""

    metric: Metric
    cycle: int
    turn: int
    target: float
    warn_after: float | None
    started_at: datetime
    cause_message_id: MessageId
    segment_start: datetime
    consumed: float = 0.0
    paused: bool = False
    pauses: list[list[datetime | None]] = field(default_factory=list)
    paused_seconds: float = 0.0
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    stopped_at: datetime | None = None
    stop_cause: str | None = None
    due_at_stop: datetime | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None and not self.paused


class _Replay:
    """Applies history events one by one; owns the clocks and the log."""

    def __init__(self, targets: SlaTargets, calendar: Calendar) -> None:
        self.targets = targets
        self.calendar = calendar
        self.clocks: list[_Clock] = []
        self.log: list[ClockEvent] = []
        self.status = "open"
        self.cycle = 0
        self.cycle_open = False
        self.replied_in_cycle = False
        self.awaiting_reply = False
        self.turn = 0
        self.time: datetime | None = None

    # time passing

    def due_at(self, clock: _Clock) -> datetime:
        return self.calendar.add_business_seconds(clock.segment_start, max(0.0, clock.target - clock.consumed))

    def warning_at(self, clock: _Clock) -> datetime | None:
        if clock.warn_after is None:
            return None
        return self.calendar.add_business_seconds(clock.segment_start, max(0.0, clock.warn_after - clock.consumed))

    def advance(self, until: datetime, spared: Sequence[_Clock] = ()) -> None:
        """Emit the warnings and breaches of running clocks up to `until` inclusive, except those exactly at
        `until` of the `spared` clocks (which the event at `until` stops on time)."""
        fired: list[tuple[datetime, int, _Clock, ClockEventKind]] = []
        for index, clock in enumerate(self.clocks):
            if not clock.running:
                continue
            for kind, at in (("warned", self._pending_warning(clock)), ("breached", self._pending_breach(clock))):
                if at is not None and (at < until or (at == until and clock not in spared)):
                    fired.append((at, index, clock, kind))
        for at, _index, clock, kind in sorted(fired, key=lambda item: (item[0], item[1], item[3] == "breached")):
            if kind == "warned":
                clock.warned_at = at
            else:
                clock.breached_at = at
            self.emit(clock, kind, at, TIMER_CAUSE)

    def _pending_warning(self, clock: _Clock) -> datetime | None:
        return self.warning_at(clock) if clock.warned_at is None and clock.breached_at is None else None

    def _pending_breach(self, clock: _Clock) -> datetime | None:
        return self.due_at(clock) if clock.breached_at is None else None

    # clock transitions

    def emit(self, clock: _Clock, kind: ClockEventKind, at: datetime, cause: str) -> None:
        self.log.append(ClockEvent(clock.metric, clock.cycle, clock.turn, kind, at, cause))

    def start(self, metric: Metric, turn: int, at: datetime, message_id: MessageId) -> None:
        target = self.targets.target(metric)
        if target is None:
            return
        ratio = self.targets.warning_ratio
        clock = _Clock(
            metric=metric,
            cycle=self.cycle,
            turn=turn,
            target=float(target),
            warn_after=target * ratio if ratio < 1 else None,
            started_at=at,
            cause_message_id=message_id,
            segment_start=at,
        )
        self.clocks.append(clock)
        self.emit(clock, "started", at, f"message:{message_id}")

    def stop(self, clock: _Clock, at: datetime, cause: str) -> None:
        if clock.paused:
            self._close_pause(clock, at)
        else:
            if clock.breached_at is None:
                clock.due_at_stop = self.due_at(clock)
            clock.consumed += self._business(clock.segment_start, at)
        clock.stopped_at, clock.stop_cause = at, cause
        self.emit(clock, "stopped" if clock.breached_at is not None else "met", at, cause)

    def pause(self, clock: _Clock, at: datetime, cause: str) -> None:
        clock.consumed += self._business(clock.segment_start, at)
        clock.paused = True
        clock.pauses.append([at, None])
        self.emit(clock, "paused", at, cause)

    def resume(self, clock: _Clock, at: datetime, cause: str) -> None:
        self._close_pause(clock, at)
        clock.segment_start = at
        self.emit(clock, "resumed", at, cause)

    def _close_pause(self, clock: _Clock, at: datetime) -> None:
        pause = clock.pauses[-1]
        pause[1] = at
        clock.paused_seconds += self._business(pause[0], at)
        clock.paused = False

    def _business(self, start: datetime, stop: datetime) -> float:
        return max(0.0, self.calendar.business_seconds_between(start, stop)) if stop > start else 0.0

    # history events

    def open_clocks(self, metric: Metric | None = None) -> list[_Clock]:
        return [
            clock
            for clock in self.clocks
            if clock.stopped_at is None and clock.cycle == self.cycle and metric in (None, clock.metric)
        ]

    def clocks_stopped_by(self, event: Event) -> list[_Clock]:
        if isinstance(event, PublicReply) and event.by_human:
            return self.open_clocks("first_response") + self.open_clocks("next_response")
        if isinstance(event, StatusChange) and event.status == "resolved":
            return self.open_clocks()
        return []

    def apply(self, event: Event, at: datetime) -> None:
        if isinstance(event, Inbound):
            self.on_inbound(event, at)
        elif isinstance(event, PublicReply):
            if event.by_human:
                self.on_human_reply(event, at)
        elif isinstance(event, StatusChange):
            self.on_status(event.status, at, f"status:{event.status}")

    def on_inbound(self, event: Inbound, at: datetime) -> None:
        sent_at = _aware_utc(event.at, "Inbound.at")
        if self.status != "open":
            self.on_status("open", at, f"message:{event.message_id}")
        if not self.cycle_open:
            self.cycle += 1
            self.cycle_open, self.replied_in_cycle, self.awaiting_reply, self.turn = True, False, True, 0
            self.start("first_response", 1, sent_at, event.message_id)
            self.start("resolution", 1, sent_at, event.message_id)
        elif self.replied_in_cycle and not self.awaiting_reply:
            self.turn += 1
            self.awaiting_reply = True
            self.start("next_response", self.turn, sent_at, event.message_id)

    def on_human_reply(self, event: PublicReply, at: datetime) -> None:
        if not self.cycle_open:
            return
        for clock in self.open_clocks("first_response") + self.open_clocks("next_response"):
            self.stop(clock, at, f"message:{event.message_id}")
        self.replied_in_cycle, self.awaiting_reply = True, False

    def on_status(self, status: str, at: datetime, cause: str) -> None:
        self.status = status
        if status == "resolved":
            for clock in self.open_clocks():
                self.stop(clock, at, cause)
            self.cycle_open = self.awaiting_reply = False
            return
        for clock in self.open_clocks():
            should_pause = self.targets.pauses(clock.metric, status)
            if should_pause and not clock.paused:
                self.pause(clock, at, cause)
            elif clock.paused and not should_pause:
                self.resume(clock, at, cause)

    # result

    def state_of(self, clock: _Clock, as_of: datetime) -> ClockState:
        if clock.stopped_at is not None or clock.paused:
            elapsed_seconds = clock.consumed
            paused_seconds = clock.paused_seconds
            if clock.paused and clock.stopped_at is None:
                paused_seconds += self._business(clock.pauses[-1][0], as_of)
        else:
            elapsed_seconds = clock.consumed + self._business(clock.segment_start, as_of)
            paused_seconds = clock.paused_seconds
        return ClockState(
            metric=clock.metric,
            cycle=clock.cycle,
            turn=clock.turn,
            state=self._state_name(clock),
            target_seconds=clock.target,
            started_at=clock.started_at,
            due_at=self._reported_due(clock),
            warning_at=clock.warned_at if clock.warned_at is not None or not clock.running else self.warning_at(clock),
            stopped_at=clock.stopped_at,
            elapsed_seconds=elapsed_seconds,
            paused_seconds=paused_seconds,
            paused_intervals=tuple((start, end) for start, end in clock.pauses),
            cause_message_id=clock.cause_message_id,
            stop_cause=clock.stop_cause,
        )

    def _reported_due(self, clock: _Clock) -> datetime | None:
        if clock.breached_at is not None:
            return clock.breached_at
        if clock.stopped_at is not None:
            return clock.due_at_stop
        return None if clock.paused else self.due_at(clock)

    @staticmethod
    def _state_name(clock: _Clock) -> ClockStateName:
        if clock.breached_at is not None:
            return "breached"
        if clock.stopped_at is not None:
            return "met"
        if clock.paused:
            return "paused"
        return "warning" if clock.warned_at is not None else "running"


def evaluate(targets: SlaTargets, calendar: Calendar, history: Iterable[Event]) -> SlaResult:
    """Replay `history` (in recorded order; end it with `Now(t)` to evaluate at t) and return the clocks.

    Pure: no database, no clock reading; the same history always gives the same result. Raises ValueError
    for naive datetimes, and propagates the calendar's ValueError when it has no open time ahead.
    """
    replay = _Replay(targets, calendar)
    for event in history:
        if not isinstance(event, (Inbound, PublicReply, StatusChange, Now)):
            raise TypeError(f"unknown SLA history event {event!r}")
        event_at = _aware_utc(event.at, f"{type(event).__name__}.at")
        at = event_at if replay.time is None else max(replay.time, event_at)
        replay.advance(at, spared=replay.clocks_stopped_by(event))
        replay.time = at
        replay.apply(event, at)
    as_of = replay.time
    clocks = tuple(replay.state_of(clock, as_of) for clock in replay.clocks) if as_of else ()
    ordered_log = sorted(replay.log, key=lambda clock_event: clock_event.at)  # stable: ties keep replay order
    return SlaResult(clocks=clocks, events=tuple(ordered_log), as_of=as_of)


def next_deadline(states: Iterable[ClockState]) -> datetime | None:
    """The earliest upcoming warning or breach among running clocks: when the timer must next evaluate.

    Paused and stopped clocks have none (a snooze expiry is the status timer's business).
    """
    deadlines = []
    for clock in states:
        if not clock.is_running:
            continue
        if clock.state == "running" and clock.warning_at is not None:
            deadlines.append(clock.warning_at)
        if clock.state in ("running", "warning") and clock.due_at is not None:
            deadlines.append(clock.due_at)
    return min(deadlines, default=None)


def elapsed(
    calendar: Calendar,
    start: datetime,
    stop: datetime,
    paused_intervals: Iterable[tuple[datetime, datetime | None]] = (),
) -> tuple[float, float]:
    """(business_seconds, calendar_seconds) from `start` to `stop`, both excluding the paused intervals.

    For reports. Pauses are clipped to [start, stop] and may overlap; an end of None means "until stop".
    business_seconds counts open time on `calendar`; calendar_seconds every real second.
    """
    start, stop = _aware_utc(start, "start"), _aware_utc(stop, "stop")
    if stop <= start:
        return 0.0, 0.0
    business = calendar.business_seconds_between(start, stop)
    real = (stop - start) / timedelta(seconds=1)
    for pause_start, pause_end in _merged_pauses(start, stop, paused_intervals):
        business -= calendar.business_seconds_between(pause_start, pause_end)
        real -= (pause_end - pause_start) / timedelta(seconds=1)
    return max(0.0, business), max(0.0, real)


def _merged_pauses(
    start: datetime, stop: datetime, paused_intervals: Iterable[tuple[datetime, datetime | None]]
) -> list[tuple[datetime, datetime]]:
    clipped = []
    for pause_start, pause_end in paused_intervals:
        low = max(start, _aware_utc(pause_start, "pause start"))
        high = min(stop, _aware_utc(pause_end, "pause end") if pause_end is not None else stop)
        if high > low:
            clipped.append((low, high))
    merged: list[tuple[datetime, datetime]] = []
    for low, high in sorted(clipped):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged
