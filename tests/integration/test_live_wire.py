"""Conversation events travel in a wire form (inbox/realtime/wire.py): the conversation's JSON without its null
members, empty lists and `last_message.at`. Every shape of the JSON must come back exactly (key order included)
from its wire form; the console's copy of the rule (frontend/src/socket/wire.ts) is checked against the same
pairs, kept in tests/fixtures/live_conversations.json, which must cover every member the schema may leave null
or empty; and what a socket receives live and on replay is that wire form, standing for what the REST API shows.

The fixture is written from test_list_items' shapes: `RELAIS_WRITE_LIVE_FIXTURE=1 pytest
tests/integration/test_live_wire.py` after a change to ConversationSchema (then make the console's expander follow).
Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from inbox import realtime
from inbox.db import db
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import RealtimeEvent
from inbox.realtime.wire import compact_conversation, expand_conversation
from tests.factories import PAGE_ID
from tests.helpers import bearer, post_meta
from tests.integration.test_list_items import (  # noqa: F401  (fixtures, used by name)
    _expected,
    _fresh_policies,
    _no_policies_left_cached,
    _shapes,
    frozen,
)
from tests.procs import LiveEvents

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "live_conversations.json"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # key order compared too


def _paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every member, lists of objects as `key[]`."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path, item
            yield from _paths(item, path)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield from _paths(item, prefix + "[]")


def _left_out(value: Any) -> set[str]:
    """The paths a wire form may leave out of this JSON: null members and empty lists."""
    return {path for path, item in _paths(value) if item is None or item == []}


def _fixture() -> list[dict[str, Any]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["pairs"]


@pytest.mark.usefixtures("frozen")
def test_every_shape_of_a_conversation_comes_back_from_its_wire_form(app, world):
    with app.app_context():
        dumps = _expected(_shapes(world))
    for full in dumps.values():
        wire = compact_conversation(full)
        assert not _left_out(wire), wire  # nothing null or empty left on the wire
        assert "at" not in (wire.get("last_message") or {})
        assert len(_dumps(wire)) < len(_dumps(full))
        assert _dumps(expand_conversation(wire)) == _dumps(full)
        assert _dumps(expand_conversation(full)) == _dumps(full)  # events stored before the wire form existed
        assert _dumps(full) == _dumps(dumps[full["id"]])  # the compaction left the full JSON alone


@pytest.mark.usefixtures("frozen")
def test_the_consoles_fixture_stands_for_every_member_the_schema_may_leave_out(app, world):
    with app.app_context():
        dumps = list(_expected(_shapes(world)).values())
    if os.environ.get("RELAIS_WRITE_LIVE_FIXTURE") == "1":
        about = json.loads(FIXTURE.read_text(encoding="utf-8"))["about"]
        rows = [f'  {{"full": {_dumps(full)},\n   "wire": {_dumps(compact_conversation(full))}}}' for full in dumps]
        FIXTURE.write_text(f'{{"about": {_dumps(about)},\n "pairs": [\n' + ",\n".join(rows) + "\n ]}\n",
                           encoding="utf-8")
    pairs = _fixture()
    for pair in pairs:
        assert pair["wire"] == compact_conversation(pair["full"])
        assert _dumps(expand_conversation(pair["wire"])) == _dumps(pair["full"])
    # the same members as the schema dumps today, and every one it may leave out is left out in some pair: the
    # console's expander (frontend/tests/unit/live-wire.spec.ts) is then checked for each of them
    schema_paths = {path for full in dumps for path, _ in _paths(full)}
    fixture_paths = {path for pair in pairs for path, _ in _paths(pair["full"])}
    assert fixture_paths == schema_paths, "regenerate the fixture: RELAIS_WRITE_LIVE_FIXTURE=1 (module docstring)"
    may_leave_out = set().union(*(_left_out(full) for full in dumps))
    left_out = set().union(*(_left_out(pair["full"]) for pair in pairs))
    assert may_leave_out <= left_out
    assert "last_message.at" in fixture_paths


def test_a_socket_receives_the_wire_form_live_and_on_replay_and_it_stands_for_the_rest_json(
        app, live_server, world, token_for, client, jobs_done):
    assert realtime.socketio.server.packet_class is realtime._Packet  # frames sent without a search for bytes
    token = token_for(world.agent)
    live = LiveEvents().connect(live_server, auth={"token": token})
    try:
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-w1", "Bonjour <b>!</b>",
                                                           mid="m_wire")).status_code == 200
        _, created = live.wait_for(lambda n, d: n == "conversation.created", 10, "conversation.created")
        jobs_done()
    finally:
        live.disconnect()
    data = created["data"]
    assert not _left_out(data) and "at" not in data["last_message"]
    assert "assignee" not in data and "labels" not in data and data["contact"] == {"id": data["contact"]["id"]}
    with app.app_context():  # stored as sent: a replay carries the same form
        row = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.id == created["seq"])).scalar_one()
        assert row.payload == data
        db.session.remove()
    shown = client.get(f"/api/v1/conversations/{data['id']}", headers=bearer(token)).get_json()
    full = expand_conversation(data)
    assert full["assignee"] is None and full["contact"]["name"] is None and full["labels"] == []
    # what the REST API shows now: the same conversation, later by its name lookup (contact.updated) only
    assert {k: v for k, v in full.items() if k != "contact"} == {k: v for k, v in shown.items() if k != "contact"}

    replayed = LiveEvents().connect(live_server, auth={"token": token, "last_seq": created["seq"] - 1})
    try:
        _, again = replayed.wait_for(lambda n, d: d.get("seq") == created["seq"], 10, "the replayed event")
    finally:
        replayed.disconnect()
    assert again["data"] == data
