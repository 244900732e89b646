"""The wire form of the queue's conversation events: ConversationSchema's JSON without what a client restores.

Every agent of a brand receives a `conversation.created` / `conversation.updated` for every inbound message of
that brand (the whole row: a console that does not hold it yet must be able to place it in its lists). Most of
a row's members are usually null or empty (no assignee, no post, no labels, no SLA clock, no language...), and
`last_message.at` is always `last_message_at`. The wire form leaves those out: members whose value is null (in
the conversation and in its nested objects and SLA clocks), the empty lists (`labels`, `sla`,
`linked_conversation_ids`) and `last_message.at`. A new customer's first DM goes from 908 to 651 bytes (955 to
743 once its name is looked up and it has a team); at 500 agents that is what each console parses (bench figure
2: JSON parsing was most of the simulated consoles' CPU), what the web process writes to each socket, and what
`realtime_events` stores.

`compact_conversation` is applied by `realtime.publish` to the events in `COMPACTED`, so the live frames and
the replay (`resume`, from `realtime_events`) carry the same form. Clients restore the full JSON before using
it: the console in frontend/src/socket/wire.ts (`expandConversation`), Python clients with
`expand_conversation` here (the REST API's ConversationSchema JSON, key order included).
tests/integration/test_live_wire.py and frontend/tests/unit/live-wire.spec.ts check both against the schema,
through tests/fixtures/live_conversations.json.
"""
from __future__ import annotations

from typing import Any

COMPACTED = frozenset({"conversation.created", "conversation.updated"})
LISTS = frozenset({"labels", "sla", "linked_conversation_ids"})


def compact_conversation(data: dict[str, Any]) -> dict[str, Any]:
    """The wire form of a conversation's JSON (a new dict: `data` and its nested dicts are left as they are;
    list pages share their brand and channel dicts between conversations)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None or (key in LISTS and not value):
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        elif key == "sla":
            value = [{k: v for k, v in clock.items() if v is not None} for clock in value]
        out[key] = value
    last = out.get("last_message")
    if last is not None and "at" in last and last["at"] == out.get("last_message_at"):
        del last["at"]
    return out


# (key, shape) in ConversationSchema's order; shape: None (a value), "list", or (nested keys, list of objects).
# Built from the schemas at first use, so a field added to them is restored without a change
# here (inbox.api imports the services, which import this package: hence not at import time).
_Shape = tuple[tuple[str, Any], ...]
_shape: _Shape | None = None


def _conversation_shape() -> _Shape:
    global _shape
    if _shape is None:
        from marshmallow import fields

        from inbox.api.schemas import ConversationSchema, LastMessageSchema, ReplyWindowSchema
        from inbox.api.sla import SlaClockSchema
        by_method = {"last_message": (LastMessageSchema, False), "reply_window": (ReplyWindowSchema, False),
                     "sla": (SlaClockSchema, True)}
        shape: list[tuple[str, Any]] = []
        for key, field in ConversationSchema._declared_fields.items():
            if key in by_method:
                schema, many = by_method[key]
                shape.append((key, (tuple(schema._declared_fields), many)))
            elif isinstance(field, fields.Nested):
                nested = field.nested
                assert isinstance(nested, type)
                shape.append((key, (tuple(nested._declared_fields), False)))
            elif key in LISTS:
                shape.append((key, "list"))
            else:
                shape.append((key, None))
        _shape = tuple(shape)
    return _shape


def expand_conversation(wire: dict[str, Any]) -> dict[str, Any]:
    """ConversationSchema's JSON of a conversation event's data, from its wire form (a full form comes back
    unchanged, so events written before the wire form existed expand too)."""
    out: dict[str, Any] = {}
    for key, shape in _conversation_shape():
        value = wire.get(key)
        if shape == "list":
            value = list(value) if value is not None else []
        elif shape is not None and (value is not None or shape[1]):  # a missing list of objects is []
            keys, many = shape
            if many:
                value = [{k: clock.get(k) for k in keys} for clock in value or ()]
            else:
                value = {k: value.get(k) for k in keys}
                if key == "last_message" and value.get("at") is None:
                    value["at"] = wire.get("last_message_at")
        out[key] = value
    return out
