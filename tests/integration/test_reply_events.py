"""The live events an agent's reply, note or "send again" publishes are built from the rows (as the drain's are),
not by marshmallow: the same JSON as the API's schemas, in the same transaction. Runs on SQLite, and on
PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from inbox import realtime
from inbox.api.schemas import ConversationSchema, MessageSchema
from inbox.background import BACKGROUND_LOCK
from inbox.db import db
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import Agent, Conversation, Message
from inbox.realtime.wire import expand_conversation
from inbox.services import replies
from tests.factories import PAGE_ID
from tests.helpers import post_meta


def _without_clock_seconds(data: dict[str, Any]) -> dict[str, Any]:
    """SLA clocks' seconds left are computed from "now" at each dump."""
    return {**data, "sla": [{k: v for k, v in clock.items() if not k.endswith("seconds_left")}
                            for clock in data.get("sla", [])]}


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    original = realtime.publish

    def capture(session: Any, name: str, data: Any, rooms: Any, **kwargs: Any) -> Any:
        seen.append((name, dict(data)))
        return original(session, name, data, rooms, **kwargs)

    monkeypatch.setattr(realtime, "publish", capture)
    return seen


def test_a_reply_a_note_and_a_send_again_publish_the_schemas_json(app, client, world, jobs_done, published):
    post_meta(client, messenger_message_payload(PAGE_ID, "events-psid", "Bonjour, ma commande ?"))
    jobs_done()
    with BACKGROUND_LOCK, app.app_context():  # no send job or reconciler in the middle
        session = db.session
        agent = session.execute(select(Agent).where(Agent.email == world.agent)).scalar_one()
        conversation_id = session.execute(select(Conversation.id)).scalar_one()
        published.clear()

        reply = replies.create_reply(session, agent, conversation_id, text="On regarde", kind="reply")
        conversation = session.get(Conversation, conversation_id)
        events = dict(published)
        assert events["message.created"] == MessageSchema().dump(reply)
        assert _without_clock_seconds(expand_conversation(events["conversation.updated"])) == \
            _without_clock_seconds(ConversationSchema().dump(conversation))
        assert events["conversation.updated"]["assignee"]["id"] == agent.id  # the reply assigned it

        published.clear()
        note = replies.create_reply(session, agent, conversation_id, text="client VIP", kind="note")
        assert dict(published)["message.created"] == MessageSchema().dump(note)

        reply.delivery_status = "failed"
        session.flush()
        published.clear()
        again = replies.retry_message(session, agent, reply.id)
        assert dict(published)["message.updated"] == MessageSchema().dump(again)
        assert again.delivery_status == "queued"
        session.rollback()  # nothing of this test is sent
        assert session.get(Message, reply.id) is None
        db.session.remove()
