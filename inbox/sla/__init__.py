"""SLA arithmetic: business-hours calendars and clocks replayed from a conversation's history (pure, no DB)."""

from .calendar import BusinessCalendar, Calendar, CalendarTime, Interval, holidays_from_ics, parse_hhmm
from .engine import (
    METRICS,
    ClockEvent,
    ClockState,
    Inbound,
    Now,
    PublicReply,
    SlaResult,
    SlaTargets,
    StatusChange,
    elapsed,
    evaluate,
    next_deadline,
)

__all__ = [
    "METRICS",
    "BusinessCalendar",
    "Calendar",
    "CalendarTime",
    "ClockEvent",
    "ClockState",
    "Inbound",
    "Interval",
    "Now",
    "PublicReply",
    "SlaResult",
    "SlaTargets",
    "StatusChange",
    "elapsed",
    "evaluate",
    "holidays_from_ics",
    "next_deadline",
    "parse_hhmm",
]
