"""Conversations, their messages, replies, claim, changes and comment moderation."""
from __future__ import annotations

from marshmallow import Schema, fields

from inbox.api.schemas import (ConversationListQuerySchema, ConversationPageDumpMixin, ConversationPatchSchema,
                               ConversationSchema, MessagePageDumpMixin, MessageSchema, ModerateSchema,
                               PageQuerySchema, ReplySchema)
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body, load_query
from inbox.db import db
from inbox.services import conversations, replies


class CountsSchema(Schema):
    mine = fields.Integer()
    unassigned = fields.Integer()
    all = fields.Integer()


class ConversationPageSchema(ConversationPageDumpMixin, Schema):
    """Items rendered by the list query are passed on; model objects get their links in one query
    (ConversationPageDumpMixin)."""
    items = fields.List(fields.Nested(ConversationSchema))
    next_cursor = fields.String(allow_none=True)
    counts = fields.Nested(CountsSchema)


class MessagePageSchema(MessagePageDumpMixin, Schema):
    """Items rendered by services.conversations.list_messages are passed on (MessagePageDumpMixin)."""
    items = fields.List(fields.Nested(MessageSchema))
    next_cursor = fields.String(allow_none=True)


# Built once: instantiating a marshmallow schema costs more than dumping a conversation with it. Schemas hold
# no per-call state (the page's links travel in a context variable), so threads share them.
_conversation = ConversationSchema()
_message = MessageSchema()
_conversation_page = ConversationPageSchema()
_message_page = MessagePageSchema()
_list_query = ConversationListQuerySchema()
_page_query = PageQuerySchema()
_patch = ConversationPatchSchema()
_reply = ReplySchema()
_moderate = ModerateSchema()
TAGS = ["conversations"]


@api_route("/conversations", "GET", summary="List conversations (filters, sorts, keyset pagination, view counts)",
           tags=TAGS, query=ConversationListQuerySchema, response=ConversationPageSchema)
def list_conversations():
    params = load_query(_list_query)
    page = conversations.list_conversations(db.session, current_agent(), params)
    return _conversation_page.dump(page)  # the page's links in one query, not one a row


@api_route("/conversations/<int:conversation_id>", "GET", summary="One conversation", tags=TAGS,
           response=ConversationSchema, errors=[404])
def get_conversation(conversation_id: int):
    return conversations.read_conversation(db.session, current_agent(), conversation_id)  # already its JSON


@api_route("/conversations/<int:conversation_id>", "PATCH", tags=TAGS, body=ConversationPatchSchema,
           response=ConversationSchema, errors=[404],
           summary="Change status, snooze, priority, labels, assignee (null to unassign) or team")
@commit_after
def patch_conversation(conversation_id: int):
    changes = load_body(_patch)
    return _conversation.dump(conversations.update_conversation(db.session, current_agent(), conversation_id, changes))


@api_route("/conversations/<int:conversation_id>/claim", "POST", tags=TAGS, response=ConversationSchema,
           errors=[404, 409], summary="Take an unassigned conversation (409 when someone else holds it)")
@commit_after
def claim_conversation(conversation_id: int):
    return _conversation.dump(conversations.claim(db.session, current_agent(), conversation_id))


@api_route("/conversations/<int:conversation_id>/messages", "GET", tags=TAGS, query=PageQuerySchema,
           response=MessagePageSchema, errors=[404], summary="Messages, newest first (next_cursor = older)")
def list_messages(conversation_id: int):
    params = load_query(_page_query)
    page = conversations.list_messages(db.session, current_agent(), conversation_id, params["limit"],
                                       params.get("cursor"))
    return _message_page.dump(page)


@api_route("/conversations/<int:conversation_id>/messages", "POST", tags=TAGS, body=ReplySchema,
           response=MessageSchema, status=201, errors=[404, 409],
           summary="Reply (public), private reply (comments) or internal note; replies are sent by a job")
@commit_after
def post_message(conversation_id: int):
    data = load_body(_reply)
    message = replies.create_reply(db.session, current_agent(), conversation_id, text=data["text"],
                                   kind=data["kind"], reply_to_message_id=data.get("reply_to_message_id"),
                                   idempotency_key=data.get("idempotency_key"))
    return _message.dump(message), 201


@api_route("/messages/<int:message_id>/moderate", "POST", tags=TAGS, body=ModerateSchema, response=MessageSchema,
           errors=[404, 409, 502], summary="Hide, unhide, delete or like a customer comment on the platform")
@commit_after
def moderate_message(message_id: int):
    data = load_body(_moderate)
    return _message.dump(replies.moderate_comment(db.session, current_agent(), message_id, data["action"]))


@api_route("/messages/<int:message_id>/retry", "POST", tags=TAGS, response=MessageSchema, errors=[404, 409],
           summary="Send a failed message again")
@commit_after
def retry_message(message_id: int):
    return _message.dump(replies.retry_message(db.session, current_agent(), message_id))
