"""A socket's rooms and the conversations it may watch come from ONE statement (`access.socket_access`) at
connect, on `resume` and when an access change re-checks its sockets, with the same answer as `rooms_for` +
`visible_conversation_ids` (three SELECTs): its teams' brands, everything for an admin, a missing conversation for
nobody. Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

from inbox.db import db
from inbox.models import Agent
from inbox.services import access
from tests.helpers import selects
from tests.integration.test_watch_queries import MISSING, conversations  # noqa: F401  (a fixture)
from tests.procs import LiveEvents


def test_the_same_rooms_and_conversations_as_before_in_one_select(app, world, conversations,  # noqa: F811
                                                                    statements) -> None:
    ours, theirs = conversations
    with app.app_context():
        for email in (world.agent, world.supervisor, world.outsider, world.admin):
            agent = db.session.get(Agent, world.agent_ids[email])
            for ids in ([*ours, *theirs, MISSING], [], [MISSING], theirs):
                expected = (access.rooms_for(db.session, agent),
                            access.visible_conversation_ids(db.session, agent, ids))
                statements.clear()
                assert access.socket_access(db.session, agent, ids) == expected, (email, ids)
                assert selects(statements) == 1, statements
        outsider = db.session.get(Agent, world.agent_ids[world.outsider])
        rooms, visible = access.socket_access(db.session, outsider, [*ours, *theirs])
        assert visible == set(theirs) and f"brand:{world.other_brand_id}" in rooms
        assert f"brand:{world.brand_id}" not in rooms
        admin = db.session.get(Agent, world.agent_ids[world.admin])
        assert access.socket_access(db.session, admin, [*ours, *theirs, MISSING]) == (
            [f"agent:{admin.id}", "admins"], set(ours) | set(theirs))
        db.session.remove()


def test_a_connect_that_watches_asks_for_its_access_once(app, live_server, world, token_for, background_held,
                                                         conversations, all_statements) -> None:  # noqa: F811
    """At connect, the brands the agent serves are read once (they were read twice, by rooms_for and by
    visible_conversation_ids), the rooms and the watched conversations are what the agent may see."""
    ours, theirs = conversations
    socket = LiveEvents()
    all_statements.clear()
    socket.connect(live_server, auth={"token": token_for(world.agent), "watch": [*ours, *theirs, MISSING]})
    try:
        session_event = socket.wait_for(lambda n, _d: n == "session", 5, "session")[1]
        assert session_event["watching"] == sorted(ours)
        assert session_event["rooms"] == [f"agent:{world.agent_ids[world.agent]}", f"brand:{world.brand_id}"]
        brand_reads = [s for s in all_statements if "team_brands" in s]
        assert len(brand_reads) == 1, brand_reads
    finally:
        socket.disconnect()
