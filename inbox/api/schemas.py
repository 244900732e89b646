"""Marshmallow schemas: every API input and output, and the payload of every live event."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import orjson

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from marshmallow.utils import get_value
from sqlalchemy.orm import object_session

from inbox.db import db
from inbox.models.conversation import PRIORITIES, STATUSES
from inbox.services import windows

UTC = fields.AwareDateTime  # ISO 8601 with offset; naive input is refused


class StrictSchema(Schema):
    """Unknown fields are refused (marshmallow's default RAISE), so a typo is a 422 naming the field."""


# ---------- outputs ----------
class OutputSchema(Schema):
    """A schema dumped often (conversations, messages and their parts: pages, live events). Same attribute lookup
    as marshmallow's `utils.get_value` (item, then attribute; dotted paths), minus its layers of calls: it runs
    for every field of every object dumped."""

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if "." in attr:
            return get_value(obj, attr, default)
        if not hasattr(obj, "__getitem__"):  # model instances
            return getattr(obj, attr, default)
        try:
            return obj[attr]
        except (KeyError, IndexError, TypeError, AttributeError):
            return getattr(obj, attr, default)


class BrandRefSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()


class ChannelRefSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()


class AgentRefSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String()


class ContactRefSchema(OutputSchema):
    id = fields.Integer()
    name = fields.String(allow_none=True)
    handle = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)


class PostSchema(OutputSchema):
    id = fields.Integer()
    external_id = fields.String()
    text = fields.String(allow_none=True)
    permalink = fields.String(allow_none=True)


class LastMessageSchema(OutputSchema):
    text = fields.String(allow_none=True)
    direction = fields.String(allow_none=True)
    at = UTC(allow_none=True)


class ReplyWindowSchema(OutputSchema):
    open = fields.Boolean()
    mode = fields.String()  # standard | human_agent | closed
    closes_at = UTC(allow_none=True)
    human_agent_until = UTC(allow_none=True)


_LAST_MESSAGE = LastMessageSchema()
_REPLY_WINDOW = ReplyWindowSchema()
_sla_clocks_schema: Schema | None = None  # SlaClockSchema(many=True), built at first use (inbox.api.sla imports us)

# The linked ids of the conversations being dumped as a page (`preloaded_links`): one query for the page instead
# of one per conversation. A context variable, so module-level schema instances stay shareable between threads.
_PAGE_LINKS: ContextVar[tuple[frozenset[int], dict[int, list[int]]] | None] = ContextVar("relais_page_links",
                                                                                         default=None)


@contextmanager
def preloaded_links(conversations: Iterable[Any]) -> Iterator[None]:
    """While inside, ConversationSchema takes the linked ids of these conversations from one query
    (services.handoff.links_of) instead of querying each conversation's links as it dumps it."""
    rows = [c for c in conversations if getattr(c, "id", None) is not None]
    session = object_session(rows[0]) if rows else None
    if session is None:
        yield
        return
    from inbox.services.handoff import links_of
    ids = [c.id for c in rows]
    token = _PAGE_LINKS.set((frozenset(ids), links_of(session, ids)))
    try:
        yield
    finally:
        _PAGE_LINKS.reset(token)


def _items_of(page: Any) -> list[Any]:
    items = page.get("items") if isinstance(page, dict) else getattr(page, "items", None)
    return items if isinstance(items, list) else []


class ConversationSchema(OutputSchema):
    id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    priority = fields.String(attribute="priority_name")
    snoozed_until = UTC(allow_none=True)
    labels = fields.List(fields.String())
    brand = fields.Nested(BrandRefSchema)
    channel = fields.Nested(ChannelRefSchema)
    team_id = fields.Integer(allow_none=True)
    team = fields.Method("_team", metadata={"description": "{id, name} of the team holding the conversation, or null"})
    assignee = fields.Nested(AgentRefSchema, allow_none=True)
    contact = fields.Nested(ContactRefSchema)
    post = fields.Nested(PostSchema, allow_none=True)
    last_message = fields.Method("_last_message")
    last_inbound_at = UTC(allow_none=True)
    last_outbound_at = UTC(allow_none=True)
    last_message_at = UTC(allow_none=True)
    waiting_since = UTC(allow_none=True)
    resolved_at = UTC(allow_none=True)
    created_at = UTC()
    updated_at = UTC()
    reply_window = fields.Method("_reply_window")
    sla = fields.Method("_sla")
    language = fields.Method("_language", metadata={
        "type": "string", "nullable": True,
        "description": "the language guessed from the customer's first three texts (\"fr\", \"en\"), or null"})
    linked_conversation_ids = fields.Method("_linked_conversation_ids")

    def __init__(self, *args: Any, links: dict[int, list[int]] | None = None, **kwargs: Any) -> None:
        """`links`: the linked ids of every conversation to dump, loaded at once (services.handoff.links_of),
        so a page of conversations costs one query for them, not one each. Without it, dumping a collection
        (many=True) loads them in one query too; instantiate once and reuse: building a schema is costly."""
        super().__init__(*args, **kwargs)
        self._links = links

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        if (self.many if many is None else many) and self._links is None and isinstance(obj, list) and obj:
            with preloaded_links(obj):
                return super().dump(obj, many=many)
        return super().dump(obj, many=many)

    def _linked_conversation_ids(self, conversation: Any) -> list[int]:
        if self._links is not None:
            return list(self._links.get(conversation.id, ()))
        page = _PAGE_LINKS.get()
        if page is not None and conversation.id in page[0]:
            return list(page[1].get(conversation.id, ()))
        from inbox.services.handoff import linked_ids
        return linked_ids(conversation)

    def _team(self, conversation: Any) -> dict[str, Any] | None:
        return _team_of(conversation)

    def _language(self, conversation: Any) -> str | None:
        return conversation.language or None  # assignment.NO_LANGUAGE (guessed: none) shows as null

    def _last_message(self, conversation: Any) -> dict[str, Any] | None:
        if conversation.last_message_at is None:
            return None
        return _LAST_MESSAGE.dump({"text": conversation.last_message_preview,
                                   "direction": conversation.last_message_direction,
                                   "at": conversation.last_message_at})

    def _reply_window(self, conversation: Any) -> dict[str, Any]:
        from inbox.services.windows import reply_window
        return _REPLY_WINDOW.dump(reply_window(conversation))

    def _sla(self, conversation: Any) -> list[dict[str, Any]]:
        if not conversation.current_sla_clocks:
            return []
        global _sla_clocks_schema
        if _sla_clocks_schema is None:
            from inbox.api.sla import SlaClockSchema  # the SLA routes module owns its schemas
            _sla_clocks_schema = SlaClockSchema(many=True)
        from inbox.services.sla import current_clocks
        return _sla_clocks_schema.dump(current_clocks(conversation))


class RenderedConversation(dict):
    """A conversation already in its ConversationSchema JSON (conversation_item_json): page schemas pass it on."""


class RenderedMessage(dict):
    """A message already in its MessageSchema JSON (message_item_json): page schemas pass it on."""


def _dump_rendered_page(dump: Any, obj: Any, kind: type) -> Any:
    """A page dict whose items are all `kind` (already JSON): the other keys through the schema, the items as
    they are, in the schema's key order. None when the items are objects for the schema to dump."""
    items = _items_of(obj)
    if not items or not isinstance(obj, dict) or not all(type(item) is kind for item in items):
        return None
    out = dump({**obj, "items": []})
    out["items"] = items  # keeps the key's place
    return out


class ConversationPageDumpMixin:
    """For page schemas whose `items` are conversations: items already rendered (services.conversations'
    list pages) are passed on; model objects are dumped with their links loaded in one query for the page."""

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        if many or getattr(self, "many", False):
            return super().dump(obj, many=many)  # type: ignore[misc]
        rendered = _dump_rendered_page(super().dump, obj, RenderedConversation)  # type: ignore[misc]
        if rendered is not None:
            return rendered
        with preloaded_links(_items_of(obj)):
            return super().dump(obj, many=many)  # type: ignore[misc]


class MessagePageDumpMixin:
    """For page schemas whose `items` are messages: items already rendered (services.conversations.list_messages)
    are passed on; model objects are dumped by the schema."""

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        if not (many or getattr(self, "many", False)):
            rendered = _dump_rendered_page(super().dump, obj, RenderedMessage)  # type: ignore[misc]
            if rendered is not None:
                return rendered
        return super().dump(obj, many=many)  # type: ignore[misc]


# ---------- the hot pages without marshmallow ----------
# A queue page is fifty conversations of ~25 fields and 8 nested objects each; dumping them field by field through
# marshmallow cost more than the SQL on a slow CPU. These build the same JSON from plain rows, with the fields'
# own conversions (ISO 8601 for UTC datetimes, the nested dicts in their schema's key order).
# tests/integration/test_list_items.py compares them with the schemas, key order included: a field added to
# ConversationSchema, MessageSchema or SlaClockSchema must be added here too.
def _iso(value: Any) -> str | None:
    """`value.isoformat()`. For a UTC datetime (every UTCDateTime column's, as read or written) orjson's RFC 3339
    text, which is the same string ("+00:00", microseconds only when there are some) at a third of the cost: a
    drain of 2,000 messages formats ~6,000 of them, and `isoformat` was 5-7% of its CPU (py-spy, bench figure 1)."""
    if value is None:
        return None
    if type(value) is datetime and value.tzinfo is timezone.utc:
        return orjson.dumps(value)[1:-1].decode()
    return value.isoformat()


class _Channel:
    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


class _WindowFacts:
    """What services.windows.reply_window reads of a conversation."""
    __slots__ = ("kind", "channel", "last_inbound_at")

    def __init__(self, kind: str, channel: _Channel, last_inbound_at: Any) -> None:
        self.kind, self.channel, self.last_inbound_at = kind, channel, last_inbound_at


class PageRefs:
    """The nested brand, channel, team and assignee dicts of one page, built once per id (fifty conversations share
    a few of each; all come from one statement, so one id has one name)."""
    __slots__ = ("brands", "channels", "teams", "agents")

    def __init__(self) -> None:
        self.brands: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, tuple[dict[str, Any], _Channel]] = {}
        self.teams: dict[int, dict[str, Any]] = {}
        self.agents: dict[int, dict[str, Any]] = {}


def conversation_item_json(row: Any, labels: list[str], clocks: list[dict[str, Any]], links: list[int],
                           refs: PageRefs, now: Any) -> RenderedConversation:
    """ConversationSchema's JSON of one row of services.conversations' item query (conversation columns under
    their own names; brand_name, channel_name, channel_kind, team_name, assignee_name, contact_name / handle /
    avatar_url, post_external_id / text / permalink), given its labels, `sla.current_clocks` dicts and linked ids."""
    brand = refs.brands.get(row.brand_id)
    if brand is None:
        brand = refs.brands[row.brand_id] = {"id": row.brand_id, "name": row.brand_name}
    channel = refs.channels.get(row.channel_id)
    if channel is None:
        channel = refs.channels[row.channel_id] = ({"id": row.channel_id, "name": row.channel_name,
                                                    "kind": row.channel_kind}, _Channel(row.channel_kind))
    team = None
    if row.team_id is not None and row.team_name is not None:
        team = refs.teams.get(row.team_id)
        if team is None:
            team = refs.teams[row.team_id] = {"id": row.team_id, "name": row.team_name}
    assignee = None
    if row.assignee_id is not None:
        assignee = refs.agents.get(row.assignee_id)
        if assignee is None:
            assignee = refs.agents[row.assignee_id] = {"id": row.assignee_id, "name": row.assignee_name}
    post = None
    if row.post_id is not None:
        post = {"id": row.post_id, "external_id": row.post_external_id, "text": row.post_text,
                "permalink": row.post_permalink}
    last_at = row.last_message_at
    window = windows.reply_window(_WindowFacts(row.kind, channel[1], row.last_inbound_at), now)
    return RenderedConversation((
        ("id", row.id),
        ("kind", row.kind),
        ("status", row.status),
        ("priority", PRIORITIES[row.priority]),
        ("snoozed_until", _iso(row.snoozed_until)),
        ("labels", labels),
        ("brand", brand),
        ("channel", channel[0]),
        ("team_id", row.team_id),
        ("team", team),
        ("assignee", assignee),
        ("contact", {"id": row.contact_id, "name": row.contact_name, "handle": row.contact_handle,
                     "avatar_url": row.contact_avatar_url}),
        ("post", post),
        ("last_message", None if last_at is None else {"text": row.last_message_preview,
                                                       "direction": row.last_message_direction,
                                                       "at": last_at.isoformat()}),
        ("last_inbound_at", _iso(row.last_inbound_at)),
        ("last_outbound_at", _iso(row.last_outbound_at)),
        ("last_message_at", _iso(last_at)),
        ("waiting_since", _iso(row.waiting_since)),
        ("resolved_at", _iso(row.resolved_at)),
        ("created_at", _iso(row.created_at)),
        ("updated_at", _iso(row.updated_at)),
        ("reply_window", {"open": window["open"], "mode": window["mode"], "closes_at": _iso(window["closes_at"]),
                          "human_agent_until": _iso(window["human_agent_until"])}),
        ("sla", [sla_clock_json(clock) for clock in clocks]),
        ("language", row.language or None),  # NO_LANGUAGE (guessed: none) shows as null
        ("linked_conversation_ids", list(links)),
    ))


def _team_of(conversation: Any) -> dict[str, Any] | None:
    """The `team` of a loaded conversation's JSON, from the per-process copy of the team names."""
    from inbox.services.team_names import team_ref  # the services import this module
    return team_ref(object_session(conversation) or db.session, conversation.team_id)


class _ConversationColumns:
    """A loaded Conversation seen as a row of the list item query, for conversation_item_json. Its brand, channel,
    contact, assignee and post are read from the relationships (the caller has them in the session), its team's
    name from the per-process copy (services.team_names)."""
    __slots__ = ("_conversation", "_loaded", "brand_name", "channel_name", "channel_kind", "assignee_name",
                 "contact_name", "contact_handle", "contact_avatar_url", "post_external_id", "post_text",
                 "post_permalink", "team_name")

    def __init__(self, conversation: Any, channel: Any = None, contact: Any = None) -> None:
        self._conversation = conversation
        self._loaded = conversation.__dict__  # the ORM keeps a loaded column's current value there
        self.brand_name = conversation.brand.name
        team = _team_of(conversation)
        self.team_name = team["name"] if team is not None else None
        channel = channel or conversation.channel
        self.channel_name, self.channel_kind = channel.name, channel.kind
        self.assignee_name = conversation.assignee.name if conversation.assignee_id is not None else None
        contact = contact or conversation.contact
        self.contact_name, self.contact_handle, self.contact_avatar_url = contact.name, contact.handle, \
            contact.avatar_url
        post = conversation.post if conversation.post_id is not None else None
        self.post_external_id, self.post_text, self.post_permalink = \
            (post.external_id, post.text, post.permalink) if post is not None else (None, None, None)

    def __getattr__(self, name: str) -> Any:
        """The conversation's own columns: read from the instance's dict, as the attribute would return it, and
        through the attribute (which loads it) only when it is not loaded (expired, deferred). The descriptor per
        column was 1.5% of a 10-entry drain's CPU (py-spy)."""
        try:
            return self._loaded[name]
        except KeyError:
            return getattr(self._conversation, name)


def conversation_model_json(conversation: Any, links: list[int], refs: PageRefs, now: Any, *, channel: Any = None,
                            contact: Any = None) -> RenderedConversation:
    """ConversationSchema's JSON of a loaded Conversation (ingest's live events), given its linked ids: the list
    items' conversation_item_json over its attributes, a fraction of marshmallow's cost per conversation.
    `channel` / `contact`: the conversation's, when the caller holds them (else read through the relationships:
    a lazy load, answered from the session's identity map at best, per conversation)."""
    from inbox.services.sla import current_clocks
    return conversation_item_json(_ConversationColumns(conversation, channel, contact), conversation.labels,
                                  current_clocks(conversation, now), links, refs, now)


def sla_clock_json(clock: dict[str, Any]) -> dict[str, Any]:
    """SlaClockSchema's JSON (inbox.api.sla) of one `sla.current_clocks` dict."""
    business, calendar = clock["business_seconds_left"], clock["calendar_seconds_left"]
    return {"metric": clock["metric"], "state": clock["state"], "cycle": clock["cycle"], "turn": clock["turn"],
            "due_at": _iso(clock["due_at"]), "warning_at": _iso(clock["warning_at"]),
            "started_at": _iso(clock["started_at"]), "stopped_at": _iso(clock["stopped_at"]),
            "business_seconds_left": None if business is None else float(business),
            "calendar_seconds_left": None if calendar is None else float(calendar)}


_EXTRA_SHOWN = ("quick_reply_payload", "postback_payload", "tag", "activity")


def message_item_json(m: Any) -> RenderedMessage:
    """MessageSchema's JSON of one message row (the Message columns it shows, under their own names)."""
    extra = m.extra or {}
    return RenderedMessage((
        ("id", m.id),
        ("conversation_id", m.conversation_id),
        ("direction", m.direction),
        ("kind", m.kind),
        ("reply_type", m.reply_type),
        ("text", m.text),
        ("attachments", [{"type": a.get("type"), "url": a.get("url")} for a in (m.attachments or [])]),
        ("author", {"type": m.author_type,
                    "id": m.author_agent_id if m.author_type == "agent" else m.author_contact_id,
                    "name": m.author_name}),
        ("platform_time", _iso(m.platform_time)),
        ("received_at", _iso(m.received_at)),
        ("delivery_status", m.delivery_status),
        ("delivery_error", m.delivery_error),
        ("external_id", m.external_id),
        ("edited", m.edited_at is not None),
        ("edited_at", _iso(m.edited_at)),
        ("deleted", m.deleted_at is not None),
        ("hidden", m.hidden),
        ("liked", m.liked),
        ("reply_to_id", m.reply_to_id),
        ("extra", {k: extra[k] for k in _EXTRA_SHOWN if k in extra}),
    ))


class AttachmentSchema(OutputSchema):
    type = fields.String()
    url = fields.String(allow_none=True)


class AuthorSchema(OutputSchema):
    type = fields.String()
    id = fields.Integer(allow_none=True)
    name = fields.String(allow_none=True)


class MessageSchema(OutputSchema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    direction = fields.String()
    kind = fields.String()
    reply_type = fields.String(allow_none=True)
    text = fields.String(allow_none=True)
    attachments = fields.Method("_attachments")
    author = fields.Method("_author")
    platform_time = UTC()
    received_at = UTC()
    delivery_status = fields.String(allow_none=True)
    delivery_error = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)
    edited = fields.Method("_edited")
    edited_at = UTC(allow_none=True)
    deleted = fields.Method("_deleted")
    hidden = fields.Boolean()
    liked = fields.Boolean()
    reply_to_id = fields.Integer(allow_none=True)
    extra = fields.Method("_extra")

    def _attachments(self, m: Any) -> list[dict[str, Any]]:
        return [{"type": a.get("type"), "url": a.get("url")} for a in (m.attachments or [])]

    def _author(self, m: Any) -> dict[str, Any]:
        author_id = m.author_agent_id if m.author_type == "agent" else m.author_contact_id
        return {"type": m.author_type, "id": author_id, "name": m.author_name}

    def _edited(self, m: Any) -> bool:
        return m.edited_at is not None

    def _deleted(self, m: Any) -> bool:
        return m.deleted_at is not None

    def _extra(self, m: Any) -> dict[str, Any]:
        extra = m.extra or {}
        return {k: extra[k] for k in ("quick_reply_payload", "postback_payload", "tag", "activity") if k in extra}


class AgentSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    availability = fields.String()
    is_active = fields.Boolean()
    language = fields.String(allow_none=True)
    capacity = fields.Integer()
    team_ids = fields.Method("_team_ids")

    def _team_ids(self, agent: Any) -> list[int]:
        return sorted(m.team_id for m in agent.memberships)


class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)


# ---------- inputs ----------
class LoginSchema(StrictSchema):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class ReplySchema(StrictSchema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    kind = fields.String(load_default="reply", validate=validate.OneOf(["reply", "note", "private_reply"]))
    reply_to_message_id = fields.Integer(load_default=None, allow_none=True)
    idempotency_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8, max=64))

    @validates_schema
    def _text_not_blank(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("text", "").strip():
            raise ValidationError({"text": ["must not be blank"]})


class ConversationPatchSchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    snoozed_until = UTC(allow_none=True)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    labels = fields.List(fields.String(validate=validate.Length(min=1, max=100)), validate=validate.Length(max=50))
    assignee_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)

    @validates_schema
    def _coherent(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError({"_schema": ["nothing to change"]})
        if data.get("status") == "snoozed" and not data.get("snoozed_until"):
            raise ValidationError({"snoozed_until": ["required when status is snoozed"]})


# A text search `q` needs 3 characters: the trigram indexes cannot narrow anything shorter, and one or two letters
# match most conversations anyway (services.conversations searches with a bounded cost per page).
SEARCH_MIN_CHARACTERS = 3


def _search_text(value: str) -> None:
    if len(value) >= SEARCH_MIN_CHARACTERS > len(value.strip()):  # shorter ones fail the Length check
        raise ValidationError(f"at least {SEARCH_MIN_CHARACTERS} characters besides spaces")


class ConversationListQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    assignee = fields.String()          # me | none | <agent id>
    team_id = fields.Integer()
    brand_id = fields.Integer()
    channel_id = fields.Integer()
    channel_kind = fields.String()
    kind = fields.String(validate=validate.OneOf(["dm", "comment"]))
    label = fields.String()
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    q = fields.String(validate=[validate.Length(min=SEARCH_MIN_CHARACTERS, max=200,
                                                error=f"between {SEARCH_MIN_CHARACTERS} and 200 characters"),
                                _search_text],
                      metadata={"description": "text in the contact's name or handle or in any message; newest "
                                               "first whatever `sort`; a page may hold fewer than `limit` items "
                                               "with a next_cursor (the search examined a bounded slice); no counts"})
    contact_id = fields.Integer()
    sla = fields.String(validate=validate.OneOf(["due", "at_risk", "breached"]))
    sort = fields.String(load_default="waiting", validate=validate.OneOf(["waiting", "newest", "sla_due"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String()
    counts = fields.Boolean(load_default=True)

    @validates_schema
    def _assignee(self, data: dict[str, Any], **_: Any) -> None:
        value = data.get("assignee")
        if value is not None and value not in ("me", "none") and not value.isdigit():
            raise ValidationError({"assignee": ["expected me, none or an agent id"]})


class PageQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String()


class ModerateSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(["hide", "unhide", "delete", "like"]))


# ---------- auth, administration, contacts ----------
from marshmallow import pre_load  # noqa: E402

from inbox.models.channel import CHANNEL_KINDS  # noqa: E402
from inbox.models.org import AVAILABILITIES, ROLES  # noqa: E402
from inbox.models.webhook_event import EVENT_STATUSES  # noqa: E402
from inbox.services.auth import MIN_PASSWORD_LENGTH  # noqa: E402

_CURSOR = validate.Regexp(r"^[0-9]{1,18}$", error="not a cursor returned by this list")


def _dotted(messages: Any, prefix: str = "") -> dict[str, Any]:
    """{"config": {"page_id": [...]}} -> {"config.page_id": [...]}: every error names its field path."""
    if not isinstance(messages, dict):
        return {prefix or "_schema": messages}
    flat: dict[str, Any] = {}
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix and key != "_schema" else (prefix or str(key))
        if isinstance(value, dict):
            flat.update(_dotted(value, path))
        else:
            flat[path] = value
    return flat


class DottedStrictSchema(StrictSchema):
    """A StrictSchema whose nested errors are reported with dotted paths (`config.page_id`)."""

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs: Any) -> None:
        raise ValidationError(_dotted(error.messages), data=data, valid_data=error.valid_data)


class _NotEmpty:
    """PATCH bodies must change something."""

    @validates_schema
    def _something_to_change(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError({"_schema": ["nothing to change"]})


class _Stripped:
    """Surrounding whitespace of names is noise; strip it before the length checks."""
    strip_fields: tuple[str, ...] = ("name",)

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in self.strip_fields:
                if isinstance(data.get(key), str):
                    data[key] = data[key].strip()
        return data


_NAME = validate.Length(min=1, max=200)
_PASSWORD = validate.Length(min=MIN_PASSWORD_LENGTH, max=1024,
                            error=f"between {MIN_PASSWORD_LENGTH} and 1024 characters")


def _ids(**kwargs: Any) -> fields.Field:
    return fields.List(fields.Integer(strict=True), validate=validate.Length(max=500), **kwargs)


class LoginResponseSchema(Schema):
    agent = fields.Nested(AgentSchema)
    csrf_token = fields.String(allow_none=True)


class AgentBriefSchema(Schema):
    """What an agent sees of teammates: enough for presence and assignment, no email."""
    id = fields.Integer()
    name = fields.String()
    availability = fields.String()


class MePatchSchema(_NotEmpty, _Stripped, StrictSchema):
    availability = fields.String(validate=validate.OneOf(AVAILABILITIES))
    name = fields.String(validate=_NAME)
    language = fields.String(allow_none=True, validate=validate.Length(min=2, max=10))


class PasswordChangeSchema(StrictSchema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, validate=_PASSWORD)


class ApiTokenCreateSchema(_Stripped, StrictSchema):
    name = fields.String(required=True, validate=_NAME)


class ApiTokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    created_at = UTC()
    last_used_at = UTC(allow_none=True)


class ApiTokenCreatedSchema(ApiTokenSchema):
    token = fields.String(metadata={"description": "the clear token, shown only in this response"})


class BrandSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    created_at = UTC()


class BrandCreateSchema(_Stripped, StrictSchema):
    name = fields.String(required=True, validate=_NAME)


class BrandPatchSchema(_NotEmpty, _Stripped, StrictSchema):
    name = fields.String(validate=_NAME)


_PAGE_ID = validate.Regexp(r"^[0-9]{1,64}$", error="digits only")


def _access_token() -> fields.Field:
    return fields.String(validate=validate.Length(min=1, max=4000), metadata={"description": "facebook_page"})


def _app_secret() -> fields.Field:
    return fields.String(validate=validate.Length(min=1, max=500), metadata={"description": "facebook_page"})


def _verify_token() -> fields.Field:
    return fields.String(validate=validate.Length(min=8, max=200),
                         metadata={"description": "facebook_page; generated when absent"})


def _webhook_url() -> fields.Field:
    return fields.Url(allow_none=True, schemes={"http", "https"}, require_tld=False,
                      validate=validate.Length(max=2000),
                      metadata={"description": "api: where Relais POSTs replies (optional)"})


class ChannelConfigSchema(StrictSchema):
    """Every setting a channel kind may take; which ones are required depends on `kind`."""
    page_id = fields.String(validate=_PAGE_ID, metadata={"description": "facebook_page"})
    access_token = _access_token()
    app_secret = _app_secret()
    verify_token = _verify_token()
    webhook_url = _webhook_url()


class ChannelCreateSchema(_Stripped, DottedStrictSchema):
    brand_id = fields.Integer(required=True, strict=True)
    kind = fields.String(required=True, validate=validate.OneOf(CHANNEL_KINDS))
    name = fields.String(required=True, validate=_NAME)
    config = fields.Nested(ChannelConfigSchema, load_default=dict,
                           metadata={"description": "facebook_page: page_id, access_token, app_secret, "
                                                    "verify_token (optional); api: webhook_url (optional)"})


class ChannelConfigPatchSchema(StrictSchema):
    """Credential rotation and settings; the page id of a connected page never changes."""
    access_token = _access_token()
    app_secret = _app_secret()
    verify_token = _verify_token()
    webhook_url = _webhook_url()


class ChannelPatchSchema(_NotEmpty, _Stripped, DottedStrictSchema):
    name = fields.String(validate=_NAME)
    status = fields.String(validate=validate.OneOf(["active", "disabled"]))
    config = fields.Nested(ChannelConfigPatchSchema)


class ChannelSchema(Schema):
    """A channel as admins see it: secrets masked (`crypto.mask`), never in clear."""
    id = fields.Integer()
    brand = fields.Nested(BrandRefSchema)
    brand_id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    external_id = fields.String(allow_none=True)
    status = fields.String()
    status_detail = fields.String(allow_none=True)
    config = fields.Dict()
    credentials = fields.Method("_credentials", metadata={"description": "the secrets, masked"})
    webhook = fields.Method("_webhook", metadata={"description": "callback_url (Meta) or inbound_url (API)"})
    created_at = UTC()
    updated_at = UTC()

    def _credentials(self, channel: Any) -> dict[str, str | None]:
        from inbox.crypto import mask
        from inbox.services.channels import credentials
        return {key: mask(value) for key, value in sorted(credentials(channel).items())}

    def _webhook(self, channel: Any) -> dict[str, str]:
        from inbox.services.channels import webhook_urls
        return webhook_urls(channel)


class ChannelCreatedSchema(ChannelSchema):
    secrets = fields.Dict(metadata={"description": "clear secrets to paste into the platform, shown only once"})


class TeamSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    brand_ids = fields.Method("_brand_ids")
    member_ids = fields.Method("_member_ids")
    created_at = UTC()

    def _brand_ids(self, team: Any) -> list[int]:
        return sorted(row.brand_id for row in team.brands)

    def _member_ids(self, team: Any) -> list[int]:
        return sorted(row.agent_id for row in team.members)


class TeamCreateSchema(_Stripped, DottedStrictSchema):
    name = fields.String(required=True, validate=_NAME)
    brand_ids = _ids(load_default=list)
    member_ids = _ids(load_default=list)


class TeamPatchSchema(_NotEmpty, _Stripped, DottedStrictSchema):
    name = fields.String(validate=_NAME)
    brand_ids = _ids()
    member_ids = _ids()


class AgentCreateSchema(_Stripped, DottedStrictSchema):
    strip_fields = ("name", "email")
    email = fields.Email(required=True, validate=validate.Length(max=320))
    name = fields.String(required=True, validate=_NAME)
    role = fields.String(load_default="agent", validate=validate.OneOf(ROLES))
    password = fields.String(validate=_PASSWORD, metadata={"description": "generated and returned once if absent"})
    team_ids = _ids(load_default=list)
    capacity = fields.Integer(strict=True, load_default=20, validate=validate.Range(min=0, max=1000))
    language = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=2, max=10))


class AgentCreatedSchema(AgentSchema):
    password = fields.String(allow_none=True,
                             metadata={"description": "the generated password, shown only in this response"})


class AgentPatchSchema(_NotEmpty, _Stripped, DottedStrictSchema):
    name = fields.String(validate=_NAME)
    role = fields.String(validate=validate.OneOf(ROLES))
    is_active = fields.Boolean()
    team_ids = _ids()
    capacity = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))
    language = fields.String(allow_none=True, validate=validate.Length(min=2, max=10))
    password = fields.String(validate=_PASSWORD, metadata={"description": "reset; signs the agent out everywhere"})


class WebhookEventQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(EVENT_STATUSES))
    source = fields.String(validate=validate.Length(min=1, max=32))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=_CURSOR)


WEBHOOK_BODY_SHOWN = 64 * 1024
REDACTED_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}


class WebhookEventSchema(Schema):
    """A raw webhook as received; the body as UTF-8 text (invalid bytes replaced), cut at 64 KiB."""
    id = fields.Integer()
    source = fields.String()
    channel_id = fields.Integer(allow_none=True)
    received_at = UTC()
    remote_addr = fields.String(allow_none=True)
    headers = fields.Method("_headers")
    body = fields.Method("_body")
    body_size = fields.Method("_body_size")
    body_truncated = fields.Method("_body_truncated")
    verification = fields.String()
    verification_detail = fields.String(allow_none=True)
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = UTC(allow_none=True)
    error = fields.String(allow_none=True)
    processed_at = UTC(allow_none=True)
    stats = fields.Dict()

    def _headers(self, event: Any) -> dict[str, Any]:
        # the webhook endpoints keep only harmless headers; credentials that slipped in are never shown
        return {name: "[redacted]" if name.lower() in REDACTED_HEADERS else value
                for name, value in (event.headers or {}).items()}

    def _body(self, event: Any) -> str:
        return bytes(event.body or b"")[:WEBHOOK_BODY_SHOWN].decode("utf-8", errors="replace")

    def _body_size(self, event: Any) -> int:
        return len(event.body or b"")

    def _body_truncated(self, event: Any) -> bool:
        return len(event.body or b"") > WEBHOOK_BODY_SHOWN


class WebhookEventPageSchema(PageSchema):
    items = fields.List(fields.Nested(WebhookEventSchema))


class ContactIdentitySchema(Schema):
    channel_kind = fields.String()
    external_id = fields.String()
    name = fields.String(allow_none=True)
    handle = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)


class ContactSchema(ContactRefSchema):
    identities = fields.List(fields.Nested(ContactIdentitySchema))
    created_at = UTC()
    updated_at = UTC()


class ContactPageSchema(PageSchema):
    items = fields.List(fields.Nested(ContactSchema))


class ContactConversationPageSchema(ConversationPageDumpMixin, PageSchema):
    items = fields.List(fields.Nested(ConversationSchema))


class ContactListQuerySchema(StrictSchema):
    q = fields.String(validate=validate.Length(min=1, max=200))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=_CURSOR)


class KeysetQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=_CURSOR)
