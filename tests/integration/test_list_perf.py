"""The queue page and the message page cost a constant number of SQL statements, whatever the page size (no
per-row lazy loads: contact, assignee, brand, channel, post, labels, SLA clocks and links come in a few
statements for the whole page), and the page JSON is exactly the JSON of each conversation dumped alone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from inbox.db import db
from inbox.models import Contact, Conversation, ConversationLabel, Message, SlaClock
from inbox.models.assignment import ConversationLink
from inbox.models.conversation import Post
from tests.helpers import bearer, selects

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _populate(world: Any, n: int) -> list[int]:
    """n open conversations of brand 1 with everything the JSON shows: half comments under posts, some assigned,
    labels, a current SLA clock, links between neighbours, a few messages each."""
    agent_ids = [world.agent_ids[world.agent], world.agent_ids[world.agent2]]
    ids: list[int] = []
    for i in range(n):
        contact = Contact(name=f"Client {i}", handle=f"client{i}", avatar_url=f"https://cdn.test/{i}.png")
        db.session.add(contact)
        db.session.flush()
        post = None
        if i % 2:
            post = Post(channel_id=world.page_channel_id, external_id=f"{i}_post", text=f"Post {i}",
                        permalink=f"https://fb.test/{i}")
            db.session.add(post)
            db.session.flush()
        at = T0 + timedelta(minutes=i)
        conversation = Conversation(
            kind="comment" if post else "dm", status="open", brand_id=world.brand_id,
            channel_id=world.page_channel_id if i % 3 else world.api_channel_id, contact_id=contact.id,
            team_id=world.team_id, assignee_id=agent_ids[i % 2] if i % 4 == 1 else None, thread_key=f"perf-{i}",
            post_id=post.id if post else None, first_inbound_at=at, last_inbound_at=at, last_message_at=at,
            waiting_since=at, last_message_preview=f"hello {i}", last_message_direction="in",
            priority=i % 4, language="fr" if i % 2 else None, extra={}, created_at=at, updated_at=at)
        db.session.add(conversation)
        db.session.flush()
        ids.append(conversation.id)
        conversation.label_rows = [ConversationLabel(label=f"l{i % 3}"), ConversationLabel(label="vip")]
        db.session.add(SlaClock(conversation_id=conversation.id, metric="first_response", cycle=1, turn=1,
                                is_current=True, state="paused", target_seconds=3600.0, started_at=at,
                                elapsed_seconds=600.0, evaluated_at=at))
        for k in range(3):
            db.session.add(Message(conversation_id=conversation.id, channel_id=conversation.channel_id,
                                   direction="in", kind="comment" if post else "dm", author_type="contact",
                                   author_contact_id=contact.id, author_name=contact.name,
                                   external_id=f"perf-{i}-{k}", text=f"message {k}", platform_time=at,
                                   received_at=at, attachments=[{"type": "image", "url": "https://x/1.png"}],
                                   extra={"tag": "HUMAN_AGENT", "internal": 1}, hidden=bool(k % 2)))
    for a, b in zip(ids, ids[1:]):
        db.session.add_all([ConversationLink(conversation_id=a, linked_id=b, created_at=T0),
                            ConversationLink(conversation_id=b, linked_id=a, created_at=T0)])
    db.session.commit()
    return ids


@pytest.mark.parametrize("query", [{}, {"sort": "newest"}, {"sort": "sla_due"}, {"assignee": "none"},
                                   {"counts": "false"}])
def test_page_statements_do_not_depend_on_page_size(app, client, world, token_for, statements, query):
    with app.app_context():
        _populate(world, 14)
    token = token_for(world.agent)
    counts, shown = {}, {}
    for limit in (2, 9):  # within one run of the waiting sort (its second run, not waiting, is one more page query)
        client.get("/api/v1/conversations", query_string={**query, "limit": limit}, headers=bearer(token))  # warm
        # the fewest of three requests: a per-process cache expiring in between (SLA policies, channels) adds one
        # statement to one request; a per-row load would add one per conversation to every request
        for _ in range(3):
            statements.clear()
            response = client.get("/api/v1/conversations", query_string={**query, "limit": limit},
                                  headers=bearer(token))
            assert response.status_code == 200
            assert len(response.get_json()["items"]) == limit
            if limit not in counts or selects(statements) < counts[limit]:
                counts[limit] = selects(statements)
                shown[limit] = [" ".join(s.split())[:160] for s in statements]
    assert counts[2] == counts[9], (counts, shown)
    assert counts[9] <= 10, (counts, shown)  # auth, access, the page, labels, SLA clocks, links (+ counts)


def test_message_page_statements_do_not_depend_on_page_size(app, client, world, token_for, statements):
    with app.app_context():
        ids = _populate(world, 2)
        for k in range(20):
            db.session.add(Message(conversation_id=ids[0], channel_id=world.page_channel_id, direction="out",
                                   kind="reply", author_type="agent", author_agent_id=world.agent_ids[world.agent],
                                   author_name="Agent", text=f"reply {k}", platform_time=T0 + timedelta(seconds=k),
                                   received_at=T0, attachments=[], extra={}))
        db.session.commit()
    token = token_for(world.agent)
    counts = {}
    for limit in (2, 20):
        url = f"/api/v1/conversations/{ids[0]}/messages"
        client.get(url, query_string={"limit": limit}, headers=bearer(token))
        statements.clear()
        response = client.get(url, query_string={"limit": limit}, headers=bearer(token))
        assert response.status_code == 200 and len(response.get_json()["items"]) == limit
        counts[limit] = selects(statements)
    assert counts[2] == counts[20], counts


def test_every_page_item_is_the_conversation_dumped_alone(app, client, world, token_for):
    """The page's shared work (links loaded once, schemas built once) changes nothing in any item."""
    with app.app_context():
        _populate(world, 9)
    token = token_for(world.agent)
    items, cursor = [], None
    for _ in range(10):
        page = client.get("/api/v1/conversations", query_string={"limit": 4, **({"cursor": cursor} if cursor else {})},
                          headers=bearer(token)).get_json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(items) == 9
    for item in items:
        alone = client.get(f"/api/v1/conversations/{item['id']}", headers=bearer(token)).get_json()
        assert item == alone
    linked = {item["id"]: item["linked_conversation_ids"] for item in items}
    ordered = sorted(linked)
    assert linked[ordered[0]] == [ordered[1]] and linked[ordered[4]] == [ordered[3], ordered[5]]
