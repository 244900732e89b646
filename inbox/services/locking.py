"""The row locks that keep an outbound message's status consistent across the processes writing it.

A send's outcome (`delivery`), the platform's echo and receipts (`ingest`) and the reconciler's "interrupted"
verdict may all write the same message at the same moment. Each takes the conversation's row lock first, then
the message's, always in that order (so they never deadlock), and decides from the rows read fresh after
taking them: whichever commits second sees what the first one wrote. On PostgreSQL the locks are
SELECT ... FOR UPDATE; SQLite has one writer at a time (BEGIN IMMEDIATE), so the fresh read is enough there.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from inbox.models import Conversation, Message


def locked_conversation(session: Session, conversation_id: int, *, with_refs: bool = False) -> Conversation:
    """The conversation, locked for update on PostgreSQL and fresh from the database. `with_refs`: its brand,
    channel and contact joined in the same statement (for its JSON; only the conversation's row is locked)."""
    query = select(Conversation).where(Conversation.id == conversation_id)
    if with_refs:
        query = query.options(joinedload(Conversation.brand), joinedload(Conversation.channel),
                              joinedload(Conversation.contact))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Conversation)
    return session.execute(query.execution_options(populate_existing=True)).unique().scalar_one()


def locked_message(session: Session, message_id: int, conversation_id: int, *, with_refs: bool = False
                   ) -> tuple[Message, Conversation]:
    """The message and its conversation, fresh and locked in that order (the conversation, then the message):
    a send's outcome, an echo or a receipt being applied meanwhile has committed, or waits for this transaction.
    `with_refs`: see locked_conversation."""
    conversation = locked_conversation(session, conversation_id, with_refs=with_refs)
    query = select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.execute(query).scalar_one(), conversation
