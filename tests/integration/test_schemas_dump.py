"""The JSON of a conversation and of a message, field by field: the API contract the console relies on. Any
optimisation of the schemas must keep these dicts (and their key order) exactly."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, select

from inbox.api.conversations import ConversationPageSchema, MessagePageSchema
from inbox.api.schemas import ConversationSchema, MessageSchema
from inbox.db import db
from inbox.models import Contact, Conversation, ConversationLabel, Message, SlaClock
from inbox.models.assignment import ConversationLink
from inbox.models.conversation import Post
from inbox.services import sla

T0 = datetime(2025, 3, 10, 14, 30, 5, 123456, tzinfo=timezone.utc)


# the app's reconciler wakes snoozed conversations by the wall clock, and these are snoozed until 2025 (a clean-clone
# CI run saw one woken between its commit and its dump)
pytestmark = pytest.mark.usefixtures("background_held")


def _conversation(world: Any, i: int = 0, *, post: bool = True, assigned: bool = True) -> Conversation:
    contact = Contact(name="Zoé Lambert", handle=None if i else "zoe.l", avatar_url="https://cdn.test/z.png")
    db.session.add(contact)
    db.session.flush()
    post_row = None
    if post:
        post_row = Post(channel_id=world.page_channel_id, external_id=f"{i}_77", text="Nouvelle collection",
                        permalink=None)
        db.session.add(post_row)
        db.session.flush()
    conversation = Conversation(
        kind="comment" if post else "dm", status="snoozed", snoozed_until=T0 + timedelta(days=2), priority=3,
        brand_id=world.brand_id, channel_id=world.page_channel_id, contact_id=contact.id, team_id=world.team_id,
        assignee_id=world.agent_ids[world.agent] if assigned else None, thread_key=f"schema-{i}",
        post_id=post_row.id if post_row else None, first_inbound_at=T0, last_inbound_at=T0 + timedelta(minutes=1),
        last_outbound_at=T0 + timedelta(minutes=2), last_message_at=T0 + timedelta(minutes=2), waiting_since=None,
        last_message_preview="Merci !", last_message_direction="out", resolved_at=None, language="fr", extra={},
        created_at=T0, updated_at=T0 + timedelta(minutes=2))
    db.session.add(conversation)
    db.session.flush()
    conversation.label_rows = [ConversationLabel(label="vip"), ConversationLabel(label="livraison")]
    db.session.add_all([
        SlaClock(conversation_id=conversation.id, metric="first_response", cycle=1, turn=1, is_current=True,
                 state="met", target_seconds=3600.0, started_at=T0, due_at=T0 + timedelta(hours=1),
                 warning_at=T0 + timedelta(minutes=48), stopped_at=T0 + timedelta(minutes=2), evaluated_at=T0),
        SlaClock(conversation_id=conversation.id, metric="resolution", cycle=1, turn=1, is_current=True,
                 state="paused", target_seconds=86400.0, started_at=T0, elapsed_seconds=120.5, evaluated_at=T0),
        SlaClock(conversation_id=conversation.id, metric="next_response", cycle=1, turn=0, is_current=False,
                 state="met", target_seconds=60.0, started_at=T0, evaluated_at=T0),
    ])
    db.session.flush()
    return conversation


def _expected(world: Any, conversation: Conversation, linked: list[int]) -> dict[str, Any]:
    return {
        "id": conversation.id, "kind": "comment", "status": "snoozed", "priority": "urgent",
        "snoozed_until": "2025-03-12T14:30:05.123456+00:00", "labels": ["livraison", "vip"],
        "brand": {"id": world.brand_id, "name": "Maison Lune"},
        "channel": {"id": world.page_channel_id, "name": "Maison Lune FB", "kind": "facebook_page"},
        "team_id": world.team_id, "team": {"id": world.team_id, "name": "Community"},
        "assignee": {"id": world.agent_ids[world.agent], "name": "Agent"},
        "contact": {"id": conversation.contact_id, "name": "Zoé Lambert", "handle": "zoe.l",
                    "avatar_url": "https://cdn.test/z.png"},
        "post": {"id": conversation.post_id, "external_id": "0_77", "text": "Nouvelle collection", "permalink": None},
        "last_message": {"text": "Merci !", "direction": "out", "at": "2025-03-10T14:32:05.123456+00:00"},
        "last_inbound_at": "2025-03-10T14:31:05.123456+00:00",
        "last_outbound_at": "2025-03-10T14:32:05.123456+00:00",
        "last_message_at": "2025-03-10T14:32:05.123456+00:00",
        "waiting_since": None, "resolved_at": None,
        "created_at": "2025-03-10T14:30:05.123456+00:00", "updated_at": "2025-03-10T14:32:05.123456+00:00",
        "reply_window": {"open": True, "mode": "standard", "closes_at": None, "human_agent_until": None},
        "sla": [
            {"metric": "first_response", "state": "met", "cycle": 1, "turn": 1,
             "due_at": "2025-03-10T15:30:05.123456+00:00", "warning_at": "2025-03-10T15:18:05.123456+00:00",
             "started_at": "2025-03-10T14:30:05.123456+00:00", "stopped_at": "2025-03-10T14:32:05.123456+00:00",
             "business_seconds_left": None, "calendar_seconds_left": None},
            {"metric": "resolution", "state": "paused", "cycle": 1, "turn": 1, "due_at": None, "warning_at": None,
             "started_at": "2025-03-10T14:30:05.123456+00:00", "stopped_at": None,
             "business_seconds_left": 86279.5, "calendar_seconds_left": None},
        ],
        "language": "fr", "linked_conversation_ids": linked,
    }


def test_conversation_json_field_by_field(app, world):
    with app.app_context():
        conversation = _conversation(world)
        other = _conversation(world, 1, post=False, assigned=False)
        db.session.add_all([ConversationLink(conversation_id=conversation.id, linked_id=other.id, created_at=T0),
                            ConversationLink(conversation_id=other.id, linked_id=conversation.id, created_at=T0)])
        db.session.commit()
        db.session.expire_all()
        conversation = db.session.get(Conversation, conversation.id)
        expected = _expected(world, conversation, [other.id])
        dumped = ConversationSchema().dump(conversation)
        assert dumped == expected
        assert list(dumped) == list(expected)  # key order too
        # the same through every path that dumps conversations: a page, a collection, explicit links
        page = ConversationPageSchema().dump({"items": [conversation, other], "next_cursor": None,
                                              "counts": {"mine": 1, "unassigned": 1, "all": 2}})
        assert page["items"][0] == expected and page["counts"] == {"mine": 1, "unassigned": 1, "all": 2}
        assert page["items"][1]["linked_conversation_ids"] == [conversation.id]
        assert page["items"][1]["post"] is None and page["items"][1]["assignee"] is None
        assert page["items"][1]["contact"]["handle"] is None
        assert page["items"][1]["reply_window"] == {"open": False, "mode": "closed",
                                                    "closes_at": "2025-03-11T14:31:05.123456+00:00",
                                                    "human_agent_until": "2025-03-17T14:31:05.123456+00:00"}
        assert ConversationSchema(many=True).dump([conversation])[0] == expected
        assert ConversationSchema(links={conversation.id: [42]}).dump(conversation)["linked_conversation_ids"] == [42]
        shared = ConversationSchema()
        assert shared.dump(conversation) == shared.dump(conversation) == expected  # no state kept between dumps


def test_message_json_field_by_field(app, world):
    with app.app_context():
        conversation = _conversation(world)
        message = Message(conversation_id=conversation.id, channel_id=world.page_channel_id, direction="out",
                          kind="reply", reply_type="public", author_type="agent",
                          author_agent_id=world.agent_ids[world.agent], author_name="Agent", text="Bonjour 👋",
                          external_id="m_1", attachments=[{"type": "image", "url": "https://x/1.png", "size": 3},
                                                          {"type": "file"}],
                          platform_time=T0, received_at=T0 + timedelta(seconds=1), delivery_status="failed",
                          delivery_error="rate limited", edited_at=T0 + timedelta(minutes=5),
                          deleted_at=None, hidden=True, liked=False,
                          extra={"tag": "HUMAN_AGENT", "activity": {"type": "x"}, "secret": 1})
        db.session.add(message)
        db.session.commit()
        dumped = MessageSchema().dump(db.session.get(Message, message.id))
        expected = {
            "id": message.id, "conversation_id": conversation.id, "direction": "out", "kind": "reply",
            "reply_type": "public", "text": "Bonjour 👋",
            "attachments": [{"type": "image", "url": "https://x/1.png"}, {"type": "file", "url": None}],
            "author": {"type": "agent", "id": world.agent_ids[world.agent], "name": "Agent"},
            "platform_time": "2025-03-10T14:30:05.123456+00:00", "received_at": "2025-03-10T14:30:06.123456+00:00",
            "delivery_status": "failed", "delivery_error": "rate limited", "external_id": "m_1", "edited": True,
            "edited_at": "2025-03-10T14:35:05.123456+00:00", "deleted": False, "hidden": True, "liked": False,
            "reply_to_id": None, "extra": {"tag": "HUMAN_AGENT", "activity": {"type": "x"}},
        }
        assert dumped == expected and list(dumped) == list(expected)
        page = MessagePageSchema().dump({"items": [message], "next_cursor": "abc"})
        assert page == {"items": [expected], "next_cursor": "abc"}


def test_page_dump_loads_links_once_for_the_page(app, world, caches_held):
    """ConversationPageSchema (the API's, the contacts' and the benchmark's dump) never queries per row. The live
    SLA policies (the clocks' calendars) and the team names are cached per process for a few seconds: read here
    first and kept for the test (`caches_held`), or a slow box (a clean-clone CI run) let the cache expire between
    the two dumps and counted one SELECT more for the second ({1: 1, 6: 2}), which has nothing to do with the
    page's size."""
    from inbox.services import team_names

    with app.app_context():
        rows = [_conversation(world, i) for i in range(6)]
        db.session.commit()
        sla.active_policies(db.session)
        team_names.team_ref(db.session, world.team_id)
        ids = [c.id for c in rows]
        seen: list[str] = []
        me = threading.get_ident()  # background jobs of the app do not count

        def _count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            if threading.get_ident() == me:
                seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", _count)
        try:
            counts = {}
            for size in (1, 6):
                db.session.expire_all()
                items = list(db.session.execute(select(Conversation).where(Conversation.id.in_(ids[:size]))
                                                .order_by(Conversation.id)).scalars())
                for c in items:  # what list_conversations loads with the page
                    (c.brand, c.channel, c.contact, c.assignee, c.post, c.current_sla_clocks)
                seen.clear()
                ConversationPageSchema().dump({"items": items, "next_cursor": None})
                counts[size] = len([s for s in seen if s.lstrip().upper().startswith("SELECT")])
        finally:
            event.remove(db.engine, "before_cursor_execute", _count)
        assert counts[1] == counts[6] <= 2, counts
