"""Customer names and pictures that webhooks do not carry (Messenger sends only the PSID)."""
from __future__ import annotations

import logging

from sqlalchemy import select

from adapters import meta
from adapters.base import PlatformError
from inbox import realtime
from inbox.api.schemas import ConversationSchema
from inbox.db import db
from inbox.models import Channel, Contact, ContactIdentity, Conversation

log = logging.getLogger(__name__)
_conversation_schema = ConversationSchema()
MAX_ATTEMPTS = 6  # a rate-limited lookup is tried again this many times, with backoff (about 15 minutes in all)


class RetryLater(Exception):
    """The platform is rate-limiting or briefly failing: ask again after `after` seconds (its Retry-After)."""

    def __init__(self, after: float | None) -> None:
        super().__init__(f"retry after {after}s")
        self.after = after


def fetch_contact_profiles(pairs: list[list[int]], attempt: int = 0) -> tuple[int, list[list[int]], float | None]:
    """Look up [[identity_id, channel_id], ...] in order. Stops at the first rate limit (the next calls would be
    refused too): returns (found, the pairs still to look up, the platform's Retry-After if it gave one)."""
    found = 0
    for index, (identity_id, channel_id) in enumerate(pairs):
        try:
            found += fetch_contact_profile(identity_id, channel_id)
        except RetryLater as later:
            return found, [list(p) for p in pairs[index:]], later.after
    return found, [], None


def fetch_contact_profile(identity_id: int, channel_id: int) -> bool:
    """Ask the platform for the identity's name and picture; on success update the contact and publish
    conversation.updated for its conversations. A permanent refusal is logged and left (the PSID stays the
    label); a rate limit or a transient failure raises RetryLater."""
    from inbox.services.delivery import meta_client, meta_credentials

    with db.transaction() as session:
        identity = session.get(ContactIdentity, identity_id)
        channel = session.get(Channel, channel_id)
        if identity is None or channel is None or channel.kind != "facebook_page" or identity.name:
            return False
        creds = meta_credentials(channel)
        psid = identity.external_id
    try:
        author = meta.get_user_profile(meta_client(), creds, psid)
    except PlatformError as exc:
        if exc.retryable:
            raise RetryLater(exc.retry_after) from exc
        log.info("no profile for %s: %s", psid, exc)
        return False
    if not author.name:
        return False
    with db.transaction() as session:
        identity = session.get(ContactIdentity, identity_id)
        if identity is None:
            return False
        identity.name, identity.avatar_url = author.name, author.avatar_url or identity.avatar_url
        contact = session.get(Contact, identity.contact_id)
        if contact is not None and not contact.name:
            contact.name, contact.avatar_url = author.name, author.avatar_url or contact.avatar_url
        session.flush()
        for conversation in session.execute(select(Conversation).where(
                Conversation.contact_id == identity.contact_id)).scalars():
            realtime.publish(session, "conversation.updated", _conversation_schema.dump(conversation),
                             realtime.conversation_rooms(conversation.brand_id, conversation.id))
    return True
