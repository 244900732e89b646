"""Live events over a real Socket.IO connection (in process, werkzeug live server): catch-up by seq after a
disconnection, refused connections, and rooms chosen by the server only. Runs on SQLite, and on PostgreSQL
with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import json
from typing import Any

import pytest
import socketio
from sqlalchemy import select

from inbox.db import db
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import Agent, RealtimeEvent
from inbox.services import access
from tests.factories import OTHER_PAGE_ID, PAGE_ID
from tests.helpers import post_meta
from tests.procs import LiveEvents


def _with_seq(events: list[tuple[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in events if isinstance(d, dict) and isinstance(d.get("seq"), int)]


def _texts(events: list[tuple[str, Any]]) -> set[str]:
    return {d["data"].get("text") for n, d in _with_seq(events) if n == "message.created"}


def test_reconnect_with_last_seq_replays_every_missed_event(app, live_server, world, token_for, client,
                                                            jobs_done) -> None:
    token = token_for(world.agent)
    first = LiveEvents().connect(live_server, auth={"token": token})
    try:
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-r1", "before the cut",
                                                           mid="m_before")).status_code == 200
        first.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == "before the cut", 10,
                       "message.created before the disconnection")
        jobs_done()
        first.wait_for(lambda n, d: n == "conversation.created", 5, "conversation.created before the cut")
        last_seq = max(d["seq"] for _, d in _with_seq(first.events))
    finally:
        first.disconnect()

    missed = {"missed one", "missed two 🙂", "missed three <b>html</b>"}
    for psid, mid, text in (("psid-r1", "m_missed_1", "missed one"), ("psid-r2", "m_missed_2", "missed two 🙂"),
                            ("psid-r3", "m_missed_3", "missed three <b>html</b>")):
        assert post_meta(client, messenger_message_payload(PAGE_ID, psid, text, mid=mid)).status_code == 200
    jobs_done()
    with app.app_context():  # what the server stored while the client was away, among what it may see
        agent_rooms = set(access.rooms_for(db.session, db.session.get(Agent, world.agent_ids[world.agent])))
        expected = {row.id for row in db.session.execute(select(RealtimeEvent).where(RealtimeEvent.id > last_seq))
                    .scalars() if access.event_visible_to(row.rooms, agent_rooms)}
        db.session.remove()
    assert expected, "the missed webhooks should have produced live events"

    second = LiveEvents().connect(live_server, auth={"token": token, "last_seq": last_seq})
    try:
        second.wait_for(lambda n, d: n == "message.created" and missed <= _texts(second.events), 10,
                        f"replay of every missed message {sorted(missed)}")
        second.wait_for(lambda n, d: {d["seq"] for _, d in _with_seq(second.events)} >= expected, 5,
                        f"replay of every missed seq {sorted(expected)}")
        # the replay: in seq order, each once; it may start a little before last_seq (the client dedupes)
        replayed = [(n, d) for n, d in _with_seq(second.events) if d.get("replay") is True]
        seqs = [d["seq"] for _, d in replayed]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), f"replay not in seq order: {seqs}"
        new = {d["seq"]: (n, d) for n, d in replayed if d["seq"] > last_seq}
        assert expected <= set(new), f"missed events not replayed: {sorted(expected - set(new))}"
        assert _texts(list(new.values())) == missed
        created = [d["data"] for n, d in new.values() if n == "conversation.created"]
        assert len(created) == 2, "psid-r2 and psid-r3 opened conversations while the client was away"
    finally:
        second.disconnect()


REFUSED_AUTH = {"no auth": None, "empty auth": {}, "a seq but no token": {"last_seq": 0},
                "empty token": {"token": ""}, "invalid token": {"token": "rls_not-a-real-token"},
                "token of the wrong type": {"token": 12345}}


def test_connection_without_valid_credentials_is_refused(live_server, world, token_for) -> None:
    token_for(world.agent)  # a real token exists: the others must still be refused
    # every case over long-polling (how browsers start); two over a direct WebSocket too (each of those costs
    # ~3 s: the dev server does not answer the client's close frame after a refusal)
    cases = [(label, auth, ("polling",)) for label, auth in REFUSED_AUTH.items()]
    cases += [(label, REFUSED_AUTH[label], ("websocket",)) for label in ("no auth", "invalid token")]
    for label, auth, transports in cases:
        events = LiveEvents()
        try:
            with pytest.raises(socketio.exceptions.ConnectionError):
                events.connect(live_server, auth=auth, timeout=5, transports=transports)
            assert not events.sio.connected, (label, transports)
            assert [n for n, _ in events.events] == [], f"{label} ({transports}): a refused client got events"
        finally:
            events.disconnect()


def test_agent_of_another_brand_receives_nothing_of_this_brand(app, live_server, world, token_for, client,
                                                               jobs_done) -> None:
    insider = LiveEvents().connect(live_server, auth={"token": token_for(world.agent)})
    outsider = LiveEvents().connect(live_server, auth={"token": token_for(world.outsider)})
    try:
        _, session = outsider.wait_for(lambda n, d: n == "session", 5, "the outsider's session event")
        assert f"brand:{world.other_brand_id}" in session["rooms"]
        assert f"brand:{world.brand_id}" not in session["rooms"] and "admins" not in session["rooms"]
        # asking for rooms is ignored: the server alone decides
        for payload in ({"room": f"brand:{world.brand_id}"}, f"brand:{world.brand_id}", {"room": "admins"},
                        {"rooms": [f"brand:{world.brand_id}", "admins", "conversation:1"]}):
            outsider.sio.emit("join", payload)
        outsider.sio.emit("join_room", {"room": f"brand:{world.brand_id}"})
        outsider.sio.emit("resume", {"last_seq": 0})

        secret = "brand one only: order FR123"
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-in", secret, mid="m_secret")) \
            .status_code == 200
        insider.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == secret, 10,
                         "the brand's own agent gets its message")
        jobs_done()
        insider.wait_for(lambda n, d: n == "conversation.created", 5, "conversation.created for the insider")
        # a barrier: the outsider's own brand's event, posted after, arrives after anything sent before it
        theirs = "for the other brand"
        assert post_meta(client, messenger_message_payload(OTHER_PAGE_ID, "psid-out", theirs, mid="m_theirs")) \
            .status_code == 200
        outsider.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == theirs, 10,
                          "the outsider gets its own brand's message")
        jobs_done()
        outsider.wait_for(lambda n, d: n == "conversation.created", 5, "conversation.created for the outsider")

        leaked = [(n, d) for n, d in outsider.events if n != "session"
                  and (secret in json.dumps(d, ensure_ascii=False) or "m_secret" in json.dumps(d))]
        assert leaked == [], f"the outsider received the other brand's events: {leaked}"
        assert _texts(outsider.events) == {theirs}
        conversations = [d["data"] for n, d in _with_seq(outsider.events) if n.startswith("conversation.")]
        assert conversations and all(c["brand"]["id"] == world.other_brand_id for c in conversations), conversations
        assert theirs not in json.dumps([d for n, d in insider.events], ensure_ascii=False), \
            "and the other way round"
    finally:
        insider.disconnect()
        outsider.disconnect()
