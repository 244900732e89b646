"""`ingest.note_inbounds`: a batch's customer messages applied to their conversation at once give what applying
them one at a time gave (the per-message rules below, as `note_inbound` applied them before 2026-11-24), whatever
the order of their platform times, the conversation's status and its last reply."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from inbox.models import Conversation
from inbox.services.ingest import note_inbound, note_inbounds

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
COLUMNS = ("first_inbound_at", "last_inbound_at", "waiting_since", "status", "snoozed_until", "resolved_at",
           "last_message_at", "last_message_preview", "last_message_direction", "last_outbound_at")


def _one_at_a_time(conversation: Conversation, at: datetime, preview: str | None) -> None:
    """The per-message rules (the oracle)."""
    if conversation.first_inbound_at is None or at < conversation.first_inbound_at:
        conversation.first_inbound_at = at
    if conversation.last_inbound_at is None or at > conversation.last_inbound_at:
        conversation.last_inbound_at = at
    answered = conversation.last_outbound_at is not None and at <= conversation.last_outbound_at
    if not answered and (conversation.waiting_since is None or at < conversation.waiting_since):
        conversation.waiting_since = at
    if conversation.status != "open" and not answered:
        conversation.status = "open"
        conversation.snoozed_until = None
        conversation.resolved_at = None
    if conversation.last_message_at is None or at >= conversation.last_message_at:
        conversation.last_message_at = at
        conversation.last_message_preview = preview
        conversation.last_message_direction = "in"


def _conversation(rng: random.Random) -> Conversation:
    def some_time() -> datetime | None:
        return None if rng.random() < 0.3 else T0 + timedelta(seconds=rng.randint(0, 20))
    status = rng.choice(["open", "snoozed", "resolved"])
    return Conversation(first_inbound_at=some_time(), last_inbound_at=some_time(), waiting_since=some_time(),
                        last_outbound_at=some_time(), last_message_at=some_time(), last_message_preview="before",
                        last_message_direction=rng.choice(["in", "out"]), status=status,
                        snoozed_until=T0 + timedelta(hours=1) if status == "snoozed" else None,
                        resolved_at=T0 if status == "resolved" else None)


def _state(conversation: Conversation) -> dict[str, object]:
    return {name: getattr(conversation, name) for name in COLUMNS}


@pytest.mark.parametrize("seed", range(300))
def test_a_batch_of_messages_ends_as_one_at_a_time(seed: int) -> None:
    rng = random.Random(seed)
    start = _conversation(rng)
    messages = [(T0 + timedelta(seconds=rng.randint(0, 20)), f"preview {k}") for k in range(rng.randint(1, 6))]
    expected, batched = Conversation(**_state(start)), Conversation(**_state(start))
    for at, preview in messages:
        _one_at_a_time(expected, at, preview)
    note_inbounds(batched, messages)
    assert _state(batched) == _state(expected), messages
    assert batched.updated_at is not None


def test_one_message_is_the_batch_of_one() -> None:
    conversation = Conversation(status="resolved", resolved_at=T0, last_outbound_at=T0)
    note_inbound(conversation, T0 - timedelta(seconds=1), "old news")  # answered already: stays resolved
    assert (conversation.status, conversation.waiting_since, conversation.last_message_preview) == \
        ("resolved", None, "old news")
    note_inbound(conversation, T0 + timedelta(seconds=1), "again")
    assert (conversation.status, conversation.resolved_at, conversation.waiting_since) == \
        ("open", None, T0 + timedelta(seconds=1))
