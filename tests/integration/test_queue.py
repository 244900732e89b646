"""The queue listing: filters, both sorts, keyset pagination over every row exactly once, counts per view."""
from __future__ import annotations

import time

from inbox.demo.fake_meta import feed_comment_payload, messenger_message_payload
from tests.factories import PAGE_ID
from tests.helpers import bearer, post_meta


def _all_pages(client, token, **params):
    items, cursor, pages = [], None, 0
    while True:
        query = dict(params, limit=2, **({"cursor": cursor} if cursor else {}))
        page = client.get("/api/v1/conversations", query_string=query, headers=bearer(token)).get_json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return items, pages


def test_waiting_sort_pages_every_conversation_once_in_order(app, client, world, token_for, jobs_done):
    now_ms = int(time.time() * 1000)
    for i in range(7):
        post_meta(client, messenger_message_payload(PAGE_ID, f"psid-{i}", f"message {i}", ts_ms=now_ms - (10 - i) * 60000))
    jobs_done()
    token = token_for(world.agent)
    items, _ = _all_pages(client, token)
    # answer two of them: they move behind the waiting ones
    for conversation in items[:2]:
        client.post(f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "ok"}, headers=bearer(token))
    jobs_done()
    items, pages = _all_pages(client, token, sort="waiting")
    assert pages >= 4 and len(items) == 7 and len({c["id"] for c in items}) == 7
    waiting = [c for c in items if c["waiting_since"]]
    answered = [c for c in items if not c["waiting_since"]]
    assert items == waiting + answered and len(answered) == 2
    assert [c["waiting_since"] for c in waiting] == sorted(c["waiting_since"] for c in waiting)
    newest, _ = _all_pages(client, token, sort="newest")
    assert [c["last_message"]["at"] for c in newest] == sorted((c["last_message"]["at"] for c in newest), reverse=True)
    assert len(newest) == 7


def test_filters_and_counts(app, client, world, token_for, jobs_done):
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-a", "Bonjour"))
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-b", "Hello there"))
    post_meta(client, feed_comment_payload(PAGE_ID, f"{PAGE_ID}_1", "1_1", "u-1", "Zoé Lambert", "Trop beau ❤️"))
    jobs_done()
    token = token_for(world.agent)
    get = lambda **q: client.get("/api/v1/conversations", query_string=q, headers=bearer(token)).get_json()  # noqa: E731
    assert len(get(kind="comment")["items"]) == 1 and len(get(kind="dm")["items"]) == 2
    assert [c["contact"]["name"] for c in get(q="Zoé")["items"]] == ["Zoé Lambert"]
    assert len(get(q="hello")["items"]) == 1
    first = get(kind="dm")["items"][0]
    client.post(f"/api/v1/conversations/{first['id']}/claim", headers=bearer(token))
    client.patch(f"/api/v1/conversations/{first['id']}", json={"labels": ["livraison", "vip"], "priority": "urgent"},
                 headers=bearer(token))
    assert get()["counts"] == {"all": 3, "mine": 1, "unassigned": 2}
    assert get(assignee="me")["counts"] == {"all": 3, "mine": 1, "unassigned": 2}
    assert [c["id"] for c in get(assignee="me")["items"]] == [first["id"]]
    assert [c["id"] for c in get(label="vip")["items"]] == [first["id"]]
    assert [c["id"] for c in get(priority="urgent")["items"]] == [first["id"]]
    # who changed the priority and the labels stays in the history (the same PATCH again changes nothing: no row)
    client.patch(f"/api/v1/conversations/{first['id']}", json={"labels": ["vip", "rappel"], "priority": "urgent"},
                 headers=bearer(token))
    history = client.get(f"/api/v1/conversations/{first['id']}/messages", headers=bearer(token)).get_json()["items"]
    changes = [m["extra"]["activity"] for m in reversed(history) if m["kind"] == "activity"
               and m["extra"]["activity"]["type"] in ("priority", "labels")]
    assert changes == [
        {"type": "priority", "from": "normal", "to": "urgent", "actor_name": "Agent"},
        {"type": "labels", "added": ["livraison", "vip"], "removed": [], "actor_name": "Agent"},
        {"type": "labels", "added": ["rappel"], "removed": ["livraison"], "actor_name": "Agent"},
    ]
    assert [c["labels"] for c in get(label="rappel")["items"]] == [["rappel", "vip"]]
    assert get(channel_kind="api")["items"] == []
    bad = client.get("/api/v1/conversations", query_string={"status": "lost", "cursor": "zzz", "limit": 0},
                     headers=bearer(token))
    assert bad.status_code == 422 and {"status", "limit"} <= set(bad.get_json()["error"]["fields"])
    bad_cursor = client.get("/api/v1/conversations", query_string={"cursor": "zzz"}, headers=bearer(token))
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.get_json()["error"]["fields"]


def test_status_changes_snooze_and_reopen_on_new_message(app, client, world, token_for, jobs_done):
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-s", "first"))
    jobs_done()
    token = token_for(world.agent)
    conversation = client.get("/api/v1/conversations", headers=bearer(token)).get_json()["items"][0]
    url = f"/api/v1/conversations/{conversation['id']}"
    missing = client.patch(url, json={"status": "snoozed"}, headers=bearer(token))
    assert missing.status_code == 422 and "snoozed_until" in missing.get_json()["error"]["fields"]
    resolved = client.patch(url, json={"status": "resolved"}, headers=bearer(token)).get_json()
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-s", "again"))
    jobs_done()
    assert client.get(url, headers=bearer(token)).get_json()["status"] == "open"
    history = client.get(f"{url}/messages", headers=bearer(token)).get_json()["items"]
    assert any(m["kind"] == "activity" and "resolved" in m["text"] for m in history)
    status_rows = [m["extra"]["activity"] for m in history if m["kind"] == "activity"]
    assert {"type": "status", "from": "open", "to": "resolved", "actor_name": "Agent"} in status_rows


def test_a_snoozed_conversation_reopens_when_its_time_comes(app, client, world, token_for, jobs_done):
    from datetime import datetime, timedelta, timezone

    from tests.helpers import wait_until

    post_meta(client, messenger_message_payload(PAGE_ID, "psid-snooze", "remind me"))
    jobs_done()
    token = token_for(world.agent)
    conversation = client.get("/api/v1/conversations", headers=bearer(token)).get_json()["items"][0]
    url = f"/api/v1/conversations/{conversation['id']}"
    # 3 s ahead: the PATCH must still find it in the future on a slow, busy box
    until = (datetime.now(timezone.utc) + timedelta(seconds=3)).isoformat()
    snoozed = client.patch(url, json={"status": "snoozed", "snoozed_until": until}, headers=bearer(token))
    assert snoozed.status_code == 200 and snoozed.get_json()["status"] == "snoozed"
    wait_until(lambda: client.get(url, headers=bearer(token)).get_json()["status"] == "open", timeout=15)
    history = client.get(f"{url}/messages", headers=bearer(token)).get_json()["items"]
    assert any(m["kind"] == "activity" and "snooze" in m["text"].lower() for m in history)
