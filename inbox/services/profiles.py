"""Customer names and pictures that webhooks do not carry (Messenger sends only the PSID)."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from adapters import meta
from adapters.base import Author, PlatformError
from inbox import realtime
from inbox.db import db
from inbox.models import Channel, Contact, ContactIdentity, Conversation
from inbox.settings import get_settings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6  # a rate-limited lookup is tried again this many times, with backoff (about 15 minutes in all)
# Graph calls of one batch in flight at once: a gathered batch holds up to 200 new customers, and one after the
# other at Graph's ~100-300 ms a call the last name of a burst would show a minute late
LOOKUP_CONCURRENCY = 8


def fetch_contact_profiles(pairs: list[list[int]]) -> tuple[int, list[list[int]], float | None]:
    """Look up [[identity_id, channel_id], ...] for the identities still without a name, with one read
    transaction and one write transaction for the batch (not three per contact) and the Graph GETs
    LOOKUP_CONCURRENCY at a time. Stops at the first rate limit (the next calls would be refused too): returns
    (found, the pairs still to look up, the platform's Retry-After if it gave one)."""
    from inbox.services.delivery import meta_credentials

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
    names, rest, retry_after = _look_up(todo, get_settings().meta_graph_base_url)
    if names:
        store_names(names)
    return len(names), rest, retry_after


_lookups: ThreadPoolExecutor | None = None
_lookups_lock = threading.Lock()


def _look_up(todo: list[tuple[int, int, Any, str]], base_url: str
             ) -> tuple[dict[int, tuple[str, str | None]], list[list[int]], float | None]:
    """The Graph calls of a batch: each page's customers 50 to a call (`meta.get_user_profiles`, a Graph batch
    request; a lone customer by a plain GET), LOOKUP_CONCURRENCY calls at a time (each pool thread over its own
    kept-alive connection: delivery.meta_client). One GET per customer cost the worker ~1 ms of CPU each (HTTP
    in Python), and the last of a burst of 200 waited for 25 rounds of calls before it. A rate limit stops the
    calls not started yet: they and the limited customers are returned to be looked up again, with the largest
    Retry-After given; a customer Graph has no profile for is not asked again."""
    global _lookups
    with _lookups_lock:
        if _lookups is None:
            _lookups = ThreadPoolExecutor(LOOKUP_CONCURRENCY, thread_name_prefix="profile-lookup")
    from inbox.services.delivery import meta_client
    limited = threading.Event()
    calls: list[list[tuple[int, int, Any, str]]] = []
    by_channel: dict[int, list[tuple[int, int, Any, str]]] = {}
    for item in todo:
        by_channel.setdefault(item[1], []).append(item)
    for items in by_channel.values():
        calls += [items[k:k + meta.GRAPH_BATCH_LIMIT] for k in range(0, len(items), meta.GRAPH_BATCH_LIMIT)]

    def call(items: list[tuple[int, int, Any, str]]) -> list[Author | PlatformError | None]:
        if limited.is_set():
            return [None] * len(items)  # not tried: the platform said to wait
        creds, psids = items[0][2], [item[3] for item in items]
        try:
            if len(psids) == 1:
                answers: list[Author | PlatformError] = [meta.get_user_profile(meta_client(base_url), creds, psids[0])]
            else:
                answers = meta.get_user_profiles(meta_client(base_url), creds, psids)
        except PlatformError as exc:
            answers = [exc] * len(psids)
        if any(isinstance(a, PlatformError) and a.retryable for a in answers):
            limited.set()
        return list(answers)

    names: dict[int, tuple[str, str | None]] = {}
    rest: list[list[int]] = []
    waits: list[float] = []
    for items, answers in zip(calls, _lookups.map(call, calls)):
        for (identity_id, channel_id, _creds, psid), answer in zip(items, answers):
            if isinstance(answer, Author):
                if answer.name:
                    names[identity_id] = (answer.name, answer.avatar_url)
            elif answer is None or answer.retryable:
                rest.append([identity_id, channel_id])
                if answer is not None and answer.retry_after is not None:
                    waits.append(answer.retry_after)
            else:
                log.info("no profile for %s: %s", psid, answer)
    return names, rest, max(waits, default=None)


def store_names(names: dict[int, tuple[str, str | None]]) -> None:
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
