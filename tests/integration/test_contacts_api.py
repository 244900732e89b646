"""Contacts through the HTTP API: agents see only the people who wrote to the brands they serve."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from inbox.db import db, utcnow
from inbox.models import Contact, ContactIdentity, Conversation
from tests.factories import World


@dataclass
class People:
    lune_only: int       # wrote to Maison Lune
    velo_only: int       # wrote to Vélo Vert
    both: int            # wrote to both brands
    nobody: int          # no conversation at all (identity seen, e.g. a reaction)
    both_lune_conversation: int
    both_velo_conversation: int


def add_contact(name: str, handle: str | None, identities: list[tuple[str, str, str | None]]) -> Contact:
    contact = Contact(name=name, handle=handle)
    db.session.add(contact)
    db.session.flush()
    for kind, external_id, identity_name in identities:
        db.session.add(ContactIdentity(contact_id=contact.id, channel_kind=kind, external_id=external_id,
                                       name=identity_name, handle=handle))
    return contact


def add_conversation(contact: Contact, brand_id: int, channel_id: int, minutes_ago: int = 0) -> Conversation:
    at = utcnow() - timedelta(minutes=minutes_ago)
    conversation = Conversation(kind="dm", status="open", brand_id=brand_id, channel_id=channel_id,
                                contact_id=contact.id, thread_key=f"dm:{contact.id}:{channel_id}",
                                first_inbound_at=at, last_inbound_at=at, last_message_at=at, waiting_since=at,
                                last_message_preview=f"Bonjour from {contact.name}", last_message_direction="in")
    db.session.add(conversation)
    db.session.flush()
    return conversation


@pytest.fixture
def people(app: Any, world: World) -> People:
    with app.app_context():
        lune = add_contact("Élodie Garnier", "elo.garnier", [("facebook", "psid-1001", "Élodie Garnier")])
        velo = add_contact("Marc Velasquez", "marc.v", [("facebook", "psid-2001", "Marc Velasquez")])
        both = add_contact("Inès Moreau", None, [("facebook", "psid-3001", "Inès Moreau"),
                                                 ("api", "shop-customer-77", "ines_m")])
        nobody = add_contact("Paul Sansfil", "paul.s", [("facebook", "psid-4001", None)])
        add_conversation(lune, world.brand_id, world.page_channel_id, minutes_ago=30)
        add_conversation(velo, world.other_brand_id, world.other_page_channel_id, minutes_ago=20)
        both_lune = add_conversation(both, world.brand_id, world.page_channel_id, minutes_ago=10)
        both_velo = add_conversation(both, world.other_brand_id, world.other_page_channel_id, minutes_ago=5)
        db.session.commit()
        return People(lune.id, velo.id, both.id, nobody.id, both_lune.id, both_velo.id)


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_agents_list_only_contacts_of_their_brands(login: Any, world: World, people: People) -> None:
    assert ids(login(world.agent).get("/api/v1/contacts")) == [people.both, people.lune_only]
    assert ids(login(world.supervisor).get("/api/v1/contacts")) == [people.both, people.lune_only]
    assert ids(login(world.outsider).get("/api/v1/contacts")) == [people.both, people.velo_only]
    assert ids(login(world.admin).get("/api/v1/contacts")) == [people.nobody, people.both, people.velo_only,
                                                                people.lune_only]


def test_an_agent_without_a_team_sees_no_contact(app: Any, login: Any, world: World, people: People) -> None:
    from tests.factories import make_agent

    with app.app_context():
        make_agent("newcomer@relais.test")
        db.session.commit()
    assert ids(login("newcomer@relais.test").get("/api/v1/contacts")) == []


def test_contacts_page_with_a_cursor(login: Any, world: World, people: People) -> None:
    admin = login(world.admin)
    first = admin.get("/api/v1/contacts?limit=3").get_json()
    assert [c["id"] for c in first["items"]] == [people.nobody, people.both, people.velo_only]
    second = admin.get(f"/api/v1/contacts?limit=3&cursor={first['next_cursor']}").get_json()
    assert [c["id"] for c in second["items"]] == [people.lune_only] and second["next_cursor"] is None
    exact = admin.get("/api/v1/contacts?limit=4").get_json()
    assert len(exact["items"]) == 4 and exact["next_cursor"] is None


@pytest.mark.parametrize("q, expected", [
    ("garnier", "lune_only"),       # name, any case
    ("ELO.G", "lune_only"),         # handle
    ("ines_m", "both"),             # an identity's name
    ("marc", None),                 # another brand's contact: not found by search either
    ("%", None),                    # LIKE wildcards are searched literally
])
def test_search_by_name_or_handle(login: Any, world: World, people: People, q: str, expected: str | None) -> None:
    found = ids(login(world.agent).get("/api/v1/contacts", query_string={"q": q}))
    assert found == ([getattr(people, expected)] if expected else [])


def test_a_contact_with_identities(login: Any, world: World, people: People) -> None:
    response = login(world.agent).get(f"/api/v1/contacts/{people.both}")
    assert response.status_code == 200
    contact = response.get_json()
    assert contact["name"] == "Inès Moreau"
    assert sorted(contact["identities"], key=lambda i: i["channel_kind"]) == [
        {"channel_kind": "api", "external_id": "shop-customer-77", "name": "ines_m", "handle": None,
         "avatar_url": None},
        {"channel_kind": "facebook", "external_id": "psid-3001", "name": "Inès Moreau", "handle": None,
         "avatar_url": None},
    ]


def test_contacts_of_other_brands_are_not_found(login: Any, world: World, people: People) -> None:
    agent = login(world.agent)
    for contact_id in (people.velo_only, people.nobody, 987654):
        for url in (f"/api/v1/contacts/{contact_id}", f"/api/v1/contacts/{contact_id}/conversations"):
            response = agent.get(url)
            assert response.status_code == 404
            assert response.get_json()["error"]["code"] == "not_found"
    assert login(world.admin).get(f"/api/v1/contacts/{people.nobody}").status_code == 200


def test_a_contacts_conversations_are_only_those_the_agent_may_see(login: Any, world: World, people: People) -> None:
    response = login(world.agent).get(f"/api/v1/contacts/{people.both}/conversations")
    assert ids(response) == [people.both_lune_conversation]
    conversation = response.get_json()["items"][0]
    assert conversation["brand"] == {"id": world.brand_id, "name": "Maison Lune"}
    assert conversation["contact"]["id"] == people.both
    assert conversation["last_message"]["text"] == "Bonjour from Inès Moreau"
    assert conversation["status"] == "open" and conversation["priority"] == "normal"

    admin = login(world.admin)
    assert ids(admin.get(f"/api/v1/contacts/{people.both}/conversations")) == [
        people.both_velo_conversation, people.both_lune_conversation]
    first = admin.get(f"/api/v1/contacts/{people.both}/conversations?limit=1").get_json()
    rest = admin.get(f"/api/v1/contacts/{people.both}/conversations?limit=1&cursor={first['next_cursor']}")
    assert ids(rest) == [people.both_lune_conversation]


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=500", "limit"), ("cursor=abc", "cursor"), ("q=", "q"), ("sort=name", "sort"),
])
def test_list_query_validation_names_the_field(login: Any, world: World, query: str, field: str) -> None:
    response = login(world.agent).get(f"/api/v1/contacts?{query}")
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_contacts_need_a_signed_in_agent(client: Any, world: World) -> None:
    assert client.get("/api/v1/contacts").status_code == 401
