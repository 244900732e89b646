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


def _conversation_text(d: dict[str, Any]) -> str | None:
    return ((d.get("data") or {}).get("last_message") or {}).get("text")


def test_reconnect_with_last_seq_replays_every_missed_event(app, live_server, world, token_for, client,
                                                            jobs_done) -> None:
    token = token_for(world.agent)
    first = LiveEvents().connect(live_server, auth={"token": token})
    try:
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-r1", "before the cut",
                                                           mid="m_before")).status_code == 200
        _, listed = first.wait_for(lambda n, d: n == "conversation.created" and _conversation_text(d) ==
                                   "before the cut", 10, "conversation.created before the disconnection")
        conversation_id = listed["data"]["id"]
        # the agent opens it: its thread events now come to this socket
        assert first.sio.call("watch", {"conversation_ids": [conversation_id]}, timeout=5) == {
            "watching": [conversation_id]}
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-r1", "still connected",
                                                           mid="m_still")).status_code == 200
        first.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == "still connected", 10,
                       "message.created of the watched conversation")
        jobs_done()
        first.wait_for(lambda n, d: n == "conversation.updated" and _conversation_text(d) == "still connected", 5,
                       "conversation.updated before the cut")
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
        agent_rooms.add(f"conversation:{conversation_id}")  # the conversation the console had open
        expected = {row.id for row in db.session.execute(select(RealtimeEvent).where(RealtimeEvent.id > last_seq))
                    .scalars() if access.event_visible_to(row.rooms, agent_rooms)}
        db.session.remove()
    assert expected, "the missed webhooks should have produced live events"

    # the console reconnects with its last seq and the conversation it shows (the handshake carries both)
    second = LiveEvents().connect(live_server, auth={"token": token, "last_seq": last_seq,
                                                     "watch": [conversation_id]})
    # another tab of the same agent with nothing open: the queue's events, not the thread's
    third = LiveEvents().connect(live_server, auth={"token": token, "last_seq": last_seq})
    try:
        second.wait_for(lambda n, d: n == "message.created" and "missed one" in _texts(second.events), 10,
                        "replay of the watched conversation's missed message")
        second.wait_for(lambda n, d: {d["seq"] for _, d in _with_seq(second.events)} >= expected, 5,
                        f"replay of every missed seq {sorted(expected)}")
        # the replay: in seq order, each once; it may start a little before last_seq (the client dedupes)
        replayed = [(n, d) for n, d in _with_seq(second.events) if d.get("replay") is True]
        seqs = [d["seq"] for _, d in replayed]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), f"replay not in seq order: {seqs}"
        new = {d["seq"]: (n, d) for n, d in replayed if d["seq"] > last_seq}
        assert expected <= set(new), f"missed events not replayed: {sorted(expected - set(new))}"
        assert _texts(list(new.values())) == {"missed one"}, "thread events of the watched conversation only"
        created = [d for n, d in new.values() if n == "conversation.created"]
        assert len(created) == 2, "psid-r2 and psid-r3 opened conversations while the client was away"
        previews = {_conversation_text(d) for n, d in new.values() if n.startswith("conversation.")}
        assert previews == missed, "the queue learns of every missed message through its conversation"

        third.wait_for(lambda n, d: n == "conversation.created" and _conversation_text(d) == "missed three <b>html</b>",
                       10, "the other tab's replay")
        third.wait_for(lambda n, d: n == "conversation.updated" and _conversation_text(d) == "missed one", 5,
                       "the other tab's replay of the open conversation's update")
        assert _texts(third.events) == set(), "no thread events for a socket that watches nothing"
    finally:
        second.disconnect()
        third.disconnect()


def test_watch_is_checked_like_the_rest_route(app, live_server, world, token_for, client, jobs_done) -> None:
    """A socket may watch only conversations its agent may open; a bad request is refused, never crashes."""
    insider = LiveEvents().connect(live_server, auth={"token": token_for(world.agent)})
    outsider = LiveEvents().connect(live_server, auth={"token": token_for(world.outsider)})
    try:
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-w", "first", mid="m_w1")).status_code == 200
        _, listed = insider.wait_for(lambda n, d: n == "conversation.created", 10, "conversation.created")
        conversation_id = listed["data"]["id"]
        for bad in (None, {}, {"conversation_ids": "1"}, {"conversation_ids": [0]}, {"conversation_ids": [True]},
                    {"conversation_ids": ["1"]}, {"conversation_ids": list(range(1, 50))}, [conversation_id]):
            answer = insider.sio.call("watch", bad, timeout=5)
            assert set(answer) == {"error"}, (bad, answer)
        # another brand's conversation, and one that does not exist: left out, as a 404 would
        assert outsider.sio.call("watch", {"conversation_ids": [conversation_id, 987654]}, timeout=5) == {
            "watching": []}
        assert insider.sio.call("watch", {"conversation_ids": [conversation_id, 987654]}, timeout=5) == {
            "watching": [conversation_id]}
        # an outsider's handshake asking to watch it is ignored the same way
        sneaky = LiveEvents().connect(live_server, auth={"token": token_for(world.outsider), "last_seq": 0,
                                                         "watch": [conversation_id]})
        try:
            _, session = sneaky.wait_for(lambda n, d: n == "session", 5, "the session event")
            assert session["watching"] == []
            assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-w", "second", mid="m_w2")) \
                .status_code == 200
            insider.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == "second", 10,
                             "the watcher gets the thread event")
            jobs_done()
            insider.wait_for(lambda n, d: n == "conversation.updated" and _conversation_text(d) == "second", 5,
                             "and the list event after it")
            for other in (outsider, sneaky):
                assert "second" not in json.dumps(other.events, ensure_ascii=False)
        finally:
            sneaky.disconnect()
        # watching nothing stops the thread events; the list events go on
        assert insider.sio.call("watch", {"conversation_ids": []}, timeout=5) == {"watching": []}
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-w", "third", mid="m_w3")).status_code == 200
        jobs_done()
        insider.wait_for(lambda n, d: n == "conversation.updated" and _conversation_text(d) == "third", 10,
                         "the list event once unwatched")
        assert "third" not in _texts(insider.events)
    finally:
        insider.disconnect()
        outsider.disconnect()


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
        _, listed = insider.wait_for(lambda n, d: n == "conversation.created", 10,
                                     "conversation.created for the brand's own agent")
        assert _conversation_text(listed) == secret
        # the outsider asks to watch it: refused like GET /conversations/<id> (404), so no thread events either
        assert outsider.sio.call("watch", {"conversation_ids": [listed["data"]["id"]]}, timeout=5) == {
            "watching": []}
        assert insider.sio.call("watch", {"conversation_ids": [listed["data"]["id"]]}, timeout=5) == {
            "watching": [listed["data"]["id"]]}
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-in", secret + " (2)", mid="m_secret2")) \
            .status_code == 200
        insider.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == secret + " (2)", 10,
                         "the watching agent gets the thread event")
        jobs_done()
        # a barrier: the outsider's own brand's event, posted after, arrives after anything sent before it
        theirs = "for the other brand"
        assert post_meta(client, messenger_message_payload(OTHER_PAGE_ID, "psid-out", theirs, mid="m_theirs")) \
            .status_code == 200
        jobs_done()
        outsider.wait_for(lambda n, d: n == "conversation.created" and _conversation_text(d) == theirs, 10,
                          "conversation.created for the outsider's own brand")

        leaked = [(n, d) for n, d in outsider.events if n != "session"
                  and (secret in json.dumps(d, ensure_ascii=False) or "m_secret" in json.dumps(d))]
        assert leaked == [], f"the outsider received the other brand's events: {leaked}"
        assert _texts(outsider.events) == set()
        conversations = [d["data"] for n, d in _with_seq(outsider.events) if n.startswith("conversation.")]
        assert conversations and all(c["brand"]["id"] == world.other_brand_id for c in conversations), conversations
        assert theirs not in json.dumps([d for n, d in insider.events], ensure_ascii=False), \
            "and the other way round"
    finally:
        insider.disconnect()
        outsider.disconnect()


def test_simultaneous_connects_that_watch_all_get_their_session(app, live_server, world, token_for, client,
                                                                jobs_done) -> None:
    """Many consoles reconnecting at once (after a deploy), each rejoining the conversation it shows: every one
    gets its session and its watch, none is refused by a race between the joins."""
    import threading

    token = token_for(world.agent)
    assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-many", "hello", mid="m_many")).status_code == 200
    jobs_done()
    with app.app_context():
        conversation_id = db.session.scalar(select(RealtimeEvent.payload).where(
            RealtimeEvent.name == "conversation.created").order_by(RealtimeEvent.id.desc()).limit(1))["id"]
        db.session.remove()
    sockets = [LiveEvents() for _ in range(24)]
    errors: list[BaseException] = []

    def connect(events: LiveEvents) -> None:
        try:
            events.connect(live_server, auth={"token": token, "last_seq": 0, "watch": [conversation_id]})
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(events,)) for events in sockets]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        for events in sockets:
            _, session = events.wait_for(lambda n, d: n == "session", 10, "the session event")
            assert session["watching"] == [conversation_id]
    finally:  # together: each disconnect waits ~3 s for the dev server's answer to its close frame
        closers = [threading.Thread(target=events.disconnect) for events in sockets]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(30)


def _store_events(app: Any, rows: list[tuple[str, list[str], dict[str, Any]]], at: Any = None) -> list[int]:
    """Stored live events, as the relay keeps them for replays: their seqs."""
    from inbox.models.base import utcnow

    with app.app_context():
        events = [RealtimeEvent(name=name, rooms=rooms, payload=payload, created_at=at or utcnow())
                  for name, rooms, payload in rows]
        db.session.add_all(events)
        db.session.commit()
        seqs = [e.id for e in events]
        db.session.remove()
    return seqs


def _replayed(events: LiveEvents) -> dict[str, Any]:
    _, done = events.wait_for(lambda n, d: n == "replayed", 10, "the end of the replay")
    return done


def test_a_replay_reaches_past_the_events_of_rooms_the_agent_is_not_in(app, live_server, world, token_for) -> None:
    """A busy agency: while this agent was away, other brands made thousands of events. The replay finds its own
    few among them (the rooms are filtered by the database, not after a row limit)."""
    token = token_for(world.agent)
    anchor = _store_events(app, [("conversation.updated", [f"brand:{world.brand_id}"], {"id": 1, "n": "seen"})])[0]
    _store_events(app, [("conversation.updated", [f"brand:{world.other_brand_id}", "admins"], {"id": 2, "n": i})
                        for i in range(2500)])
    mine = _store_events(app, [("conversation.updated", [f"brand:{world.brand_id}", "admins"], {"id": 1, "n": i})
                               for i in range(3)])
    events = LiveEvents().connect(live_server, auth={"token": token, "last_seq": anchor})
    try:
        assert _replayed(events) == {"complete": True, "missed": 3}
        replayed = [d["seq"] for n, d in _with_seq(events.events) if d.get("replay")]
        assert [s for s in replayed if s > anchor] == mine
        assert all(d["data"]["id"] == 1 for n, d in _with_seq(events.events)), "another brand's event was replayed"
    finally:
        events.disconnect()


def test_a_replay_too_long_to_send_tells_the_console_to_fetch_its_views_again(app, live_server, world, token_for,
                                                                              monkeypatch) -> None:
    """More missed events than a replay sends, or a seq no longer kept: nothing is replayed and the client is told
    the replay is incomplete (the console then fetches its list and its thread again); never a silent cut."""
    from inbox.realtime import handlers

    monkeypatch.setattr(handlers, "REPLAY_MAX", 5)
    token = token_for(world.agent)
    room = [f"brand:{world.brand_id}"]
    anchor = _store_events(app, [("conversation.updated", room, {"id": 1, "n": "seen"})])[0]
    _store_events(app, [("conversation.updated", room, {"id": 1, "n": i}) for i in range(5)])
    exact = LiveEvents().connect(live_server, auth={"token": token, "last_seq": anchor})
    try:  # exactly REPLAY_MAX: all sent
        assert _replayed(exact) == {"complete": True, "missed": 5}
    finally:
        exact.disconnect()
    _store_events(app, [("conversation.updated", room, {"id": 1, "n": "one too many"})])
    over = LiveEvents().connect(live_server, auth={"token": token, "last_seq": anchor})
    try:
        assert _replayed(over) == {"complete": False, "missed": None}
        assert _with_seq(over.events) == []
        over.sio.emit("resume", {"last_seq": anchor})  # `resume` answers the same way
        over.wait_for(lambda n, d: len(over.named("replayed")) == 2, 10, "the second replay's end")
        assert over.named("replayed")[1] == {"complete": False, "missed": None}
    finally:
        over.disconnect()

    monkeypatch.setattr(handlers, "REPLAY_SCAN", 2)  # more events after last_seq than one replay looks through
    latest = _store_events(app, [("conversation.updated", [f"brand:{world.other_brand_id}"], {"id": 2})] * 3)[-1]
    scanned = LiveEvents().connect(live_server, auth={"token": token, "last_seq": latest - 3})
    try:
        assert _replayed(scanned) == {"complete": False, "missed": None}
    finally:
        scanned.disconnect()

    with app.app_context():  # the last event the console saw was pruned (offline longer than events are kept)
        db.session.execute(RealtimeEvent.__table__.delete().where(RealtimeEvent.id == anchor))
        db.session.commit()
        db.session.remove()
    monkeypatch.setattr(handlers, "REPLAY_SCAN", 100_000)
    pruned = LiveEvents().connect(live_server, auth={"token": token, "last_seq": anchor})
    try:
        assert _replayed(pruned) == {"complete": False, "missed": None}
    finally:
        pruned.disconnect()
    nothing_missed = LiveEvents().connect(live_server, auth={"token": token, "last_seq": latest})
    try:
        assert _replayed(nothing_missed) == {"complete": True, "missed": 0}
    finally:
        nothing_missed.disconnect()


def test_an_incomplete_replay_reads_no_event_and_a_whole_one_reads_them_once(app, live_server, world, token_for,
                                                                             monkeypatch, all_statements) -> None:
    """When 500 consoles reconnect at once (bench figure 10), most replays are too long to send: telling one so is
    a single SELECT, which reads no payload. A whole replay reads its events' texts in one more (and the overlap's
    seqs in another)."""
    from inbox.realtime import handlers

    monkeypatch.setattr(handlers, "REPLAY_MAX", 3)
    token = token_for(world.agent)
    room = [f"brand:{world.brand_id}"]
    anchor = _store_events(app, [("conversation.updated", room, {"id": 1, "n": "seen"})])[0]
    _store_events(app, [("conversation.updated", room, {"id": 1, "n": i}) for i in range(4)])

    def replay_reads() -> list[str]:
        return [s for s in all_statements if "realtime_events" in s and s.lstrip().upper().startswith("SELECT")]

    over = LiveEvents().connect(live_server, auth={"token": token, "last_seq": anchor})
    try:
        assert _replayed(over) == {"complete": False, "missed": None}
        assert len(replay_reads()) == 1 and "payload" not in replay_reads()[0], replay_reads()
    finally:
        over.disconnect()
    all_statements.clear()
    monkeypatch.setattr(handlers, "REPLAY_MAX", 4)
    whole = LiveEvents().connect(live_server, auth={"token": token, "last_seq": anchor})
    try:
        assert _replayed(whole) == {"complete": True, "missed": 4}
        assert [d["data"]["n"] for _n, d in _with_seq(whole.events) if d["seq"] > anchor] == [0, 1, 2, 3]
        reads = replay_reads()
        assert len(reads) == 3 and sum("payload" in s for s in reads) == 1, reads
    finally:
        whole.disconnect()


def test_the_overlap_before_last_seq_does_not_crowd_out_what_came_after(app, live_server, world, token_for) -> None:
    """The replay starts a little before last_seq (events committed out of seq order); in a busy inbox those
    seconds hold thousands of events, and what came after last_seq must still all come."""
    token = token_for(world.agent)
    room = [f"brand:{world.brand_id}"]
    before = _store_events(app, [("conversation.updated", room, {"id": 1, "n": i}) for i in range(2500)])
    after = _store_events(app, [("conversation.updated", room, {"id": 1, "n": f"after {i}"}) for i in range(3)])
    events = LiveEvents().connect(live_server, auth={"token": token, "last_seq": before[-1]})
    try:
        assert _replayed(events)["complete"] is True
        seqs = [d["seq"] for n, d in _with_seq(events.events) if d.get("replay")]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        assert [s for s in seqs if s > before[-1]] == after
        overlap = [s for s in seqs if s <= before[-1]]
        assert 0 < len(overlap) <= 1000 and overlap == before[-len(overlap):], "the latest of the overlap"
    finally:
        events.disconnect()


def test_the_overlap_leaves_out_what_the_client_says_it_has_seen(app, live_server, world, token_for) -> None:
    """The console hands over the seqs it has (`seen`: numbers and [first, last] ranges, as its SeqTracker
    remembers them): of the events just before its last seq, only those it lacks come again (one that committed
    late), not the thousand it already shows. A malformed `seen` is no information: the whole overlap comes."""
    token = token_for(world.agent)
    room = [f"brand:{world.brand_id}"]
    other = [f"brand:{world.other_brand_id}"]
    before = _store_events(app, [("conversation.updated", room if i % 3 else other, {"id": 1, "n": i})
                                 for i in range(30)])
    mine = [seq for i, seq in enumerate(before) if i % 3]
    late = mine[5]  # committed after the client's last event went out: it never saw it
    after = _store_events(app, [("conversation.updated", room, {"id": 1, "n": "after"})])
    seen = [[0, mine[0] - 1], *[s for s in mine if s != late]]
    cases = {"seen": (seen, [late]), "ranges": ([[0, late - 1], [late + 1, mine[-1]]], [late]),
             "malformed": ([[5, 1]], mine), "not a list": ("1-5", mine), "too long": (list(range(3000)), mine)}
    for label, (claim, expected_overlap) in cases.items():
        events = LiveEvents().connect(live_server, auth={"token": token, "last_seq": mine[-1], "seen": claim})
        try:
            assert _replayed(events) == {"complete": True, "missed": 1}, label
            seqs = [d["seq"] for n, d in _with_seq(events.events) if d.get("replay")]
            assert seqs == expected_overlap + after, label
        finally:
            events.disconnect()
    resumed = LiveEvents().connect(live_server, auth={"token": token})
    try:  # `resume` takes it too
        resumed.sio.emit("resume", {"last_seq": mine[-1], "seen": seen})
        assert _replayed(resumed) == {"complete": True, "missed": 1}
        assert [d["seq"] for n, d in _with_seq(resumed.events) if d.get("replay")] == [late] + after
    finally:
        resumed.disconnect()


@pytest.mark.parametrize("slots", [1, 0])
def test_connects_take_their_turn_when_many_come_at_once(app, live_server, world, token_for, monkeypatch,
                                                         slots) -> None:
    """SOCKET_CATCH_UP_CONCURRENCY: when every console of a web process comes back at once, its connects are served
    that many at a time, first come first served, instead of all sharing the process (each then taking as long as
    all of them). 0: no limit. Every socket is served either way, with its session and its replay."""
    import threading
    import time

    from inbox.realtime import handlers

    monkeypatch.setitem(app.extensions, "relais.settings",
                        app.extensions["relais.settings"].with_overrides(socket_catch_up_concurrency=slots))
    inside, most = [0], [0]
    lock = threading.Lock()
    real_connect = handlers._connect

    def slow_connect(auth: Any) -> None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.5)  # the connect's work, long enough for the others to arrive meanwhile
            real_connect(auth)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(handlers, "_connect", slow_connect)
    token = token_for(world.agent)
    clients = [LiveEvents() for _ in range(4)]
    threads = [threading.Thread(target=c.connect, args=(live_server,), kwargs={"auth": {"token": token,
                                                                                         "last_seq": 0}})
               for c in clients]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        for c in clients:
            c.wait_for(lambda n, _d: n == "replayed", 10, "replayed")
            assert c.named("session") and c.named("session")[0]["agent_id"]
        assert (most[0] == 1) if slots == 1 else (most[0] > 1), most[0]  # one at a time / together
    finally:
        for c in clients:
            c.disconnect()
