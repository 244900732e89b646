"""Customer names and pictures that webhooks do not carry (Messenger sends only the PSID)."""
from __future__ import annotations

import logging

from sqlalchemy import select

from adapters import meta
from adapters.base import PlatformError
from inbox import realtime
from inbox.db import db
from inbox.models import Channel, Contact, ContactIdentity, Conversation

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6  # a rate-limited lookup is tried again this many times, with backoff (about 15 minutes in all)


def fetch_contact_profiles(pairs: list[list[int]]) -> tuple[int, list[list[int]], float | None]:
    """Look up [[identity_id, channel_id], ...] for the identities still without a name, with one read
    transaction, one Graph client and one write transaction for the batch (not three of each per contact).
    Stops at the first rate limit (the next calls would be refused too): returns (found, the pairs still to
    look up, the platform's Retry-After if it gave one)."""
    from inbox.services.delivery import meta_client, meta_credentials

    with db.transaction() as session:  # two reads for the batch (it gathers many drains' new customers)
        identities = {i.id: i for i in session.scalars(
            select(ContactIdentity).where(ContactIdentity.id.in_(sorted({p[0] for p in pairs}))))}
        channels = {c.id: c for c in session.scalars(
            select(Channel).where(Channel.id.in_(sorted({p[1] for p in pairs}))))}
        todo, seen, creds_of = [], set(), {}
        for identity_id, channel_id in pairs:
            identity, channel = identities.get(identity_id), channels.get(channel_id)
            if identity is None or channel is None or channel.kind != "facebook_page" or identity.name \
                    or identity_id in seen:
                continue
            seen.add(identity_id)
            if channel_id not in creds_of:
                creds_of[channel_id] = meta_credentials(channel)
            todo.append((identity_id, channel_id, creds_of[channel_id], identity.external_id))
    client = meta_client()
    names: dict[int, tuple[str, str | None]] = {}
    rest: list[list[int]] = []
    retry_after: float | None = None
    for index, (identity_id, _channel_id, creds, psid) in enumerate(todo):
        try:
            author = meta.get_user_profile(client, creds, psid)
        except PlatformError as exc:
            if exc.retryable:
                rest, retry_after = [[i, c] for i, c, _creds, _psid in todo[index:]], exc.retry_after
                break
            log.info("no profile for %s: %s", psid, exc)
            continue
        if author.name:
            names[identity_id] = (author.name, author.avatar_url)
    if names:
        _store_names(names)
    return len(names), rest, retry_after


def _store_names(names: dict[int, tuple[str, str | None]]) -> None:
    """Name the identities (and their contacts when unnamed) and publish `contact.updated` for each named contact
    to the brands where it has a conversation, in one transaction.

    `contact.updated` carries what a conversation shows of its contact ({"id", "name", "handle", "avatar_url"}, the
    `contact` of ConversationSchema): the console patches the rows and the open conversation it holds. A new
    customer's name arrives a moment after its first message; a full `conversation.updated` per conversation sent
    every agent of the brand the whole conversation again (~1 KB each, 500 agents, while every new customer of a
    burst also brings its `conversation.created`: bench figure 2's start-up)."""
    with db.transaction() as session:
        named: dict[int, Contact] = {}
        identities = list(session.scalars(select(ContactIdentity).where(ContactIdentity.id.in_(sorted(names)))
                                          .order_by(ContactIdentity.id)))
        contacts = {c.id: c for c in session.scalars(select(Contact).where(
            Contact.id.in_(sorted({i.contact_id for i in identities}))).order_by(Contact.id))}
        for identity in identities:
            name, avatar_url = names[identity.id]
            identity.name, identity.avatar_url = name, avatar_url or identity.avatar_url
            contact = contacts.get(identity.contact_id)
            if contact is not None and not contact.name:
                contact.name, contact.avatar_url = name, avatar_url or contact.avatar_url
                named[contact.id] = contact
        if not named:
            return
        brands: dict[int, set[int]] = {}
        for contact_id, brand_id in session.execute(
                select(Conversation.contact_id, Conversation.brand_id).distinct()
                .where(Conversation.contact_id.in_(sorted(named)))):
            brands.setdefault(contact_id, set()).add(brand_id)
        for contact_id in sorted(brands):
            contact = named[contact_id]
            # the conversations' own rooms, in their order: a round's frame to a brand carries both kinds of event
            rooms = list(dict.fromkeys(room for brand_id in sorted(brands[contact_id])
                                       for room in realtime.conversation_rooms(brand_id)))
            realtime.publish(session, "contact.updated", {"id": contact.id, "name": contact.name,
                                                          "handle": contact.handle, "avatar_url": contact.avatar_url},
                             rooms)
