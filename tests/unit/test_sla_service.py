"""Which SLA policy applies to a conversation, and which of its messages the clocks count (no database)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from inbox.services.sla import (ActivePolicy, ConversationFacts, HistoryRow, first_matching, history_from_messages,
                                policy_matches)
from inbox.sla import CalendarTime, Inbound, PublicReply, SlaTargets, StatusChange, evaluate

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
FACTS = ConversationFacts(brand_id=1, channel_kind="facebook_page", conversation_kind="dm", priority="normal",
                          labels=frozenset({"vip", "delivery"}))


def policy(policy_id: int, position: int, **conditions: object) -> ActivePolicy:
    return ActivePolicy(policy_id, position, dict(conditions), SlaTargets(first_response_seconds=60),
                        CalendarTime())


def row(message_id: int, seconds: int, direction: str = "in", kind: str = "message", **fields: object) -> HistoryRow:
    values: dict[str, object] = {"reply_type": None, "author_type": "contact" if direction == "in" else "agent",
                                 "delivery_status": None, "sent_at": None, "extra": {}}
    values.update(fields)
    return HistoryRow(id=message_id, direction=direction, kind=kind, platform_time=T0 + timedelta(seconds=seconds),
                      **values)  # type: ignore[arg-type]


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_every_given_condition_must_match_and_any_value_of_a_list_does():
    assert policy_matches({}, FACTS)
    assert policy_matches({"brand_ids": [2, 1], "labels": ["vip", "other"], "labels_unused": None}, FACTS)
    assert policy_matches({"priorities": [], "channel_kinds": ["facebook_page"]}, FACTS)
    assert not policy_matches({"brand_ids": [1], "conversation_kinds": ["comment"]}, FACTS)
    assert not policy_matches({"labels": ["billing"]}, FACTS)
    assert not policy_matches({"priorities": ["high", "urgent"]}, FACTS)


def test_the_first_matching_policy_by_position_applies():
    policies = [policy(1, 30), policy(2, 10, labels=["billing"]), policy(3, 20, brand_ids=[1]), policy(4, 20)]
    assert first_matching(policies, FACTS).id == 3
    assert first_matching([policy(5, 0, brand_ids=[9])], FACTS) is None


def test_history_counts_customer_messages_and_sent_human_replies_in_time_order():
    history = history_from_messages([
        row(1, 0),
        row(2, 5, "out", reply_type="reply", delivery_status="queued"),           # not sent yet
        row(3, 6, "out", "note"),                                                 # internal
        row(4, 7, "out", reply_type="reply", delivery_status="sent", sent_at=at(30)),
        row(5, 20),                                                               # arrived late, sent earlier
        row(6, 40, "out", reply_type="private_reply", delivery_status="read", sent_at=at(41)),
        row(7, 50, "out", author_type="page", reply_type="reply", delivery_status="sent", sent_at=at(50),
            extra={"native": True}),                                              # answered natively: echo
        row(8, 55, "out", author_type="system", reply_type="reply", delivery_status="sent", sent_at=at(55)),
        row(9, 56, "out", "activity", author_type="agent", extra={"activity": {"type": "claimed"}}),
        row(10, 60, "out", "activity", author_type="agent",
            extra={"activity": {"type": "status", "from": "open", "to": "pending"}}),
    ])
    assert history == [Inbound(at(0), 1), Inbound(at(20), 5), PublicReply(at(30), 4, by_human=True),
                       PublicReply(at(41), 6, by_human=True), PublicReply(at(50), 7, by_human=True),
                       StatusChange(at(60), "pending")]


def test_a_note_does_not_stop_first_response_but_a_sent_reply_does():
    targets = SlaTargets(first_response_seconds=60, next_response_seconds=60)
    noted = history_from_messages([row(1, 0), row(2, 10, "out", "note")])
    (first,) = evaluate(targets, CalendarTime(), noted).clocks
    assert first.state == "running"
    replied = history_from_messages([row(1, 0), row(2, 10, "out", "note"),
                                     row(3, 20, "out", reply_type="reply", delivery_status="delivered",
                                         sent_at=at(30)), row(4, 90)])
    clocks = evaluate(targets, CalendarTime(), replied).clocks
    assert [(c.metric, c.state, c.stop_cause) for c in clocks] == [
        ("first_response", "met", "message:3"), ("next_response", "running", None)]
