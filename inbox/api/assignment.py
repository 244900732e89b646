"""Triage: team assignment policies, brand routing, my availability and languages, handoff, linked
conversations and resolving them together."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from inbox.api.schemas import AgentSchema, ConversationSchema, StrictSchema
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body
from inbox.db import db
from inbox.errors import NotFound
from inbox.models import Agent
from inbox.models.assignment import ASSIGNMENT_MODES, policy_dict
from inbox.models.channel import CHANNEL_KINDS
from inbox.models.org import AVAILABILITIES
from inbox.services import access, assignment, handoff, presence
from inbox.services.assignment import _state, agent_languages, language_code

_conversation = ConversationSchema()


# ---------------------------------------------------------------- schemas
class AssignmentPolicySchema(StrictSchema):
    mode = fields.String(required=True, validate=validate.OneOf(ASSIGNMENT_MODES),
                         metadata={"description": "manual (default) | round_robin (least recently assigned "
                                                  "first) | least_loaded (fewest open conversations)"})
    capacity_by_channel_kind = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CHANNEL_KINDS)),
        values=fields.Integer(strict=True, validate=validate.Range(min=0, max=1000)), load_default=dict,
        metadata={"description": "most open conversations of each channel kind an agent holds"})
    match_language = fields.Boolean(load_default=False,
                                    metadata={"description": "agents speaking the conversation's language first"})
    unassign_after_offline_minutes = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1, max=7 * 24 * 60),
        metadata={"description": "give back conversations of agents offline that long (null: never)"})


class BrandRoutingSchema(Schema):
    brand_id = fields.Integer(dump_only=True)
    default_team_id = fields.Integer(allow_none=True, required=True, strict=True,
                                     metadata={"description": "the team new conversations open in"})


class BrandRoutingInSchema(StrictSchema):
    default_team_id = fields.Integer(allow_none=True, required=True, strict=True)


class AvailabilitySchema(StrictSchema):
    availability = fields.String(required=True, validate=validate.OneOf(AVAILABILITIES))


class AgentRoutingSchema(StrictSchema):
    languages = fields.List(fields.String(validate=validate.Regexp(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
                                                                  error="a language code such as fr or en-GB")),
                            required=True, validate=validate.Length(max=20),
                            metadata={"description": "languages spoken besides the agent's interface language"})


class AgentRoutingOutSchema(Schema):
    agent_id = fields.Integer()
    languages = fields.List(fields.String())
    all_languages = fields.List(fields.String(), metadata={"description": "with the agent's own language"})


class _NoteNotBlank:
    @validates_schema
    def _note(self, data: dict[str, Any], **_: Any) -> None:
        if "note" in data and not data["note"].strip():
            raise ValidationError({"note": ["must not be blank"]})


class HandoffSchema(_NoteNotBlank, StrictSchema):
    team_id = fields.Integer(required=True, strict=True)
    note = fields.String(required=True, validate=validate.Length(min=1, max=20000),
                         metadata={"description": "why, for the receiving team (internal, never sent)"})


class LinkSchema(StrictSchema):
    conversation_id = fields.Integer(required=True, strict=True)
    confirm = fields.Boolean(load_default=False,
                             metadata={"description": "required to link conversations of two different contacts"})


class ResolveSchema(StrictSchema):
    resolve_linked = fields.Boolean(load_default=False)


# ---------------------------------------------------------------- policies and routing
@api_route("/teams/<int:team_id>/assignment-policy", "GET", tags=["teams"], response=AssignmentPolicySchema,
           errors=[403, 404], roles="admin, supervisor of the team",
           summary="The team's assignment policy (manual when never set)")
def get_assignment_policy(team_id: int):
    return policy_dict(assignment.get_policy(db.session, current_agent(), team_id))


@api_route("/teams/<int:team_id>/assignment-policy", "PUT", tags=["teams"], body=AssignmentPolicySchema,
           response=AssignmentPolicySchema, errors=[403, 404], roles="admin, supervisor of the team",
           summary="Set the team's assignment policy: manual, round_robin or least_loaded, caps, language")
@commit_after
def put_assignment_policy(team_id: int):
    data = load_body(AssignmentPolicySchema())
    return policy_dict(assignment.set_policy(db.session, current_agent(), team_id, data))


@api_route("/brands/<int:brand_id>/routing", "GET", tags=["brands"], response=BrandRoutingSchema, errors=[404],
           summary="Where the brand's new conversations go (its default team)")
def get_brand_routing(brand_id: int):
    return BrandRoutingSchema().dump(assignment.get_brand_routing(db.session, current_agent(), brand_id))


@api_route("/brands/<int:brand_id>/routing", "PUT", tags=["brands"], body=BrandRoutingInSchema,
           response=BrandRoutingSchema, errors=[403, 404], roles="admin",
           summary="Set the team the brand's new conversations open in (a team serving the brand, or null)")
@commit_after
def put_brand_routing(brand_id: int):
    data = load_body(BrandRoutingInSchema())
    return BrandRoutingSchema().dump(assignment.set_brand_routing(db.session, current_agent(), brand_id,
                                                                  data["default_team_id"]))


# ---------------------------------------------------------------- agents
@api_route("/auth/me/availability", "POST", tags=["auth"], body=AvailabilitySchema, response=AgentSchema,
           summary="Set my availability (online / busy / offline); going online picks up waiting conversations")
@commit_after
def set_my_availability():
    data = load_body(AvailabilitySchema())
    return AgentSchema().dump(presence.set_availability(db.session, current_agent(), data["availability"]))


def _routing_target(agent_id: int, *, write: bool) -> Agent:
    """The agent themselves, an admin, or a supervisor sharing a team with them."""
    me = current_agent()
    target = db.session.get(Agent, agent_id)
    if target is None:
        raise NotFound("agent not found")
    if me.id == target.id or me.role == "admin":
        return target
    shared = access.team_ids_for(db.session, me) & access.team_ids_for(db.session, target)
    if not shared:
        raise NotFound("agent not found")
    if write:
        access.require_supervisor(me)
    return target


def _routing(agent: Agent) -> dict[str, Any]:
    state = _state(db.session, agent.id)
    return {"agent_id": agent.id, "languages": list(state.languages or []),
            "all_languages": sorted(agent_languages(agent, state))}


@api_route("/agents/<int:agent_id>/routing", "GET", tags=["agents"], response=AgentRoutingOutSchema,
           errors=[404], roles="the agent, their teammates, admins",
           summary="The languages an agent is routed conversations in")
@commit_after
def get_agent_routing(agent_id: int):
    return AgentRoutingOutSchema().dump(_routing(_routing_target(agent_id, write=False)))


@api_route("/agents/<int:agent_id>/routing", "PUT", tags=["agents"], body=AgentRoutingSchema,
           response=AgentRoutingOutSchema, errors=[403, 404], roles="the agent, their supervisors, admins",
           summary="Set the languages an agent speaks (for language-matching assignment)")
@commit_after
def put_agent_routing(agent_id: int):
    data = load_body(AgentRoutingSchema())
    target = _routing_target(agent_id, write=True)
    state = _state(db.session, target.id)
    state.languages = sorted({code for code in (language_code(v) for v in data["languages"]) if code})
    return AgentRoutingOutSchema().dump(_routing(target))


# ---------------------------------------------------------------- handoff, links, resolve
TAGS = ["conversations"]


@api_route("/conversations/<int:conversation_id>/handoff", "POST", tags=TAGS, body=HandoffSchema,
           response=ConversationSchema, errors=[404, 422],
           summary="Hand the conversation over to another team, with an internal note (nothing is sent)")
@commit_after
def handoff_conversation(conversation_id: int):
    data = load_body(HandoffSchema())
    return _conversation.dump(handoff.handoff(db.session, current_agent(), conversation_id, data["team_id"],
                                              data["note"]))


class HandoffTargetSchema(Schema):
    id = fields.Integer()
    name = fields.String()


@api_route("/conversations/<int:conversation_id>/handoff-targets", "GET", tags=TAGS,
           response=HandoffTargetSchema(many=True), errors=[404],
           summary="The teams this conversation can be handed over to (those serving its brand)")
def handoff_targets(conversation_id: int):
    return HandoffTargetSchema(many=True).dump(handoff.targets(db.session, current_agent(), conversation_id))


@api_route("/conversations/<int:conversation_id>/links", "GET", tags=TAGS,
           response=ConversationSchema(many=True), errors=[404], summary="The conversations linked to this one")
def list_links(conversation_id: int):
    return ConversationSchema(many=True).dump(handoff.list_links(db.session, current_agent(), conversation_id))


@api_route("/conversations/<int:conversation_id>/links", "POST", tags=TAGS, body=LinkSchema,
           response=ConversationSchema(many=True), status=201, errors=[404, 422],
           summary="Link another conversation of the same brand (same contact, or confirm: true); "
                   "returns the links (200 when already linked)")
@commit_after
def create_link(conversation_id: int):
    data = load_body(LinkSchema())
    links, created = handoff.link(db.session, current_agent(), conversation_id, data["conversation_id"],
                                  confirm=data["confirm"])
    return ConversationSchema(many=True).dump(links), 201 if created else 200


@api_route("/conversations/<int:conversation_id>/links/<int:other_id>", "DELETE", tags=TAGS, status=204,
           errors=[404], summary="Unlink two conversations")
@commit_after
def delete_link(conversation_id: int, other_id: int):
    handoff.unlink(db.session, current_agent(), conversation_id, other_id)
    return "", 204


@api_route("/conversations/<int:conversation_id>/resolve", "POST", tags=TAGS, body=ResolveSchema,
           response=ConversationSchema, errors=[404],
           summary="Resolve the conversation; with resolve_linked, its linked conversations too")
@commit_after
def resolve_conversation(conversation_id: int):
    data = load_body(ResolveSchema())
    return _conversation.dump(handoff.resolve(db.session, current_agent(), conversation_id,
                                              resolve_linked=data["resolve_linked"]))
