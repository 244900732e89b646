"""An open socket follows its agent's access as it changes: removed from a team, the agent's socket leaves the
brand's room at once (no more of its events); added back, it joins again; deactivated, signed out everywhere
or with its token revoked, the socket is closed. Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql.
"""
from __future__ import annotations

from inbox.demo.fake_meta import messenger_message_payload
from tests.factories import PAGE_ID
from tests.helpers import bearer, post_meta, wait_until
from tests.procs import LiveEvents


def _texts(events: LiveEvents) -> set[str]:
    """Every message text this socket learnt of: thread events, and the queue's last-message previews."""
    texts = {d["data"].get("text") for d in events.named("message.created")}
    return texts | {(d["data"].get("last_message") or {}).get("text") for n, d in events.events
                    if n.startswith("conversation.")}


def _send(client, text: str, psid: str) -> None:
    assert post_meta(client, messenger_message_payload(PAGE_ID, psid, text, mid=f"m-{psid}")).status_code == 200


def test_a_socket_leaves_and_rejoins_the_brand_room_as_team_membership_changes(app, live_server, world, token_for,
                                                                             client) -> None:
    admin = bearer(token_for(world.admin))
    me = world.agent_ids[world.agent]
    watched = LiveEvents().connect(live_server, auth={"token": token_for(world.agent)})
    witness = LiveEvents().connect(live_server, auth={"token": token_for(world.agent2)})  # stays in the team
    try:
        watched.wait_for(lambda n, d: n == "session", 5, "the first session event")
        _send(client, "before", "psid-open")
        _, listed = watched.wait_for(lambda n, d: n == "conversation.created", 10, "the conversation")
        conversation_id = listed["data"]["id"]
        for socket in (watched, witness):  # both have it open
            assert socket.sio.call("watch", {"conversation_ids": [conversation_id]}, timeout=5) == {
                "watching": [conversation_id]}

        assert client.patch(f"/api/v1/agents/{me}", json={"team_ids": []}, headers=admin).status_code == 200
        _, session = watched.wait_for(lambda n, d: n == "session" and f"brand:{world.brand_id}" not in d["rooms"],
                                      5, "a session event without the brand")
        assert session["rooms"] == [f"agent:{me}"]

        # the open conversation too: its thread events stop with the access
        assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-open", "while out of the team",
                                                           mid="m-out")).status_code == 200
        _send(client, "new while out of the team", "psid-out")
        witness.wait_for(lambda n, d: n == "message.created" and d["data"]["text"] == "while out of the team", 10,
                         "the teammate still gets the open conversation's message")
        witness.wait_for(lambda n, d: n == "conversation.created" and d["data"]["last_message"]["text"] ==
                         "new while out of the team", 10, "the teammate still gets the brand's new conversation")
        assert not {"while out of the team", "new while out of the team"} & _texts(watched)

        assert client.patch(f"/api/v1/agents/{me}", json={"team_ids": [world.team_id]},
                            headers=admin).status_code == 200
        watched.wait_for(lambda n, d: n == "session" and f"brand:{world.brand_id}" in d["rooms"], 5,
                         "a session event with the brand again")
        _send(client, "back in the team", "psid-back")
        watched.wait_for(lambda n, d: n == "conversation.created" and d["data"]["last_message"]["text"] ==
                         "back in the team", 10, "the brand's conversations again")
        # the console opens its conversation again (it refetches on a rooms change), and may
        assert watched.sio.call("watch", {"conversation_ids": [conversation_id]}, timeout=5) == {
            "watching": [conversation_id]}
        assert watched.sio.connected
    finally:
        watched.disconnect()
        witness.disconnect()


def test_deleting_the_team_takes_its_brand_away_from_open_sockets(app, live_server, world, token_for,
                                                                 client) -> None:
    admin = bearer(token_for(world.admin))
    watched = LiveEvents().connect(live_server, auth={"token": token_for(world.agent)})
    try:
        watched.wait_for(lambda n, d: n == "session", 5, "the first session event")
        assert client.delete(f"/api/v1/teams/{world.team_id}", headers=admin).status_code == 204
        watched.wait_for(lambda n, d: n == "session" and f"brand:{world.brand_id}" not in d["rooms"], 5,
                         "the brand's room is left when the team goes")
    finally:
        watched.disconnect()


def test_deactivation_and_token_revocation_close_open_sockets(app, live_server, world, token_for, client) -> None:
    admin = bearer(token_for(world.admin))
    deactivated = LiveEvents().connect(live_server, auth={"token": token_for(world.agent2)})
    own_token = token_for(world.agent)
    revoked = LiveEvents().connect(live_server, auth={"token": own_token})
    kept = LiveEvents().connect(live_server, auth={"token": token_for(world.agent)})  # another token of the agent
    try:
        for events in (deactivated, revoked, kept):
            events.wait_for(lambda n, d: n == "session", 5, "connected")
        agent2 = world.agent_ids[world.agent2]
        assert client.patch(f"/api/v1/agents/{agent2}", json={"is_active": False}, headers=admin).status_code == 200
        wait_until(lambda: not deactivated.sio.connected, timeout=5)

        listed = client.get("/api/v1/auth/tokens", headers=bearer(own_token))
        tokens = listed.get_json()
        assert listed.status_code == 200, tokens
        token_id = next(t["id"] for t in tokens if own_token.startswith(t["prefix"]))
        assert client.delete(f"/api/v1/auth/tokens/{token_id}", headers=bearer(own_token)).status_code == 204
        wait_until(lambda: not revoked.sio.connected, timeout=5)
        assert kept.sio.connected  # only the sockets of that token
    finally:
        for events in (deactivated, revoked, kept):
            events.disconnect()
