"""Triage through the API: assignment policies, brand routing, language matching, backlog pickup, presence
and concurrency. SQLite by default, PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import socketio
from sqlalchemy import func, select, update

from inbox.db import db, utcnow
from inbox.demo.fake_meta import messenger_message_payload
from inbox.jobs import tasks
from inbox.models import Agent, AgentState, Conversation, Message, RealtimeEvent
from inbox.services import assignment, presence
from tests.factories import PAGE_ID
from tests.helpers import bearer, post_meta, wait_until


def _put_policy(client, token, team_id, **policy):
    response = client.put(f"/api/v1/teams/{team_id}/assignment-policy", json=policy, headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _route(client, admin_token, world):
    response = client.put(f"/api/v1/brands/{world.brand_id}/routing", json={"default_team_id": world.team_id},
                          headers=bearer(admin_token))
    assert response.status_code == 200, response.get_json()


def _availability(client, token, value):
    response = client.post("/api/v1/auth/me/availability", json={"availability": value}, headers=bearer(token))
    assert response.status_code == 200, response.get_json()


def _message(client, psid, text, *, ago_s=60):
    ts = int((time.time() - ago_s) * 1000)
    assert post_meta(client, messenger_message_payload(PAGE_ID, psid, text, mid=f"m_{psid}_{ts}",
                                                       ts_ms=ts)).status_code == 200


def _conversation_of(app, psid):
    with app.app_context():
        db.session.expire_all()
        return db.session.execute(select(Conversation).where(Conversation.thread_key.like(f"%{psid}%"))).scalar_one()


def _assignee(app, psid):
    return _conversation_of(app, psid).assignee_id


def _set_capacity(app, agent_id, capacity):
    with app.app_context():
        db.session.execute(update(Agent).where(Agent.id == agent_id).values(capacity=capacity))
        db.session.commit()


def test_policy_defaults_to_manual_and_only_team_leads_change_it(client, world, token_for):
    sup, agent, outsider, admin = (token_for(e) for e in (world.supervisor, world.agent, world.outsider, world.admin))
    url = f"/api/v1/teams/{world.team_id}/assignment-policy"
    assert client.get(url, headers=bearer(sup)).get_json() == {
        "mode": "manual", "capacity_by_channel_kind": {}, "match_language": False,
        "unassign_after_offline_minutes": None}
    assert client.put(url, json={"mode": "round_robin"}, headers=bearer(agent)).status_code == 403
    assert client.put(url, json={"mode": "round_robin"}, headers=bearer(outsider)).status_code == 404
    bad = client.put(url, json={"mode": "lottery", "capacity_by_channel_kind": {"fax": 1}}, headers=bearer(sup))
    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"mode", "capacity_by_channel_kind"}
    policy = _put_policy(client, sup, world.team_id, mode="least_loaded", match_language=True,
                         capacity_by_channel_kind={"facebook_page": 3}, unassign_after_offline_minutes=30)
    assert policy["mode"] == "least_loaded" and policy["capacity_by_channel_kind"] == {"facebook_page": 3}
    assert client.get(url, headers=bearer(admin)).get_json() == policy
    assert client.get("/api/v1/teams/999999/assignment-policy", headers=bearer(admin)).status_code == 404


def test_brand_routing_needs_a_team_serving_the_brand(client, world, token_for):
    admin, sup = token_for(world.admin), token_for(world.supervisor)
    url = f"/api/v1/brands/{world.brand_id}/routing"
    assert client.get(url, headers=bearer(sup)).get_json() == {"brand_id": world.brand_id, "default_team_id": None}
    assert client.put(url, json={"default_team_id": world.team_id}, headers=bearer(sup)).status_code == 403
    wrong = client.put(url, json={"default_team_id": world.other_team_id}, headers=bearer(admin))
    assert wrong.status_code == 422 and "default_team_id" in wrong.get_json()["error"]["fields"]
    _route(client, admin, world)
    assert client.get(url, headers=bearer(sup)).get_json()["default_team_id"] == world.team_id


def test_manual_team_leaves_new_conversations_in_the_queue(app, client, world, token_for, jobs_done):
    _route(client, token_for(world.admin), world)
    _message(client, "psid-manual", "Bonjour, où est ma commande ?")
    jobs_done()
    conversation = _conversation_of(app, "psid-manual")
    assert conversation.team_id == world.team_id and conversation.assignee_id is None
    assert conversation.language == "fr"


def test_round_robin_assigns_before_the_conversation_is_published(app, client, world, token_for, jobs_done):
    _route(client, token_for(world.admin), world)
    _availability(client, token_for(world.supervisor), "offline")
    _put_policy(client, token_for(world.supervisor), world.team_id, mode="round_robin")
    for psid in ("rr-1", "rr-2", "rr-3"):
        _message(client, psid, "hello, where is my order?")
        jobs_done()
    owners = [_assignee(app, p) for p in ("rr-1", "rr-2", "rr-3")]
    a, b = world.agent_ids[world.agent], world.agent_ids[world.agent2]
    assert owners[:2] in ([a, b], [b, a]) and owners[2] == owners[0]
    with app.app_context():
        created = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name == "conversation.created")
                                     .order_by(RealtimeEvent.id)).scalars().all()
        assert [e.payload["assignee"]["id"] for e in created] == owners
        conversation = _conversation_of(app, "rr-1")
        activity = db.session.execute(select(Message).where(Message.conversation_id == conversation.id,
                                                            Message.kind == "activity")).scalars().all()
        assert [m.extra["activity"]["by"] for m in activity] == ["policy"]
        owner = db.session.get(Agent, owners[0])
        assert activity[0].extra["activity"]["assignee_name"] == owner.name  # the console's sentence
    listing = client.get("/api/v1/conversations", query_string={"assignee": "none"},
                         headers=bearer(token_for(world.agent))).get_json()
    assert listing["items"] == []


def test_least_loaded_with_a_channel_kind_cap(app, client, world, token_for, jobs_done):
    _route(client, token_for(world.admin), world)
    _availability(client, token_for(world.supervisor), "busy")
    _put_policy(client, token_for(world.admin), world.team_id, mode="least_loaded",
                capacity_by_channel_kind={"facebook_page": 1})
    for psid in ("ll-1", "ll-2", "ll-3"):
        _message(client, psid, "hello?")
        jobs_done()
    owners = [_assignee(app, p) for p in ("ll-1", "ll-2", "ll-3")]
    assert sorted(o for o in owners[:2]) == sorted([world.agent_ids[world.agent], world.agent_ids[world.agent2]])
    assert owners[2] is None  # both hold their one Messenger conversation


def test_language_matching_prefers_speakers_and_falls_back_to_anyone(app, client, world, token_for, jobs_done):
    _route(client, token_for(world.admin), world)
    _availability(client, token_for(world.supervisor), "offline")
    _put_policy(client, token_for(world.supervisor), world.team_id, mode="round_robin", match_language=True)
    agent2 = world.agent_ids[world.agent2]
    routing = client.put(f"/api/v1/agents/{agent2}/routing", json={"languages": ["fr-FR"]},
                         headers=bearer(token_for(world.agent2)))
    assert routing.status_code == 200 and routing.get_json()["all_languages"] == ["fr"]
    assert client.put(f"/api/v1/agents/{agent2}/routing", json={"languages": ["fr"]},
                      headers=bearer(token_for(world.agent))).status_code == 403
    _message(client, "lang-fr-1", "Bonjour, je n'ai pas reçu ma commande")
    jobs_done()
    _message(client, "lang-fr-2", "Merci de me répondre vite")
    jobs_done()
    _message(client, "lang-en", "Hello, I did not get my order")
    jobs_done()
    assert _assignee(app, "lang-fr-1") == agent2 and _assignee(app, "lang-fr-2") == agent2
    assert _assignee(app, "lang-en") == world.agent_ids[world.agent]
    detail = client.get(f"/api/v1/conversations/{_conversation_of(app, 'lang-en').id}",
                        headers=bearer(token_for(world.agent))).get_json()
    assert detail["language"] == "en"


def test_backlog_pickup_urgent_first_then_longest_waiting_up_to_capacity(app, client, world, token_for, jobs_done):
    _route(client, token_for(world.admin), world)
    for email in (world.supervisor, world.agent, world.agent2):
        _availability(client, token_for(email), "offline")
    _put_policy(client, token_for(world.supervisor), world.team_id, mode="round_robin")
    _message(client, "bl-old", "first", ago_s=600)
    _message(client, "bl-mid", "second", ago_s=300)
    _message(client, "bl-new", "third", ago_s=60)
    jobs_done()
    admin = token_for(world.admin)
    urgent = _conversation_of(app, "bl-new").id
    assert client.patch(f"/api/v1/conversations/{urgent}", json={"priority": "urgent"},
                        headers=bearer(admin)).status_code == 200
    assert all(_assignee(app, p) is None for p in ("bl-old", "bl-mid", "bl-new"))
    me = world.agent_ids[world.agent]
    _set_capacity(app, me, 2)
    token = token_for(world.agent)
    _availability(client, token, "online")
    wait_until(lambda: _assignee(app, "bl-new") == me and _assignee(app, "bl-old") == me)
    jobs_done()
    assert _assignee(app, "bl-mid") is None
    resolved = client.post(f"/api/v1/conversations/{urgent}/resolve", json={}, headers=bearer(token))
    assert resolved.status_code == 200 and resolved.get_json()["status"] == "resolved"
    wait_until(lambda: _assignee(app, "bl-mid") == me)


def test_an_agent_who_lets_go_is_not_given_it_back(app, client, world, token_for, jobs_done):
    _route(client, token_for(world.admin), world)
    for email in (world.supervisor, world.agent2):
        _availability(client, token_for(email), "offline")
    _put_policy(client, token_for(world.supervisor), world.team_id, mode="round_robin")
    _message(client, "let-go", "hello")
    jobs_done()
    me = world.agent_ids[world.agent]
    conversation_id = _conversation_of(app, "let-go").id
    assert _assignee(app, "let-go") == me
    token = token_for(world.agent)
    assert client.patch(f"/api/v1/conversations/{conversation_id}", json={"assignee_id": None},
                        headers=bearer(token)).status_code == 200
    jobs_done()
    time.sleep(0.7)  # a reconciler sweep ran meanwhile
    assert _assignee(app, "let-go") is None
    _availability(client, token_for(world.agent2), "online")
    wait_until(lambda: _assignee(app, "let-go") == world.agent_ids[world.agent2])


def test_unassign_after_offline_gives_the_conversation_to_someone_online(app, client, world, token_for,
                                                                         jobs_done):
    _route(client, token_for(world.admin), world)
    for email in (world.supervisor, world.agent2):
        _availability(client, token_for(email), "offline")
    _put_policy(client, token_for(world.supervisor), world.team_id, mode="round_robin",
                unassign_after_offline_minutes=10)
    _message(client, "gone", "hello")
    jobs_done()
    me, other = world.agent_ids[world.agent], world.agent_ids[world.agent2]
    assert _assignee(app, "gone") == me
    _availability(client, token_for(world.agent), "offline")
    _availability(client, token_for(world.agent2), "online")
    jobs_done()
    assert _assignee(app, "gone") == me  # not offline long enough yet
    with app.app_context():
        db.session.execute(update(AgentState).where(AgentState.agent_id == me)
                           .values(offline_since=utcnow() - timedelta(minutes=11)))
        db.session.commit()
        assignment.reconcile_assignment()
    wait_until(lambda: _assignee(app, "gone") == other)
    with app.app_context():
        texts = db.session.execute(select(Message.text).where(
            Message.conversation_id == _conversation_of(app, "gone").id, Message.kind == "activity")).scalars().all()
    assert any("offline for more than 10 min" in t for t in texts)


def test_auto_assignment_and_claims_racing_give_one_owner(app, client, world, token_for, jobs_done):
    for email in (world.supervisor,):
        _availability(client, token_for(email), "offline")
    _route(client, token_for(world.admin), world)
    _message(client, "race", "who takes me?")
    jobs_done()
    conversation_id = _conversation_of(app, "race").id
    tokens = [token_for(world.agent), token_for(world.agent2)]
    with app.app_context():
        db.session.add(assignment.AssignmentPolicy(team_id=world.team_id, mode="round_robin",
                                                   capacity_by_channel_kind={}, match_language=False))
        db.session.commit()
    start = threading.Barrier(6)
    claims: list[tuple[int, int | None]] = []
    sweeps: list[int] = []

    def claim(token):
        start.wait()
        response = app.test_client().post(f"/api/v1/conversations/{conversation_id}/claim", headers=bearer(token))
        body = response.get_json()
        winner = body.get("assignee", {}).get("id") if response.status_code == 200 else None
        claims.append((response.status_code, winner))

    def sweep():
        start.wait()
        with app.app_context():
            with db.transaction() as session:
                sweeps.append(assignment.assign_waiting(session, world.team_id))

    threads = [threading.Thread(target=claim, args=(t,)) for t in tokens * 2] + \
              [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs_done()
    owner = _assignee(app, "race")
    assert owner in (world.agent_ids[world.agent], world.agent_ids[world.agent2])
    assert all(holder == owner for status, holder in claims if status == 200)
    assert all(status in (200, 409) for status, _ in claims)
    assert sum(sweeps) <= 1
    with app.app_context():
        owners = {m.extra["activity"].get("assignee_id") or m.author_agent_id for m in db.session.execute(
            select(Message).where(Message.conversation_id == conversation_id, Message.kind == "activity"))
            .scalars()}
    assert owners == {owner}


def test_capacity_holds_under_concurrent_sweeps(app, client, world, token_for, jobs_done):
    for email in (world.supervisor, world.agent2, world.agent):
        _availability(client, token_for(email), "offline")
    _route(client, token_for(world.admin), world)
    for i in range(8):
        _message(client, f"cap-{i}", "hello", ago_s=100 - i)
    jobs_done()
    me = world.agent_ids[world.agent]
    with app.app_context():
        db.session.add(assignment.AssignmentPolicy(team_id=world.team_id, mode="least_loaded",
                                                   capacity_by_channel_kind={}, match_language=False))
        db.session.execute(update(Agent).where(Agent.id == me).values(availability="online", capacity=3))
        db.session.commit()
    start = threading.Barrier(6)

    def sweep():
        start.wait()
        with app.app_context():
            with db.transaction() as session:
                assignment.assign_waiting(session, world.team_id)

    threads = [threading.Thread(target=sweep) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs_done()
    time.sleep(0.6)  # and the reconciler's own sweep
    with app.app_context():
        held = db.session.scalar(select(func.count()).select_from(Conversation)
                                 .where(Conversation.assignee_id == me, Conversation.status == "open"))
    assert held == 3


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setattr(presence, "DISCONNECT_GRACE", timedelta(seconds=0.3))


def _availability_of(app, agent_id):
    with app.app_context():
        db.session.expire_all()
        return db.session.get(Agent, agent_id).availability


def _connections(app, agent_id):
    with app.app_context():
        state = db.session.get(AgentState, agent_id)
        return state.connections if state else 0


def _connect(live_server, token):
    sio = socketio.Client(reconnection=False)
    sio.connect(live_server, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    return sio


def test_presence_follows_sockets_and_keeps_what_the_agent_chose(app, live_server, client, world, token_for,
                                                                 short_grace):
    token, me = token_for(world.agent), world.agent_ids[world.agent]
    first, second = _connect(live_server, token), _connect(live_server, token)
    wait_until(lambda: _connections(app, me) == 2)
    first.disconnect()
    time.sleep(0.8)
    assert _availability_of(app, me) == "online"  # one socket left
    second.disconnect()
    wait_until(lambda: _availability_of(app, me) == "offline")
    again = _connect(live_server, token)
    wait_until(lambda: _availability_of(app, me) == "online")
    _availability(client, token, "busy")
    again.disconnect()
    wait_until(lambda: _availability_of(app, me) == "offline")
    busy_again = _connect(live_server, token)
    wait_until(lambda: _availability_of(app, me) == "busy")  # never overridden with online
    _availability(client, token, "offline")
    busy_again.disconnect()
    time.sleep(0.2)
    chosen_offline = _connect(live_server, token)
    time.sleep(0.5)
    assert _availability_of(app, me) == "offline"  # chose offline: connecting does not change it
    chosen_offline.disconnect()


def test_agents_disconnected_together_share_one_presence_check(app, world, short_grace, background_held,
                                                                monkeypatch):
    """A web process restarting drops every agent's socket at once: the agents gone within a second share ONE
    check after the grace period (it was a job per agent: 500 jobs in a burst on the worker that drains webhooks).
    Who came back within the grace stays online; who did not goes offline. The reconciler is held off: its
    `expire` would take the agent offline itself."""
    # sockets of earlier tests still closing on the live server would gather checks of their own in this test's
    # windows (agent ids repeat from one test database to the next): they are forgotten first
    monkeypatch.setattr(presence, "_sockets", {})
    checked = []

    # the checks this test's disconnects schedule, and only those: an earlier test's check, scheduled with the
    # normal grace, may still fire meanwhile (for the same agent ids), and it runs the task it was given then
    @tasks.task
    def counting_check_presence(agent_ids):
        checked.append(sorted([agent_ids] if isinstance(agent_ids, int) else agent_ids))
        return presence.check(agent_ids)

    monkeypatch.setattr(tasks, "check_presence", counting_check_presence)
    one, two = world.agent_ids[world.agent], world.agent_ids[world.agent2]

    def connect(agent_id, sid):
        with app.app_context():
            presence.socket_connected(db.session, db.session.get(Agent, agent_id), sid)
            db.session.commit()

    connect(one, "sid-one")
    connect(two, "sid-two")
    with app.app_context():  # the web process goes away: both sockets close together
        presence.socket_disconnected("sid-one")
        presence.socket_disconnected("sid-two")
    connect(two, "sid-two-again")  # the second agent comes back within the grace
    wait_until(lambda: _availability_of(app, one) == "offline", timeout=5)
    time.sleep(0.3)
    assert checked == [sorted([one, two])]
    assert _availability_of(app, two) == "online" and _connections(app, two) == 1
    with app.app_context():
        presence.socket_disconnected("sid-two-again")
    wait_until(lambda: _availability_of(app, two) == "offline", timeout=5)
    assert checked[1:] == [[two]]


def _last_seen(app, agent_id):
    with app.app_context():
        return db.session.get(Agent, agent_id, populate_existing=True).last_seen_at


def test_heartbeat_updates_last_seen(app, live_server, world, token_for):
    me = world.agent_ids[world.agent]
    sio = _connect(live_server, token_for(world.agent))
    try:
        wait_until(lambda: _last_seen(app, me) is not None)
        with app.app_context():
            db.session.execute(update(Agent).where(Agent.id == me)
                               .values(last_seen_at=utcnow() - timedelta(minutes=3)))
            db.session.commit()
        sio.emit("heartbeat", {})
        wait_until(lambda: _last_seen(app, me) > utcnow() - timedelta(seconds=30))
    finally:
        sio.disconnect()


def test_silent_agents_go_offline_after_the_heartbeat_timeout(app, world, background_held):
    """The reconciler's loop is held off: it would take the silent agent offline itself, and expire() find 0."""
    me = world.agent_ids[world.agent]
    with app.app_context():
        db.session.add(AgentState(agent_id=me, connections=1, languages=[]))
        db.session.execute(update(Agent).where(Agent.id == me)
                           .values(last_seen_at=utcnow() - presence.HEARTBEAT_TIMEOUT - timedelta(seconds=5)))
        db.session.commit()
        assert presence.expire() == 1
        db.session.expire_all()
        state = db.session.get(AgentState, me)
        assert db.session.get(Agent, me).availability == "offline"
        assert state.connections == 0 and state.restore_availability == "online" and state.offline_since
