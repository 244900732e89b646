"""Handoff to another team, linked conversations and resolving them together, through the API."""
from __future__ import annotations

import time

from sqlalchemy import select

from inbox.db import db
from inbox.demo.fake_meta import feed_comment_payload, messenger_message_payload
from inbox.models import Conversation, Message, RealtimeEvent
from tests import factories
from tests.factories import OTHER_PAGE_ID, PAGE_ID
from tests.helpers import bearer, post_meta


def _conversation(app, psid):
    with app.app_context():
        return db.session.execute(select(Conversation).where(Conversation.thread_key.like(f"%{psid}%"))
                                  .order_by(Conversation.id)).scalars().first()


def _after_sales(app, world):
    """A second team serving the brand, with its own agent."""
    with app.app_context():
        team = factories.make_team("SAV", (world.brand_id,))
        agent = factories.make_agent("sav@relais.test", team_ids=(team.id,))
        db.session.commit()
        return team.id, agent.id


def _dm(client, psid, text, page=PAGE_ID):
    ts = int((time.time() - 30) * 1000)
    assert post_meta(client, messenger_message_payload(page, psid, text, mid=f"m_{psid}_{ts}", ts_ms=ts)).status_code == 200


def test_handoff_moves_the_conversation_with_a_note_and_sends_nothing(app, client, world, token_for, fake_meta,
                                                                      jobs_done):
    sav_team, sav_agent = _after_sales(app, world)
    _dm(client, "ho-1", "Ma commande est arrivée cassée")
    jobs_done()
    conversation = _conversation(app, "ho-1")
    token = token_for(world.agent)
    assert client.post(f"/api/v1/conversations/{conversation.id}/claim", headers=bearer(token)).status_code == 200
    with app.app_context():
        mark = db.session.scalar(select(RealtimeEvent.id).order_by(RealtimeEvent.id.desc()).limit(1)) or 0
    response = client.post(f"/api/v1/conversations/{conversation.id}/handoff",
                           json={"team_id": sav_team, "note": "Colis cassé : remboursement à voir"},
                           headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["team_id"] == sav_team and body["assignee"] is None
    jobs_done()
    assert not [r for r in fake_meta.requests if r.path.endswith("/messages")]
    items = client.get(f"/api/v1/conversations/{conversation.id}/messages", headers=bearer(token)).get_json()["items"]
    note = next(m for m in items if m["kind"] == "note")
    assert note["text"] == "Colis cassé : remboursement à voir" and note["author"]["id"] == world.agent_ids[world.agent]
    handed = next(m for m in items if m["kind"] == "activity" and m["extra"]["activity"]["type"] == "handoff")
    assert handed["extra"]["activity"]["to_team_id"] == sav_team
    assert handed["extra"]["activity"]["previous_assignee_id"] == world.agent_ids[world.agent]
    assert handed["author"]["name"] == "Agent" and "SAV" in handed["text"]
    # the names the console writes its sentence with, in the agent's language (frontend activityText)
    assert {k: handed["extra"]["activity"][k] for k in ("actor_name", "to_team_name")} == \
        {"actor_name": "Agent", "to_team_name": "SAV"}
    claimed = next(m["extra"]["activity"] for m in items if m["kind"] == "activity"
                   and m["extra"]["activity"]["type"] == "claimed")
    assert claimed["agent_name"] == "Agent"
    with app.app_context():
        names = db.session.execute(select(RealtimeEvent.name).where(RealtimeEvent.id > mark)).scalars().all()
        assert names.count("message.created") == 2 and "conversation.updated" in names
    sav = token_for("sav@relais.test")
    seen = client.get(f"/api/v1/conversations/{conversation.id}", headers=bearer(sav))
    assert seen.status_code == 200 and seen.get_json()["team_id"] == sav_team
    assert sav_agent


def test_handoff_to_a_team_with_a_policy_assigns_there(app, client, world, token_for, jobs_done):
    sav_team, sav_agent = _after_sales(app, world)
    assert client.put(f"/api/v1/teams/{sav_team}/assignment-policy", json={"mode": "least_loaded"},
                      headers=bearer(token_for(world.admin))).status_code == 200
    _dm(client, "ho-2", "Je veux un remboursement")
    jobs_done()
    conversation = _conversation(app, "ho-2")
    response = client.post(f"/api/v1/conversations/{conversation.id}/handoff",
                           json={"team_id": sav_team, "note": "refund"}, headers=bearer(token_for(world.agent)))
    assert response.status_code == 200
    assert response.get_json()["assignee"]["id"] == sav_agent


def test_handoff_refusals_name_the_field(app, client, world, token_for, jobs_done):
    _dm(client, "ho-3", "hello")
    jobs_done()
    conversation = _conversation(app, "ho-3")
    token = token_for(world.agent)
    url = f"/api/v1/conversations/{conversation.id}/handoff"
    elsewhere = client.post(url, json={"team_id": world.other_team_id, "note": "not ours"}, headers=bearer(token))
    assert elsewhere.status_code == 422
    error = elsewhere.get_json()["error"]
    assert error["code"] == "validation_error" and "does not serve" in error["fields"]["team_id"][0]
    blank = client.post(url, json={"team_id": world.team_id, "note": "   "}, headers=bearer(token))
    assert blank.status_code == 422 and blank.get_json()["error"]["fields"] == {"note": ["must not be blank"]}
    missing = client.post(url, json={"note": "why"}, headers=bearer(token))
    assert missing.status_code == 422 and "team_id" in missing.get_json()["error"]["fields"]
    unknown = client.post(url, json={"team_id": 999999, "note": "why"}, headers=bearer(token))
    assert unknown.status_code == 422 and unknown.get_json()["error"]["fields"]["team_id"] == ["no such team"]
    hidden = client.post(url, json={"team_id": world.team_id, "note": "why"}, headers=bearer(token_for(world.outsider)))
    assert hidden.status_code == 404


def test_linked_conversations_see_each_other_and_resolve_together(app, client, world, token_for, jobs_done):
    _dm(client, "user-9", "Ma commande ?")
    assert post_meta(client, feed_comment_payload(PAGE_ID, f"{PAGE_ID}_77", "77_1", "user-9", "Léa",
                                                  "Toujours rien reçu !")).status_code == 200
    _dm(client, "someone-else", "Moi aussi")
    jobs_done()
    with app.app_context():
        dm, comment = db.session.execute(select(Conversation).where(Conversation.contact_id.in_(
            select(Conversation.contact_id).where(Conversation.thread_key.like("%user-9%"))))
            .order_by(Conversation.id)).scalars().all()
    other = _conversation(app, "someone-else")
    token = token_for(world.agent)
    linked = client.post(f"/api/v1/conversations/{dm.id}/links", json={"conversation_id": comment.id},
                         headers=bearer(token))
    assert linked.status_code == 201 and [c["id"] for c in linked.get_json()] == [comment.id]
    again = client.post(f"/api/v1/conversations/{dm.id}/links", json={"conversation_id": comment.id},
                        headers=bearer(token))
    assert again.status_code == 200
    assert client.get(f"/api/v1/conversations/{comment.id}", headers=bearer(token)).get_json()[
        "linked_conversation_ids"] == [dm.id]
    assert [c["id"] for c in client.get(f"/api/v1/conversations/{comment.id}/links",
                                        headers=bearer(token)).get_json()] == [dm.id]
    unconfirmed = client.post(f"/api/v1/conversations/{dm.id}/links", json={"conversation_id": other.id},
                              headers=bearer(token))
    assert unconfirmed.status_code == 422 and "confirm" in unconfirmed.get_json()["error"]["fields"]
    confirmed = client.post(f"/api/v1/conversations/{dm.id}/links",
                            json={"conversation_id": other.id, "confirm": True}, headers=bearer(token))
    assert confirmed.status_code == 201 and len(confirmed.get_json()) == 2
    assert client.delete(f"/api/v1/conversations/{other.id}/links/{dm.id}", headers=bearer(token)).status_code == 204
    assert client.delete(f"/api/v1/conversations/{other.id}/links/{dm.id}", headers=bearer(token)).status_code == 404
    resolved = client.post(f"/api/v1/conversations/{dm.id}/resolve", json={"resolve_linked": True},
                           headers=bearer(token))
    assert resolved.status_code == 200 and resolved.get_json()["linked_conversation_ids"] == [comment.id]
    statuses = {c.id: client.get(f"/api/v1/conversations/{c.id}", headers=bearer(token)).get_json()["status"]
                for c in (dm, comment, other)}
    assert statuses == {dm.id: "resolved", comment.id: "resolved", other.id: "open"}
    with app.app_context():
        kinds = db.session.execute(select(Message.extra).where(Message.conversation_id == comment.id,
                                                                Message.kind == "activity")).scalars().all()
    assert [k["activity"]["type"] for k in kinds] == ["linked", "status"]


def test_links_stay_within_a_brand_and_refuse_itself(app, client, world, token_for, jobs_done):
    _dm(client, "brand-a", "hello")
    _dm(client, "brand-b", "hello", page=OTHER_PAGE_ID)
    jobs_done()
    mine, theirs = _conversation(app, "brand-a"), _conversation(app, "brand-b")
    admin = token_for(world.admin)
    cross = client.post(f"/api/v1/conversations/{mine.id}/links", json={"conversation_id": theirs.id, "confirm": True},
                        headers=bearer(admin))
    assert cross.status_code == 422 and "another brand" in cross.get_json()["error"]["fields"]["conversation_id"][0]
    itself = client.post(f"/api/v1/conversations/{mine.id}/links", json={"conversation_id": mine.id},
                         headers=bearer(admin))
    assert itself.status_code == 422
    invisible = client.post(f"/api/v1/conversations/{mine.id}/links", json={"conversation_id": theirs.id},
                            headers=bearer(token_for(world.agent)))
    assert invisible.status_code == 422 and invisible.get_json()["error"]["fields"]["conversation_id"] == [
        "no such conversation"]


def test_handoff_targets_are_the_teams_serving_the_brand(app, client, world, token_for, jobs_done):
    from inbox.demo.fake_meta import messenger_message_payload
    from tests.factories import PAGE_ID, make_team
    from tests.helpers import bearer, post_meta

    with app.app_context():
        from inbox.db import db
        make_team("SAV Maison Lune", (world.brand_id,))
        db.session.commit()
    post_meta(client, messenger_message_payload(PAGE_ID, "psid-targets", "Je veux un remboursement"))
    jobs_done()
    token = token_for(world.agent)
    conversation = client.get("/api/v1/conversations", headers=bearer(token)).get_json()["items"][0]
    response = client.get(f"/api/v1/conversations/{conversation['id']}/handoff-targets", headers=bearer(token))
    assert response.status_code == 200
    names = [team["name"] for team in response.get_json()]
    assert "SAV Maison Lune" in names and "Vélo team" not in names
    outsider = token_for(world.outsider)
    assert client.get(f"/api/v1/conversations/{conversation['id']}/handoff-targets",
                      headers=bearer(outsider)).status_code == 404


def test_the_team_holding_a_conversation_is_named_wherever_the_conversation_is_shown(app, client, world, token_for,
                                                                                    jobs_done):
    """After a handoff a CM sees which team holds the conversation: its JSON carries `team` ({id, name}) beside
    `team_id` in the handoff's answer, the conversation, the list and the live `conversation.updated` (whose wire
    form keeps it); a rename shows in the next event of this process at once."""
    sav_team, _sav_agent = _after_sales(app, world)
    _dm(client, "ho-team", "Mon vélo est arrivé rayé")
    jobs_done()
    conversation = _conversation(app, "ho-team")
    token, admin = token_for(world.agent), token_for(world.admin)
    handed = client.post(f"/api/v1/conversations/{conversation.id}/handoff",
                         json={"team_id": sav_team, "note": "Rayure à voir avec le transporteur"},
                         headers=bearer(token))
    assert handed.status_code == 200, handed.get_json()
    sav = {"id": sav_team, "name": "SAV"}
    assert handed.get_json()["team"] == sav
    assert client.get(f"/api/v1/conversations/{conversation.id}", headers=bearer(admin)).get_json()["team"] == sav
    listed = client.get("/api/v1/conversations", query_string={"status": "open"},
                        headers=bearer(admin)).get_json()["items"]
    assert next(item for item in listed if item["id"] == conversation.id)["team"] == sav

    def last_update() -> dict:
        with app.app_context():
            row = db.session.execute(select(RealtimeEvent).where(RealtimeEvent.name == "conversation.updated")
                                     .order_by(RealtimeEvent.id.desc()).limit(1)).scalar_one()
            db.session.remove()
            return row.payload

    jobs_done()
    assert last_update()["team"] == sav
    renamed = client.patch(f"/api/v1/teams/{sav_team}", json={"name": "Service après-vente"}, headers=bearer(admin))
    assert renamed.status_code == 200, renamed.get_json()
    assert client.patch(f"/api/v1/conversations/{conversation.id}", json={"priority": "high"},
                        headers=bearer(admin)).status_code == 200
    jobs_done()
    assert last_update()["team"] == {"id": sav_team, "name": "Service après-vente"}
    _dm(client, "ho-team", "Une photo du vélo")  # the drain's event too
    jobs_done()
    assert last_update()["team"] == {"id": sav_team, "name": "Service après-vente"}
    other = [item for item in listed if item["team_id"] is None]
    assert all(item["team"] is None for item in other)
