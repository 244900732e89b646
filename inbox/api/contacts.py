"""/api/v1/contacts: the people who wrote to the brands I serve, their identities and conversations."""
from __future__ import annotations

from inbox.api.schemas import (ContactConversationPageSchema, ContactListQuerySchema, ContactPageSchema,
                               ContactSchema, KeysetQuerySchema)
from inbox.api.security import current_agent
from inbox.api.spec import api_route, load_query
from inbox.db import db
from inbox.services import contacts

TAGS = ["contacts"]
VISIBLE = "any signed-in agent (contacts with a conversation in a brand they serve)"


@api_route("/contacts", "GET", summary="Contacts, newest first; q searches names and handles", tags=TAGS,
           query=ContactListQuerySchema, response=ContactPageSchema, roles=VISIBLE)
def list_contacts():
    query = load_query(ContactListQuerySchema())
    items, next_cursor = contacts.list_contacts(db.session, current_agent(), **query)
    return ContactPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_route("/contacts/<int:contact_id>", "GET", summary="One contact with their identities on each network",
           tags=TAGS, response=ContactSchema, roles=VISIBLE, errors=[404])
def get_contact(contact_id: int):
    return ContactSchema().dump(contacts.get_contact(db.session, current_agent(), contact_id))


@api_route("/contacts/<int:contact_id>/conversations", "GET",
           summary="The contact's conversations in brands I serve, newest first", tags=TAGS,
           query=KeysetQuerySchema, response=ContactConversationPageSchema, roles=VISIBLE, errors=[404])
def list_contact_conversations(contact_id: int):
    query = load_query(KeysetQuerySchema())
    items, next_cursor = contacts.contact_conversations(db.session, current_agent(), contact_id, **query)
    return ContactConversationPageSchema().dump({"items": items, "next_cursor": next_cursor})
