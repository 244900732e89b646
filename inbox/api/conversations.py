"""Conversations, their messages, replies, claim, changes and comment moderation."""
from __future__ import annotations

from marshmallow import Schema, fields

from inbox.api.schemas import (ConversationListQuerySchema, ConversationPatchSchema, ConversationSchema,
                               MessageSchema, ModerateSchema, PageQuerySchema, ReplySchema)
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body, load_query
from inbox.db import db
from inbox.services import access, conversations, handoff, replies


class CountsSchema(Schema):
    mine = fields.Integer()
    unassigned = fields.Integer()
    all = fields.Integer()


class ConversationPageSchema(Schema):
    items = fields.List(fields.Nested(ConversationSchema))
    next_cursor = fields.String(allow_none=True)
    counts = fields.Nested(CountsSchema)


class MessagePageSchema(Schema):
    items = fields.List(fields.Nested(MessageSchema))
    next_cursor = fields.String(allow_none=True)


_conversation = ConversationSchema()
_message = MessageSchema()
TAGS = ["conversations"]


@api_route("/conversations", "GET", summary="List conversations (filters, sorts, keyset pagination, view counts)",
           tags=TAGS, query=ConversationListQuerySchema, response=ConversationPageSchema)
def list_conversations():
    params = load_query(ConversationListQuerySchema())
    page = conversations.list_conversations(db.session, current_agent(), params)
    links = handoff.links_of(db.session, [c.id for c in page["items"]])  # one query for the page, not one a row
    body = ConversationPageSchema(exclude=("items",)).dump(page)
    body["items"] = ConversationSchema(many=True, links=links).dump(page["items"])
    return body


@api_route("/conversations/<int:conversation_id>", "GET", summary="One conversation", tags=TAGS,
           response=ConversationSchema, errors=[404])
def get_conversation(conversation_id: int):
    return _conversation.dump(access.get_conversation_for(db.session, current_agent(), conversation_id))


@api_route("/conversations/<int:conversation_id>", "PATCH", tags=TAGS, body=ConversationPatchSchema,
           response=ConversationSchema, errors=[404],
           summary="Change status, snooze, priority, labels, assignee (null to unassign) or team")
@commit_after
def patch_conversation(conversation_id: int):
    changes = load_body(ConversationPatchSchema())
    return _conversation.dump(conversations.update_conversation(db.session, current_agent(), conversation_id, changes))


@api_route("/conversations/<int:conversation_id>/claim", "POST", tags=TAGS, response=ConversationSchema,
           errors=[404, 409], summary="Take an unassigned conversation (409 when someone else holds it)")
@commit_after
def claim_conversation(conversation_id: int):
    return _conversation.dump(conversations.claim(db.session, current_agent(), conversation_id))


@api_route("/conversations/<int:conversation_id>/messages", "GET", tags=TAGS, query=PageQuerySchema,
           response=MessagePageSchema, errors=[404], summary="Messages, newest first (next_cursor = older)")
def list_messages(conversation_id: int):
    params = load_query(PageQuerySchema())
    page = conversations.list_messages(db.session, current_agent(), conversation_id, params["limit"],
                                       params.get("cursor"))
    return MessagePageSchema().dump(page)


@api_route("/conversations/<int:conversation_id>/messages", "POST", tags=TAGS, body=ReplySchema,
           response=MessageSchema, status=201, errors=[404, 409],
           summary="Reply (public), private reply (comments) or internal note; replies are sent by a job")
@commit_after
def post_message(conversation_id: int):
    data = load_body(ReplySchema())
    message = replies.create_reply(db.session, current_agent(), conversation_id, text=data["text"],
                                   kind=data["kind"], reply_to_message_id=data.get("reply_to_message_id"),
                                   idempotency_key=data.get("idempotency_key"))
    return _message.dump(message), 201


@api_route("/messages/<int:message_id>/moderate", "POST", tags=TAGS, body=ModerateSchema, response=MessageSchema,
           errors=[404, 409, 502], summary="Hide, unhide, delete or like a customer comment on the platform")
@commit_after
def moderate_message(message_id: int):
    data = load_body(ModerateSchema())
    return _message.dump(replies.moderate_comment(db.session, current_agent(), message_id, data["action"]))


@api_route("/messages/<int:message_id>/retry", "POST", tags=TAGS, response=MessageSchema, errors=[404, 409],
           summary="Send a failed message again")
@commit_after
def retry_message(message_id: int):
    return _message.dump(replies.retry_message(db.session, current_agent(), message_id))
