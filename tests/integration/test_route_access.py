"""Every API route, walked as anonymous, agent, supervisor and admin, and across brands.

Checked for each route in `inbox.api.spec.ROUTES` (and the app's /api/v1 rules, so an undocumented route
cannot hide):
- no 500, ever (another 5xx only when the route documents it, e.g. 502 when the platform refuses);
- anonymous callers get 401, except on public routes;
- routes listed in MINIMUM_ROLE refuse lower roles with 403 and serve the others; routes not listed follow
  the default rule: a signed-in agent gets neither 401 nor a 5xx;
- an agent or supervisor never reads nor changes what belongs to another brand: with the other brand's
  ids in the path, reads are 404 (403 when their role is below the route's MINIMUM_ROLE) and writes are
  refused (403 / 404) with the database unchanged; no answer they get, even when they filter on the other
  brand's ids, contains text planted in the other brand's contact, post and messages;
- inputs are strict: an unknown body field or query parameter is a 422 naming it.

Ids in paths are chosen by parameter name (ID_PARAMETERS); request bodies are generated from the route's
own schema. A route added later is walked with no change here.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, validate

import inbox.api
from inbox.api.schemas import StrictSchema
from inbox.api.spec import ROUTES, RouteDoc
from inbox.db import db, utcnow
from inbox.models import (Agent, ApiToken, Brand, Contact, ContactIdentity, Conversation, ConversationLabel, Message,
                          Post, Team, TeamBrand, TeamMember, WebhookEvent)
from inbox.services.auth import create_api_token, hash_password
from tests import factories
from tests.conftest import wait_for_jobs
from tests.factories import World

# importing every module of the API package registers its routes, so they can be listed at collection time
for _module in pkgutil.iter_modules(inbox.api.__path__):
    importlib.import_module(f"inbox.api.{_module.name}")

PREFIX = "/api/v1"
PUBLIC = {"api.login", "api.openapi_document"}
UNDOCUMENTED = {"api.openapi_document"}  # the OpenAPI document itself
RANK = {"agent": 1, "supervisor": 2, "admin": 3}
# The lowest role a route serves. Routes not listed: any signed-in agent, possibly with a 403 for a
# business rule (e.g. reassigning someone else's conversation), never a 401 or a 5xx.
MINIMUM_ROLE = {
    **{endpoint: "agent" for endpoint in (
        "api.me", "api.update_me", "api.logout", "api.change_password", "api.create_token", "api.list_tokens",
        "api.revoke_token", "api.list_brands", "api.get_brand", "api.list_agents", "api.get_agent",
        "api.list_contacts", "api.get_contact", "api.list_contact_conversations")},
    **{endpoint: "supervisor" for endpoint in ("api.list_teams", "api.get_team")},
    **{endpoint: "admin" for endpoint in (
        "api.create_brand", "api.update_brand", "api.create_channel", "api.list_channels", "api.get_channel",
        "api.update_channel", "api.rotate_channel_secret", "api.create_team", "api.update_team",
        "api.delete_team", "api.create_agent", "api.update_agent", "api.list_webhook_events",
        "api.get_webhook_event", "api.replay_webhook_event")},
}
# path parameters that name something of a brand: the cross-brand checks put the other brand's one there
SCOPED_PARAMETERS = {"brand_id", "team_id", "agent_id", "contact_id", "conversation_id", "message_id", "post_id",
                     "token_id"}
OWN_MARK = "Quetzal-own-4b1e"      # planted in the agents' brand (Maison Lune)
OTHER_MARK = "Zorglub-other-7f3a"  # planted in the other brand (Vélo Vert)
UNKNOWN_ID = 987654321


# ---------------------------------------------------------------- the scene
@dataclass
class Side:
    """What one brand holds, as ids."""
    brand_id: int
    team_id: int
    page_channel_id: int
    contact_id: int
    conversation_id: int
    message_id: int
    post_id: int


@dataclass
class Scene:
    world: World
    own: Side                       # Maison Lune: the brand of agent, agent2 and supervisor
    other: Side                     # Vélo Vert: the outsider's brand
    event_id: int
    tokens: dict[str, str] = field(default_factory=dict)        # caller -> bearer token
    spare_tokens: dict[str, int] = field(default_factory=dict)  # caller -> id of a token they may revoke

    def agent_id(self, caller: str) -> int:
        return self.world.agent_ids[getattr(self.world, caller)]


def _plant(brand_id: int, channel_id: int, mark: str, key: str) -> tuple[int, int, int, int]:
    now = utcnow()
    contact = Contact(name=f"{mark} person", handle=f"{mark}.handle")
    post = Post(channel_id=channel_id, external_id=f"post_{key}", text=f"{mark} post")
    db.session.add_all([contact, post])
    db.session.flush()
    db.session.add(ContactIdentity(contact_id=contact.id, channel_kind="facebook", external_id=f"psid_{key}",
                                   name=f"{mark} person"))
    conversation = Conversation(kind="comment", status="open", brand_id=brand_id, channel_id=channel_id,
                                contact_id=contact.id, thread_key=f"comment:post_{key}:psid_{key}", post_id=post.id,
                                first_inbound_at=now, last_inbound_at=now, last_message_at=now, waiting_since=now,
                                last_message_preview=f"{mark} comment", last_message_direction="in")
    db.session.add(conversation)
    db.session.flush()
    db.session.add(ConversationLabel(conversation_id=conversation.id, label="vip"))
    message = Message(conversation_id=conversation.id, channel_id=channel_id, direction="in", kind="comment",
                      external_id=f"comment_{key}", author_type="contact", author_contact_id=contact.id,
                      author_name=f"{mark} person", text=f"{mark} comment", platform_time=now, received_at=now,
                      attachments=[], edit_history=[], extra={})
    db.session.add(message)
    db.session.flush()
    return contact.id, conversation.id, message.id, post.id


def build_scene(world: World) -> Scene:
    """The world, plus a contact / post / comment conversation in each brand, a raw webhook event, and two
    API tokens per caller (one to call with, one they may revoke). Call inside an app context."""
    own = _plant(world.brand_id, world.page_channel_id, OWN_MARK, "own")
    other = _plant(world.other_brand_id, world.other_page_channel_id, OTHER_MARK, "other")
    event = WebhookEvent(source="meta", received_at=utcnow(), body=b'{"object":"page","entry":[]}', headers={},
                         verification="valid", status="processed")
    db.session.add(event)
    db.session.flush()
    scene = Scene(world=world,
                  own=Side(world.brand_id, world.team_id, world.page_channel_id, *own),
                  other=Side(world.other_brand_id, world.other_team_id, world.other_page_channel_id, *other),
                  event_id=event.id)
    for caller in ("agent", "supervisor", "admin", "outsider"):
        agent = db.session.get(Agent, scene.agent_id(caller))
        scene.tokens[caller] = create_api_token(db.session, agent, "route access")[1]
        scene.spare_tokens[caller] = create_api_token(db.session, agent, "spare")[0].id
    db.session.commit()
    return scene


def path_values(scene: Scene, caller: str, *, cross: bool) -> dict[str, int]:
    """Ids for the path parameters: the caller's own brand, or (cross) the brand they do not serve."""
    mine, theirs = (scene.other, scene.own) if caller == "outsider" else (scene.own, scene.other)
    side = theirs if cross else mine
    if caller == "outsider":  # the only agent of the other brand: their "own" agent is themselves
        stranger = "agent2" if cross else "outsider"
    else:
        stranger = "outsider" if cross else "agent2"
    token_owner = ("agent" if caller == "admin" else "admin") if cross else caller
    return {
        "brand_id": side.brand_id, "team_id": side.team_id, "channel_id": side.page_channel_id,
        "contact_id": side.contact_id, "conversation_id": side.conversation_id, "message_id": side.message_id,
        "post_id": side.post_id, "agent_id": scene.agent_id(stranger), "token_id": scene.spare_tokens[token_owner],
        "event_id": scene.event_id,
    }


def build_path(rule: str, values: dict[str, int]) -> str:
    return PREFIX + re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", lambda m: str(values.get(m.group(1), UNKNOWN_ID)), rule)


def path_parameters(rule: str) -> set[str]:
    return set(re.findall(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", rule))


# ---------------------------------------------------------------- sample inputs from the route's schemas
def _schema(value: Any) -> Schema | None:
    if value is None:
        return None
    return value() if isinstance(value, type) else value


def sample_value(name: str, f: fields.Field, ids: dict[str, int], caller_id: int) -> Any:
    choices = [v for v in f.validators if isinstance(v, validate.OneOf)]
    if choices:
        return list(choices[0].choices)[0]
    if isinstance(f, fields.Nested):
        nested = f.schema
        return {key: sample_value(key, sub, ids, caller_id) for key, sub in nested.fields.items()
                if not sub.dump_only}
    if isinstance(f, fields.List):
        singular = {"member_ids": "agent_id"}.get(name, name[:-1] if name.endswith("s") else name)
        if isinstance(f.inner, fields.Integer):
            return [ids[singular]] if singular in ids else []
        return [sample_value(singular, f.inner, ids, caller_id)]
    if isinstance(f, fields.Email):
        return f"sample-{uuid.uuid4().hex[:8]}@example.com"
    if isinstance(f, fields.Url):
        return "https://example.com/sample"
    if isinstance(f, fields.Boolean):
        return True
    if isinstance(f, (fields.AwareDateTime, fields.DateTime)):
        return (utcnow() + timedelta(days=1)).isoformat()
    if isinstance(f, fields.Integer):
        if name == "assignee_id":
            return caller_id
        return next((value for key, value in ids.items() if name.endswith(key)), 1)
    if isinstance(f, fields.Dict):
        return {}
    text = f"sample {uuid.uuid4().hex[:12]}"
    lengths = [v for v in f.validators if isinstance(v, validate.Length)]
    if lengths and lengths[0].max is not None:
        text = text[:lengths[0].max]
    return text


def sample_body(doc: RouteDoc, ids: dict[str, int], caller_id: int) -> tuple[Any, bool]:
    """A body for the route built from its schema, and whether that schema accepts it."""
    schema = _schema(doc.body)
    if schema is None:
        return None, True
    body = {name: sample_value(name, f, ids, caller_id) for name, f in schema.fields.items() if not f.dump_only}
    try:
        schema.load(body)
        return body, True
    except ValidationError:
        return body, False


# ---------------------------------------------------------------- the database, to prove nothing changed
def snapshot() -> dict[str, Any]:
    session = db.new_session()
    try:
        def rows(model: Any, *columns: str) -> list[tuple[Any, ...]]:
            return sorted(tuple(getattr(row, c) for c in columns) for row in session.query(model))

        return {
            "brands": rows(Brand, "id", "name"),
            "teams": rows(Team, "id", "name"),
            "team_brands": rows(TeamBrand, "team_id", "brand_id"),
            "team_members": rows(TeamMember, "team_id", "agent_id"),
            "agents": rows(Agent, "id", "name", "role", "is_active", "capacity", "session_version",
                           "availability", "language"),
            "tokens": rows(ApiToken, "id", "revoked_at"),
            "contacts": rows(Contact, "id", "name", "handle"),
            "conversations": rows(Conversation, "id", "status", "priority", "assignee_id", "team_id",
                                  "snoozed_until", "resolved_at"),
            "labels": rows(ConversationLabel, "conversation_id", "label"),
            "messages": rows(Message, "id", "text", "hidden", "liked", "deleted_at", "delivery_status"),
        }
    finally:
        session.close()


# ---------------------------------------------------------------- walking one route
@dataclass
class Walk:
    app: Any
    scene: Scene
    doc: RouteDoc
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.doc.method} {self.doc.rule}"

    @property
    def endpoint(self) -> str:
        return endpoint_for(self.app, self.doc)

    @property
    def is_read(self) -> bool:
        return self.doc.method in ("GET", "HEAD")

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(f"{self.label}: {message}")

    def call(self, caller: str | None, *, cross: bool = False, body: Any = "sample",
             query: dict[str, Any] | None = None, raw: bytes | None = None) -> tuple[Any, bool]:
        """One request; returns the response and whether the body sent was valid for the route's schema."""
        values = path_values(self.scene, caller or "agent", cross=cross)
        caller_id = self.scene.agent_id(caller or "agent")
        valid = True
        if body == "sample":
            body, valid = sample_body(self.doc, values, caller_id)
        headers = {"Authorization": f"Bearer {self.scene.tokens[caller]}"} if caller else {}
        client = self.app.test_client()
        kwargs: dict[str, Any] = {"method": self.doc.method, "headers": headers, "query_string": query}
        if raw is not None:
            kwargs.update(data=raw, content_type="text/plain")
        elif body is not None:
            kwargs["json"] = body
        response = client.open(build_path(self.doc.rule, values), **kwargs)
        self.check_no_server_error(caller, response)
        return response, valid

    def check_no_server_error(self, caller: str | None, response: Any) -> None:
        status = response.status_code
        if status >= 500 and (status == 500 or status not in self.doc.errors):
            self.problems.append(f"{self.label}: {status} for {caller or 'anonymous'}: "
                                 f"{response.get_data(as_text=True)[:300]}")

    def check_no_leak(self, caller: str, response: Any) -> None:
        if caller == "admin" or response.status_code >= 300:
            return
        mark = OWN_MARK if caller == "outsider" else OTHER_MARK
        self.expect(mark not in response.get_data(as_text=True),
                    f"{caller} got text of a brand they do not serve")


def endpoint_for(app: Any, doc: RouteDoc) -> str:
    for rule in app.url_map.iter_rules():
        if rule.rule == PREFIX + doc.rule and doc.method in (rule.methods or ()):
            return rule.endpoint
    raise AssertionError(f"{doc.method} {doc.rule} is documented but not routed")


def walk_route(app: Any, scene: Scene, doc: RouteDoc) -> list[str]:
    walk = Walk(app, scene, doc)
    response, _ = walk.call(None)
    if walk.endpoint in PUBLIC:  # e.g. login: only "no 5xx" applies, its own tests cover the rest
        return walk.problems
    walk.expect(response.status_code == 401, f"anonymous got {response.status_code}, expected 401")
    check_cross_brand(walk)
    for caller in ("agent", "supervisor", "admin"):
        check_role(walk, caller)
    check_strict_inputs(walk)
    return walk.problems


def check_role(walk: Walk, caller: str) -> None:
    minimum = MINIMUM_ROLE.get(walk.endpoint)
    response, _ = walk.call(caller)
    walk.check_no_leak(caller, response)
    status = response.status_code
    walk.expect(status != 401, f"{caller} got 401")
    if minimum is None:
        return
    if RANK[caller] < RANK[minimum]:
        walk.expect(status == 403, f"{caller} got {status}, expected 403 (route for {minimum}s and above)")
    else:
        walk.expect(status != 403, f"{caller} got 403 (route for {minimum}s and above)")


def check_cross_brand(walk: Walk) -> None:
    """Callers get nothing of a brand they do not serve: neither through path ids nor through filters."""
    scoped = path_parameters(walk.doc.rule) & SCOPED_PARAMETERS
    minimum = MINIMUM_ROLE.get(walk.endpoint, "agent")
    for caller in ("agent", "supervisor", "outsider"):
        role = "supervisor" if caller == "supervisor" else "agent"
        refused = 403 if RANK[role] < RANK[minimum] else 404
        if scoped:
            before = snapshot()
            response, valid = walk.call(caller, cross=True)
            status = response.status_code
            if walk.is_read:
                walk.expect(status == refused, f"{caller} reading another brand's ids got {status}, "
                                               f"expected {refused}")
            else:
                allowed = {403, 404} | ({422} if not valid else set())
                walk.expect(status in allowed, f"{caller} writing to another brand's ids got {status}")
                walk.expect(snapshot() == before, f"{caller} changed another brand's data (status {status})")
            walk.check_no_leak(caller, response)
        query = cross_brand_query(walk.doc, path_values(walk.scene, caller, cross=True))
        if walk.is_read and query:
            response, _ = walk.call(caller, query=query)
            walk.check_no_leak(caller, response)


def cross_brand_query(doc: RouteDoc, values: dict[str, int]) -> dict[str, Any]:
    schema = _schema(doc.query)
    if schema is None:
        return {}
    query: dict[str, Any] = {name: values[name] for name in schema.fields if name in values}
    if "q" in schema.fields:
        query["q"] = "person"  # every planted contact is called "<mark> person"
    return query


def check_strict_inputs(walk: Walk) -> None:
    """As an admin (past every access check): unknown inputs are refused naming them, never a 5xx."""
    if _schema(walk.doc.body) is not None:
        response, _ = walk.call("admin", body={"__unknown__": 1})
        walk.expect(response.status_code == 422 and "__unknown__" in response.get_json()["error"]["fields"],
                    f"an unknown body field gave {response.status_code}, expected 422 naming it")
        response, _ = walk.call("admin", raw=b"not json")
        walk.expect(response.status_code == 422, f"a non-JSON body gave {response.status_code}, expected 422")
        response, _ = walk.call("admin", body=[1, 2])
        walk.expect(response.status_code == 422, f"a JSON array body gave {response.status_code}, expected 422")
    query_schema = _schema(walk.doc.query)
    if query_schema is not None:
        query = {"__unknown__": "1"}
        if "limit" in query_schema.fields:
            query["limit"] = "many"
        response, _ = walk.call("admin", query=query)
        named = response.get_json()["error"]["fields"] if response.status_code == 422 else {}
        walk.expect(set(query) <= set(named), f"bad query parameters gave {response.status_code}: {named}")


# ---------------------------------------------------------------- the tests
COLLECTED = [(doc.method, doc.rule) for doc in ROUTES]


def _doc(method: str, rule: str) -> RouteDoc:
    return next(doc for doc in ROUTES if (doc.method, doc.rule) == (method, rule))


@functools.lru_cache(maxsize=None)
def _shared_hash(password: str) -> str:
    return hash_password(password)


@pytest.fixture(autouse=True)
def _one_password_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 is slow on purpose; this walk calls with API tokens, so the world's agents share one hash."""
    monkeypatch.setattr(factories, "hash_password", _shared_hash)


@pytest.fixture
def scene(app: Any, world: World) -> Scene:
    with app.app_context():
        return build_scene(world)


@pytest.mark.parametrize("method, rule", COLLECTED, ids=[f"{m} {r}" for m, r in COLLECTED])
def test_route_access(app: Any, scene: Scene, method: str, rule: str) -> None:
    problems = walk_route(app, scene, _doc(method, rule))
    assert not problems, "\n".join(problems)


def test_routes_registered_after_collection_are_walked_too(app: Any) -> None:
    """Routes documented by modules outside inbox.api (imported by create_app only) are walked here."""
    late = [doc for doc in ROUTES if (doc.method, doc.rule) not in set(COLLECTED)]
    problems: list[str] = []
    for doc in late:
        with app.app_context():
            scene = build_scene(factories.build_world())
        problems += walk_route(app, scene, doc)
        wait_for_jobs(app)
        factories.empty_database()
    assert not problems, "\n".join(problems)


def test_every_api_rule_is_documented(app: Any) -> None:
    documented = {(doc.method, PREFIX + doc.rule) for doc in ROUTES}
    hidden = sorted(f"{method} {rule.rule} ({rule.endpoint})"
                    for rule in app.url_map.iter_rules() if rule.rule.startswith(PREFIX + "/")
                    for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
                    if (method, rule.rule) not in documented and rule.endpoint not in UNDOCUMENTED)
    assert not hidden, "routes not registered with api_route (undocumented, not walked): " + ", ".join(hidden)
    assert len(documented) == len(ROUTES), "a route is documented twice"
    for doc in ROUTES:
        endpoint_for(app, doc)


def test_the_expectation_table_names_existing_routes(app: Any) -> None:
    endpoints = {endpoint_for(app, doc) for doc in ROUTES} | UNDOCUMENTED
    stale = sorted(set(MINIMUM_ROLE) - endpoints)
    assert not stale, f"MINIMUM_ROLE names routes that no longer exist: {stale}"
    assert PUBLIC <= endpoints


@pytest.mark.parametrize("method, rule", COLLECTED, ids=[f"{m} {r}" for m, r in COLLECTED])
def test_inputs_are_strict_schemas(method: str, rule: str) -> None:
    doc = _doc(method, rule)
    for kind, schema in (("body", _schema(doc.body)), ("query", _schema(doc.query))):
        if schema is not None:
            assert isinstance(schema, StrictSchema), f"the {kind} schema {type(schema).__name__} is not strict"


def test_the_openapi_document_lists_every_route(client: Any) -> None:
    response = client.get(PREFIX + "/openapi.json")
    assert response.status_code == 200
    paths = response.get_json()["paths"]
    for doc in ROUTES:
        path = PREFIX + re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", doc.rule)
        assert doc.method.lower() in paths.get(path, {}), f"{doc.method} {path} missing from openapi.json"

