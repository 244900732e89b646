"""/api/v1 administration: brands, channels, teams, agents and the raw webhook log.

Administrators only, except: everyone lists the brands they can see; supervisors read their own teams and
the agents of their teams; agents list their teammates (id, name, availability only).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from inbox.api.schemas import (AgentBriefSchema, AgentCreatedSchema, AgentCreateSchema, AgentPatchSchema,
                               AgentSchema, BrandCreateSchema, BrandPatchSchema, BrandSchema, ChannelCreatedSchema,
                               ChannelCreateSchema, ChannelPatchSchema, ChannelSchema, TeamCreateSchema,
                               TeamPatchSchema, TeamSchema, WebhookEventPageSchema, WebhookEventQuerySchema,
                               WebhookEventSchema)
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body, load_query
from inbox.db import db
from inbox.models import Agent
from inbox.services import admin
from inbox.services.access import require_admin

ADMINS = "administrators"


def admins_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse non-admins before the body is read: they learn nothing, not even how it would be validated.
    (The services check again: this is the HTTP face of the same rule.)"""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require_admin(current_agent())
        return view(*args, **kwargs)
    return wrapper


# ---------- brands ----------
@api_route("/brands", "GET", summary="Brands: all for admins, the ones my teams serve for others",
           tags=["brands"], response=BrandSchema(many=True))
def list_brands():
    return BrandSchema(many=True).dump(admin.list_brands(db.session, current_agent()))


@api_route("/brands/<int:brand_id>", "GET", summary="One brand I can see", tags=["brands"],
           response=BrandSchema, errors=[404])
def get_brand(brand_id: int):
    return BrandSchema().dump(admin.get_brand(db.session, current_agent(), brand_id))


@api_route("/brands", "POST", summary="Create a brand", tags=["brands"], body=BrandCreateSchema,
           response=BrandSchema, status=201, roles=ADMINS, errors=[409])
@admins_only
@commit_after
def create_brand():
    data = load_body(BrandCreateSchema())
    return BrandSchema().dump(admin.create_brand(db.session, current_agent(), data["name"])), 201


@api_route("/brands/<int:brand_id>", "PATCH", summary="Rename a brand", tags=["brands"], body=BrandPatchSchema,
           response=BrandSchema, roles=ADMINS, errors=[404, 409])
@admins_only
@commit_after
def update_brand(brand_id: int):
    data = load_body(BrandPatchSchema())
    return BrandSchema().dump(admin.update_brand(db.session, current_agent(), brand_id, **data))


# ---------- channels ----------
@api_route("/channels", "POST", summary="Connect a channel; the response alone shows its secrets in clear",
           tags=["channels"], body=ChannelCreateSchema, response=ChannelCreatedSchema, status=201, roles=ADMINS,
           errors=[409])
@admins_only
@commit_after
def create_channel():
    data = load_body(ChannelCreateSchema())
    channel, clear_secrets = admin.create_channel(db.session, current_agent(), **data)
    body = ChannelSchema().dump(channel)
    body["secrets"] = clear_secrets
    return body, 201


@api_route("/channels", "GET", summary="Channels, secrets masked", tags=["channels"],
           response=ChannelSchema(many=True), roles=ADMINS)
@admins_only
def list_channels():
    return ChannelSchema(many=True).dump(admin.list_channels(db.session, current_agent()))


@api_route("/channels/<int:channel_id>", "GET", summary="One channel, secrets masked", tags=["channels"],
           response=ChannelSchema, roles=ADMINS, errors=[404])
@admins_only
def get_channel(channel_id: int):
    return ChannelSchema().dump(admin.get_channel(db.session, current_agent(), channel_id))


@api_route("/channels/<int:channel_id>", "PATCH",
           summary="Rename, disable / re-enable, or rotate credentials (config.access_token, app_secret, "
                   "verify_token; webhook_url)",
           tags=["channels"], body=ChannelPatchSchema, response=ChannelSchema, roles=ADMINS, errors=[404])
@admins_only
@commit_after
def update_channel(channel_id: int):
    data = load_body(ChannelPatchSchema())
    return ChannelSchema().dump(admin.update_channel(db.session, current_agent(), channel_id, **data))


@api_route("/channels/<int:channel_id>/rotate-secret", "POST",
           summary="New webhook secret for an API channel (shown only in this response)", tags=["channels"],
           response=ChannelCreatedSchema, roles=ADMINS, errors=[404, 409])
@admins_only
@commit_after
def rotate_channel_secret(channel_id: int):
    channel, secret = admin.rotate_webhook_secret(db.session, current_agent(), channel_id)
    body = ChannelSchema().dump(channel)
    body["secrets"] = {"webhook_secret": secret}
    return body


# ---------- teams ----------
@api_route("/teams", "GET", summary="Teams: all for admins, their own for supervisors", tags=["teams"],
           response=TeamSchema(many=True), roles="supervisors (their teams), administrators")
def list_teams():
    return TeamSchema(many=True).dump(admin.list_teams(db.session, current_agent()))


@api_route("/teams", "POST", summary="Create a team serving brands, with members", tags=["teams"],
           body=TeamCreateSchema, response=TeamSchema, status=201, roles=ADMINS, errors=[409])
@admins_only
@commit_after
def create_team():
    data = load_body(TeamCreateSchema())
    return TeamSchema().dump(admin.create_team(db.session, current_agent(), **data)), 201


@api_route("/teams/<int:team_id>", "GET", summary="One team", tags=["teams"], response=TeamSchema,
           roles="supervisors (their teams), administrators", errors=[404])
def get_team(team_id: int):
    return TeamSchema().dump(admin.get_team(db.session, current_agent(), team_id))


@api_route("/teams/<int:team_id>", "PATCH", summary="Rename a team or replace its brands / members",
           tags=["teams"], body=TeamPatchSchema, response=TeamSchema, roles=ADMINS, errors=[404, 409])
@admins_only
@commit_after
def update_team(team_id: int):
    data = load_body(TeamPatchSchema())
    return TeamSchema().dump(admin.update_team(db.session, current_agent(), team_id, **data))


@api_route("/teams/<int:team_id>", "DELETE", summary="Delete a team (its conversations lose their team)",
           tags=["teams"], status=204, roles=ADMINS, errors=[404])
@admins_only
@commit_after
def delete_team(team_id: int):
    admin.delete_team(db.session, current_agent(), team_id)
    return "", 204


# ---------- agents ----------
def _dump_agents(actor: Agent, agents: list[Agent] | Agent) -> object:
    many = isinstance(agents, list)
    schema = AgentBriefSchema(many=many) if actor.role == "agent" else AgentSchema(many=many)
    return schema.dump(agents)


@api_route("/agents", "GET",
           summary="Agents: all for admins, their teams' for supervisors; agents get their teammates' "
                   "id, name and availability only",
           tags=["agents"], response=AgentSchema(many=True))
def list_agents():
    actor = current_agent()
    return _dump_agents(actor, admin.list_agents(db.session, actor))


@api_route("/agents/<int:agent_id>", "GET", summary="One agent (same visibility as the list)", tags=["agents"],
           response=AgentSchema, errors=[404])
def get_agent(agent_id: int):
    actor = current_agent()
    return _dump_agents(actor, admin.get_agent(db.session, actor, agent_id))


@api_route("/agents", "POST", summary="Create an agent (a generated password is returned once)",
           tags=["agents"], body=AgentCreateSchema, response=AgentCreatedSchema, status=201, roles=ADMINS,
           errors=[409])
@admins_only
@commit_after
def create_agent():
    data = load_body(AgentCreateSchema())
    agent, generated = admin.create_agent(db.session, current_agent(), **data)
    body = AgentSchema().dump(agent)
    body["password"] = generated
    return body, 201


@api_route("/agents/<int:agent_id>", "PATCH",
           summary="Change an agent; is_active=false deactivates (agents are never deleted)", tags=["agents"],
           body=AgentPatchSchema, response=AgentSchema, roles=ADMINS, errors=[404, 409])
@admins_only
@commit_after
def update_agent(agent_id: int):
    data = load_body(AgentPatchSchema())
    return AgentSchema().dump(admin.update_agent(db.session, current_agent(), agent_id, **data))


# ---------- raw webhook events ----------
@api_route("/webhook-events", "GET", summary="The raw webhook log, newest first", tags=["webhook events"],
           query=WebhookEventQuerySchema, response=WebhookEventPageSchema, roles=ADMINS)
@admins_only
def list_webhook_events():
    query = load_query(WebhookEventQuerySchema())
    events, next_cursor = admin.list_webhook_events(db.session, current_agent(), **query)
    return WebhookEventPageSchema().dump({"items": events, "next_cursor": next_cursor})


@api_route("/webhook-events/<int:event_id>", "GET", summary="One raw webhook event", tags=["webhook events"],
           response=WebhookEventSchema, roles=ADMINS, errors=[404])
@admins_only
def get_webhook_event(event_id: int):
    return WebhookEventSchema().dump(admin.get_webhook_event(db.session, current_agent(), event_id))


@api_route("/webhook-events/<int:event_id>/replay", "POST",
           summary="Process an authentic event again (status back to pending)", tags=["webhook events"],
           response=WebhookEventSchema, roles=ADMINS, errors=[404, 409])
@admins_only
@commit_after
def replay_webhook_event(event_id: int):
    return WebhookEventSchema().dump(admin.replay_webhook_event(db.session, current_agent(), event_id))
