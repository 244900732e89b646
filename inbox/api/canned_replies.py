"""Canned replies: management (supervisors and admins), the composer's search, and rendering for a
conversation. Placeholder syntax: `inbox.services.placeholders`."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from inbox.api.schemas import UTC, StrictSchema
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body, load_query
from inbox.db import db
from inbox.models.canned_reply import SCOPES
from inbox.services import canned_replies, placeholders

TAGS = ["canned replies"]
MANAGERS = "administrators (any scope) and supervisors (brand and team scopes they serve)"
_BODY_HELP = ("Placeholders: " + ", ".join("{{" + name + "}}" for name in placeholders.PLACEHOLDERS)
              + '. Fallback when the value is unknown: {{contact.first_name | "client"}}.')

_SHORTCUT = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,63}$",
                            error="1 to 64 lowercase letters, digits, - or _, starting with a letter or digit")
_TITLE = validate.Length(min=1, max=200)
_BODY = validate.Length(min=1, max=5000)
_LANGUAGE = validate.Regexp(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", error="a language code such as fr, en or pt-BR")


class CannedReplySchema(Schema):
    id = fields.Integer()
    shortcut = fields.String()
    title = fields.String()
    body = fields.String()
    placeholders = fields.Method("_placeholders", metadata={"description": "the placeholder names the body uses"})
    scope = fields.String()
    brand_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    language = fields.String(allow_none=True)
    usage_count = fields.Integer()
    archived = fields.Boolean()
    created_by_id = fields.Integer(allow_none=True)
    created_at = UTC()
    updated_at = UTC()

    def _placeholders(self, reply: Any) -> list[str]:
        return placeholders.names_in(reply.body)


class _Normalised:
    """Shortcuts are matched lower-case; titles lose surrounding whitespace."""

    @pre_load
    def _normalise(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("shortcut"), str):
                data["shortcut"] = data["shortcut"].strip().lower()
            if isinstance(data.get("title"), str):
                data["title"] = data["title"].strip()
        return data

    @validates_schema
    def _body_not_blank(self, data: dict[str, Any], **_: Any) -> None:
        if "body" in data and not data["body"].strip():
            raise ValidationError({"body": ["must not be blank"]})


class CannedReplyCreateSchema(_Normalised, StrictSchema):
    shortcut = fields.String(required=True, validate=_SHORTCUT, metadata={"description": 'typed after "/"'})
    title = fields.String(required=True, validate=_TITLE)
    body = fields.String(required=True, validate=_BODY, metadata={"description": _BODY_HELP})
    scope = fields.String(required=True, validate=validate.OneOf(SCOPES))
    brand_id = fields.Integer(strict=True, allow_none=True, load_default=None,
                              metadata={"description": "required when scope is brand, else absent"})
    team_id = fields.Integer(strict=True, allow_none=True, load_default=None,
                             metadata={"description": "required when scope is team, else absent"})
    language = fields.String(allow_none=True, load_default=None, validate=_LANGUAGE)


class CannedReplyPatchSchema(_Normalised, StrictSchema):
    shortcut = fields.String(validate=_SHORTCUT)
    title = fields.String(validate=_TITLE)
    body = fields.String(validate=_BODY, metadata={"description": _BODY_HELP})
    scope = fields.String(validate=validate.OneOf(SCOPES))
    brand_id = fields.Integer(strict=True, allow_none=True)
    team_id = fields.Integer(strict=True, allow_none=True)
    language = fields.String(allow_none=True, validate=_LANGUAGE)
    archived = fields.Boolean(metadata={"description": "false restores an archived reply"})

    @validates_schema
    def _something_to_change(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError({"_schema": ["nothing to change"]})


class CannedReplySearchSchema(StrictSchema):
    q = fields.String(validate=validate.Length(min=1, max=200),
                      metadata={"description": 'what follows "/" in the composer: shortcut prefix, title or body text'})
    conversation_id = fields.Integer(metadata={"description": "only replies usable in this conversation"})
    language = fields.String(validate=_LANGUAGE,
                             metadata={"description": "this language and language-neutral replies, this one first"})
    archived = fields.Boolean(load_default=False)
    limit = fields.Integer(load_default=canned_replies.SEARCH_LIMIT, validate=validate.Range(min=1, max=100))


class RenderRequestSchema(StrictSchema):
    conversation_id = fields.Integer(required=True, strict=True)


class RenderedSchema(Schema):
    text = fields.String()
    missing = fields.List(fields.String(), metadata={"description": "placeholders left without value nor fallback"})


_reply = CannedReplySchema()


@api_route("/canned-replies", "GET", tags=TAGS, query=CannedReplySearchSchema, response=CannedReplySchema(many=True),
           errors=[404], summary="Search canned replies for the composer (shortcut prefix first, then text; "
                                 "conversation language, then most used)")
def search_canned_replies():
    params = load_query(CannedReplySearchSchema())
    found = canned_replies.search_canned_replies(db.session, current_agent(), **params)
    return CannedReplySchema(many=True).dump(found)


@api_route("/canned-replies", "POST", tags=TAGS, body=CannedReplyCreateSchema, response=CannedReplySchema,
           status=201, roles=MANAGERS, errors=[409], summary="Create a canned reply")
@commit_after
def create_canned_reply():
    data = load_body(CannedReplyCreateSchema())
    return _reply.dump(canned_replies.create_canned_reply(db.session, current_agent(), **data)), 201


@api_route("/canned-replies/<int:reply_id>", "GET", tags=TAGS, response=CannedReplySchema, errors=[404],
           summary="One canned reply")
def get_canned_reply(reply_id: int):
    return _reply.dump(canned_replies.get_canned_reply(db.session, current_agent(), reply_id))


@api_route("/canned-replies/<int:reply_id>", "PATCH", tags=TAGS, body=CannedReplyPatchSchema,
           response=CannedReplySchema, roles=MANAGERS, errors=[404, 409],
           summary="Change a canned reply (text, shortcut, language, scope; archived=false restores it)")
@commit_after
def update_canned_reply(reply_id: int):
    changes = load_body(CannedReplyPatchSchema())
    return _reply.dump(canned_replies.update_canned_reply(db.session, current_agent(), reply_id, changes))


@api_route("/canned-replies/<int:reply_id>", "DELETE", tags=TAGS, status=204, roles=MANAGERS, errors=[404],
           summary="Archive a canned reply (it leaves the composer and frees its shortcut)")
@commit_after
def archive_canned_reply(reply_id: int):
    canned_replies.archive_canned_reply(db.session, current_agent(), reply_id)
    return "", 204


@api_route("/canned-replies/<int:reply_id>/render", "POST", tags=TAGS, body=RenderRequestSchema,
           response=RenderedSchema, errors=[404],
           summary="The reply's text filled in for a conversation; counts one use")
@commit_after
def render_canned_reply(reply_id: int):
    data = load_body(RenderRequestSchema())
    result = canned_replies.render_canned_reply(db.session, current_agent(), reply_id, data["conversation_id"])
    return RenderedSchema().dump(result._asdict())
