"""Canned replies through the HTTP API: who manages which scope, who sees what, the composer's search order,
rendering for a real conversation and the usage count. Runs on SQLite, and on PostgreSQL with
RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from inbox.db import db
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import CannedReply, Contact, Conversation
from tests.factories import PAGE_ID
from tests.helpers import bearer, post_meta

URL = "/api/v1/canned-replies"


@pytest.fixture
def tokens(world, token_for) -> dict[str, str]:
    return {role: token_for(getattr(world, role))
            for role in ("admin", "supervisor", "agent", "agent2", "outsider")}


def _create(client, token: str, expect: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"title": fields.get("shortcut", "Titre"), "body": "Bonjour !", "scope": "global", **fields}
    response = client.post(URL, json=body, headers=bearer(token))
    assert response.status_code == expect, response.get_json()
    return response.get_json()


def _search(client, token: str, **params: Any) -> list[str]:
    response = client.get(URL, query_string=params, headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return [reply["shortcut"] for reply in response.get_json()]


def _conversation(app, client, jobs_done, *, contact_name: str | None = "Amélie Poulain",
                  language: str | None = None) -> int:
    """A real conversation of the world's brand, opened by a Messenger webhook."""
    assert post_meta(client, messenger_message_payload(PAGE_ID, "psid-canned", "Où est mon colis ?",
                                                       mid="m_canned")).status_code == 200
    jobs_done()
    with app.app_context():
        conversation = db.session.execute(select(Conversation)).scalar_one()
        db.session.execute(update(Contact).where(Contact.id == conversation.contact_id)
                           .values(name=contact_name, handle=None))
        if language:
            conversation.extra = {**conversation.extra, "language": language}
        db.session.commit()
        return conversation.id


def _render(client, token: str, reply_id: int, conversation_id: int, expect: int = 200) -> dict[str, Any]:
    response = client.post(f"{URL}/{reply_id}/render", json={"conversation_id": conversation_id},
                           headers=bearer(token))
    assert response.status_code == expect, response.get_json()
    return response.get_json()


def _set_usage(app, reply_id: int, count: int) -> None:
    with app.app_context():
        db.session.execute(update(CannedReply).where(CannedReply.id == reply_id).values(usage_count=count))
        db.session.commit()


# ---------------------------------------------------------------- management by role
def test_admin_manages_every_scope_supervisor_their_brands_and_teams_agents_nothing(client, world, tokens):
    admin, supervisor, agent = tokens["admin"], tokens["supervisor"], tokens["agent"]
    glob = _create(client, admin, shortcut="bonjour", body="Bonjour {{contact.first_name}} !")
    assert glob["scope"] == "global" and glob["usage_count"] == 0 and glob["archived"] is False
    assert glob["placeholders"] == ["contact.first_name"]
    assert glob["created_by_id"] == world.agent_ids[world.admin]
    _create(client, admin, shortcut="velo", scope="brand", brand_id=world.other_brand_id)

    _create(client, supervisor, 403, shortcut="global-sup")
    brand = _create(client, supervisor, shortcut="livraison", scope="brand", brand_id=world.brand_id,
                    language="fr")
    team = _create(client, supervisor, shortcut="sav", scope="team", team_id=world.team_id)
    assert (brand["brand_id"], brand["team_id"], team["team_id"]) == (world.brand_id, None, world.team_id)
    _create(client, supervisor, 403, shortcut="autre", scope="brand", brand_id=world.other_brand_id)
    _create(client, supervisor, 403, shortcut="autre", scope="team", team_id=world.other_team_id)
    _create(client, agent, 403, shortcut="mien", scope="brand", brand_id=world.brand_id)

    patched = client.patch(f"{URL}/{brand['id']}", json={"title": "  Délai de livraison  "},
                           headers=bearer(supervisor))
    assert patched.status_code == 200 and patched.get_json()["title"] == "Délai de livraison"
    assert client.patch(f"{URL}/{brand['id']}", json={"title": "x"}, headers=bearer(agent)).status_code == 403
    assert client.patch(f"{URL}/{glob['id']}", json={"title": "x"}, headers=bearer(supervisor)).status_code == 403
    # moving a reply to a scope the supervisor does not serve is refused too
    moved = client.patch(f"{URL}/{brand['id']}", json={"scope": "global"}, headers=bearer(supervisor))
    assert moved.status_code == 403
    assert client.delete(f"{URL}/{team['id']}", headers=bearer(agent)).status_code == 403

    # an admin may move a reply between scopes; the old target is cleared
    to_global = client.patch(f"{URL}/{team['id']}", json={"scope": "global"}, headers=bearer(admin)).get_json()
    assert (to_global["scope"], to_global["team_id"], to_global["brand_id"]) == ("global", None, None)


def test_delete_archives_frees_the_shortcut_and_patch_restores(client, world, tokens):
    admin, agent = tokens["admin"], tokens["agent"]
    first = _create(client, admin, shortcut="livraison")
    conflict = client.post(URL, json={"shortcut": "Livraison", "title": "t", "body": "b", "scope": "global"},
                           headers=bearer(admin))
    assert conflict.status_code == 409 and conflict.get_json()["error"]["fields"] == {
        "shortcut": ["already used in this scope"]}
    # the same shortcut in another scope is fine
    _create(client, admin, shortcut="livraison", scope="brand", brand_id=world.brand_id)

    assert client.delete(f"{URL}/{first['id']}", headers=bearer(admin)).status_code == 204
    assert _search(client, agent, q="livraison") == ["livraison"]          # the brand one only
    archived = client.get(f"{URL}/{first['id']}", headers=bearer(agent)).get_json()
    assert archived["archived"] is True
    assert _search(client, admin, archived="true") == ["livraison"]
    second = _create(client, admin, shortcut="livraison")
    restore = client.patch(f"{URL}/{first['id']}", json={"archived": False}, headers=bearer(admin))
    assert restore.status_code == 409
    client.delete(f"{URL}/{second['id']}", headers=bearer(admin))
    assert client.patch(f"{URL}/{first['id']}", json={"archived": False}, headers=bearer(admin)).status_code == 200


# ---------------------------------------------------------------- visibility
def test_agents_see_global_their_brands_and_their_teams_only(client, world, tokens):
    admin = tokens["admin"]
    ids = {
        "global": _create(client, admin, shortcut="global")["id"],
        "lune": _create(client, admin, shortcut="lune", scope="brand", brand_id=world.brand_id)["id"],
        "community": _create(client, admin, shortcut="community", scope="team", team_id=world.team_id)["id"],
        "velo": _create(client, admin, shortcut="velo", scope="brand", brand_id=world.other_brand_id)["id"],
        "velo-team": _create(client, admin, shortcut="velo-team", scope="team", team_id=world.other_team_id)["id"],
    }
    assert sorted(_search(client, tokens["agent"])) == ["community", "global", "lune"]
    assert sorted(_search(client, tokens["supervisor"])) == ["community", "global", "lune"]
    assert sorted(_search(client, tokens["outsider"])) == ["global", "velo", "velo-team"]
    assert sorted(_search(client, admin)) == sorted(ids)

    hidden = client.get(f"{URL}/{ids['lune']}", headers=bearer(tokens["outsider"]))
    assert hidden.status_code == 404 and hidden.get_json()["error"]["code"] == "not_found"
    assert client.patch(f"{URL}/{ids['velo']}", json={"title": "x"},
                        headers=bearer(tokens["supervisor"])).status_code == 404
    assert client.get(f"{URL}/{ids['lune']}", headers=bearer(tokens["agent"])).status_code == 200


def test_with_a_conversation_only_replies_usable_there(app, client, world, tokens, jobs_done):
    admin = tokens["admin"]
    for shortcut, extra in (("global", {}), ("lune", {"scope": "brand", "brand_id": world.brand_id}),
                            ("community", {"scope": "team", "team_id": world.team_id}),
                            ("velo", {"scope": "brand", "brand_id": world.other_brand_id}),
                            ("velo-team", {"scope": "team", "team_id": world.other_team_id})):
        _create(client, admin, shortcut=shortcut, **extra)
    conversation_id = _conversation(app, client, jobs_done)

    assert sorted(_search(client, tokens["agent"], conversation_id=conversation_id)) == [
        "community", "global", "lune"]
    # an admin belongs to no team: another brand's or team's replies do not fit this conversation
    assert sorted(_search(client, admin, conversation_id=conversation_id)) == ["global", "lune"]
    with app.app_context():
        db.session.execute(update(Conversation).where(Conversation.id == conversation_id)
                           .values(team_id=world.team_id))
        db.session.commit()
    assert sorted(_search(client, admin, conversation_id=conversation_id)) == ["community", "global", "lune"]
    response = client.get(URL, query_string={"conversation_id": conversation_id}, headers=bearer(tokens["outsider"]))
    assert response.status_code == 404


# ---------------------------------------------------------------- the composer's search
def test_search_shortcut_prefix_first_then_text_then_language_then_usage(app, client, world, tokens, jobs_done):
    admin, agent = tokens["admin"], tokens["agent"]
    _create(client, admin, shortcut="livraison", title="Délai de livraison", language="fr",
            body="Bonjour {{contact.first_name}}, votre colis arrive sous 48 h.")
    delivery = _create(client, admin, shortcut="livraison-en", title="Delivery time", language="en",
                       body="Hi {{contact.first_name}}, your parcel arrives within 48 hours.")["id"]
    retard = _create(client, admin, shortcut="retard", title="Colis en retard", language="fr",
                     body="Désolés, la livraison a pris du retard.")["id"]
    merci = _create(client, admin, shortcut="merci", title="Remerciements", body="Merci !")["id"]
    _set_usage(app, delivery, 3)
    _set_usage(app, retard, 50)
    _set_usage(app, merci, 10)

    # prefix matches first (most used first), the body match after, however much it is used
    assert _search(client, agent, q="liv") == ["livraison-en", "livraison", "retard"]
    assert _search(client, agent, q="/LIV") == ["livraison-en", "livraison", "retard"]
    assert _search(client, agent, q="remerci") == ["merci"]                  # title
    assert _search(client, agent, q="liv", limit=1) == ["livraison-en"]
    assert _search(client, agent, q="100%") == []                            # LIKE wildcards are plain text

    # a French conversation prefers French replies, then language-neutral ones, then usage
    french = _conversation(app, client, jobs_done, language="fr")
    assert _search(client, agent, q="liv", conversation_id=french) == ["livraison", "livraison-en", "retard"]
    assert _search(client, agent, conversation_id=french) == ["retard", "livraison", "merci", "livraison-en"]
    # asking for a language keeps that language and language-neutral replies
    assert _search(client, agent, language="en") == ["livraison-en", "merci"]


# ---------------------------------------------------------------- rendering
def test_render_fills_the_conversation_and_counts_the_use(app, client, world, tokens, jobs_done):
    admin, agent = tokens["admin"], tokens["agent"]
    reply = _create(client, admin, shortcut="bonjour", title="Bonjour",
                    body='Bonjour {{ contact.first_name | "à vous" }}, ici {{agent.first_name}} de '
                         '{{brand.name}} ({{channel.name}}), dossier {{conversation.id}}. {{contact.handle}}')
    conversation_id = _conversation(app, client, jobs_done)

    rendered = _render(client, agent, reply["id"], conversation_id)
    assert rendered == {"text": f"Bonjour Amélie, ici Agent de Maison Lune (Maison Lune FB), "
                                f"dossier {conversation_id}. ",
                        "missing": ["contact.handle"]}
    _render(client, agent, reply["id"], conversation_id)
    after = client.get(f"{URL}/{reply['id']}", headers=bearer(agent)).get_json()
    assert after["usage_count"] == 2 and after["updated_at"] == reply["updated_at"]

    # the customer's name is inserted as text, never expanded
    with app.app_context():
        contact_id = db.session.get(Conversation, conversation_id).contact_id
        db.session.execute(update(Contact).where(Contact.id == contact_id).values(name="{{agent.name}} {x}"))
        db.session.commit()
    assert _render(client, agent, reply["id"], conversation_id)["text"].startswith("Bonjour {{agent.name}},")

    with app.app_context():
        db.session.execute(update(Contact).where(Contact.id == contact_id).values(name=None))
        db.session.commit()
    assert _render(client, agent, reply["id"], conversation_id)["text"].startswith("Bonjour à vous,")


def test_render_refuses_replies_that_do_not_fit_and_hidden_conversations(app, client, world, tokens, jobs_done):
    admin = tokens["admin"]
    velo = _create(client, admin, shortcut="velo", scope="brand", brand_id=world.other_brand_id)
    archived = _create(client, admin, shortcut="ancien")
    client.delete(f"{URL}/{archived['id']}", headers=bearer(admin))
    conversation_id = _conversation(app, client, jobs_done)

    wrong_brand = _render(client, admin, velo["id"], conversation_id, expect=422)
    assert "conversation_id" in wrong_brand["error"]["fields"]
    _render(client, tokens["agent"], velo["id"], conversation_id, expect=404)      # not even visible
    _render(client, admin, archived["id"], conversation_id, expect=422)
    glob = _create(client, admin, shortcut="global")
    _render(client, tokens["outsider"], glob["id"], conversation_id, expect=404)   # conversation of another brand
    assert client.get(f"{URL}/{velo['id']}", headers=bearer(admin)).get_json()["usage_count"] == 0


# ---------------------------------------------------------------- validation
def test_invalid_input_is_a_422_naming_each_field(client, world, tokens):
    admin = tokens["admin"]

    def errors(response) -> dict[str, Any]:
        assert response.status_code == 422, response.get_json()
        return response.get_json()["error"]["fields"]

    fields = errors(client.post(URL, json={"shortcut": "pas d'espace", "body": "  ", "scope": "galaxy",
                                           "language": "français", "colour": "red"}, headers=bearer(admin)))
    assert set(fields) == {"shortcut", "title", "scope", "language", "colour"}
    assert errors(client.post(URL, json={"shortcut": "ok", "title": "t", "body": "  ", "scope": "global"},
                              headers=bearer(admin))) == {"body": ["must not be blank"]}
    assert errors(client.post(URL, json={"shortcut": "ok", "title": "t", "body": "b", "scope": "brand"},
                              headers=bearer(admin))) == {"brand_id": ["required when scope is brand"]}
    assert set(errors(client.post(URL, json={"shortcut": "ok", "title": "t", "body": "b", "scope": "global",
                                             "team_id": world.team_id, "brand_id": "1"},
                                  headers=bearer(admin)))) == {"brand_id"}
    assert errors(client.post(URL, json={"shortcut": "ok", "title": "t", "body": "b", "scope": "team",
                                         "team_id": 999999}, headers=bearer(admin))) == {
        "team_id": ["unknown team 999999"]}

    typo = client.post(URL, json={"shortcut": "ok", "title": "t", "scope": "global",
                                  "body": "Bonjour {{contact.frist_name}}"}, headers=bearer(admin))
    assert typo.status_code == 422
    assert "{{contact.frist_name}}" in typo.get_json()["error"]["message"]
    assert typo.get_json()["error"]["fields"]["body"] == [
        "unknown placeholder {{contact.frist_name}}; did you mean {{contact.first_name}}?"]

    reply = _create(client, admin, shortcut="ok")
    assert "body" in errors(client.patch(f"{URL}/{reply['id']}", json={"body": "{{agent.nom}}"},
                                         headers=bearer(admin)))
    assert errors(client.patch(f"{URL}/{reply['id']}", json={}, headers=bearer(admin))) == {
        "_schema": ["nothing to change"]}
    assert set(errors(client.get(URL, query_string={"limit": 0, "colour": "x"}, headers=bearer(admin)))) == {
        "limit", "colour"}
    assert set(errors(client.post(f"{URL}/{reply['id']}/render", json={}, headers=bearer(admin)))) == {
        "conversation_id"}
    assert client.get(f"{URL}/{reply['id']}", headers=bearer(admin)).get_json()["body"] == "Bonjour !"


def test_routes_are_documented(client, tokens):
    document = client.get("/api/v1/openapi.json").get_json()
    assert set(document["paths"]["/api/v1/canned-replies"]) == {"get", "post"}
    assert set(document["paths"]["/api/v1/canned-replies/{reply_id}"]) == {"get", "patch", "delete"}
    render = document["paths"]["/api/v1/canned-replies/{reply_id}/render"]["post"]
    assert "422" in render["responses"] and "404" in render["responses"]
