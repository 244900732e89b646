"""/api/v1/auth: sign in and out (session cookie + CSRF token), the agent's own profile, password and API tokens."""
from __future__ import annotations

from flask import g, request, session

from inbox.api.schemas import (AgentSchema, ApiTokenCreatedSchema, ApiTokenCreateSchema, ApiTokenSchema,
                               LoginResponseSchema, LoginSchema, MePatchSchema, PasswordChangeSchema)
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body
from inbox.db import db
from inbox.extensions import limiter
from inbox.models import Agent
from inbox.services import admin as account
from inbox.services.auth import authenticate, new_csrf_token
from inbox.settings import get_settings

TAGS = ["auth"]


def _login_rate_limit() -> str:
    return get_settings().login_rate_limit


def _by_address() -> str:
    return f"ip:{request.remote_addr or 'unknown'}"


def _by_email() -> str:
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"email:{email.strip().lower()}" if isinstance(email, str) and email.strip() else "email:-"


def _by_agent() -> str:
    agent = g.get("agent")
    return f"agent:{agent.id}" if agent is not None else _by_address()


def _failed(response) -> bool:  # only failed attempts count: a team signing in behind one NAT is not throttled
    return response.status_code >= 400


def _start_session(agent: Agent) -> str:
    """A fresh session for `agent` (clearing the old one first: no fixation); returns its CSRF token."""
    session.clear()
    session["agent_id"] = agent.id
    session["sv"] = agent.session_version
    session["csrf"] = new_csrf_token()
    session.permanent = True
    return session["csrf"]


def _me(agent: Agent, csrf_token: str | None) -> dict:
    return LoginResponseSchema().dump({"agent": agent, "csrf_token": csrf_token})


@api_route("/auth/login", "POST", summary="Sign in: sets the session cookie, returns the CSRF token",
           tags=TAGS, body=LoginSchema, response=LoginResponseSchema, public=True, errors=[401, 429])
@limiter.limit(_login_rate_limit, key_func=_by_address, deduct_when=_failed, scope="address")
@limiter.limit(_login_rate_limit, key_func=_by_email, deduct_when=_failed, scope="email")
@commit_after
def login():
    data = load_body(LoginSchema())
    agent = authenticate(db.session, data["email"], data["password"])
    return _me(agent, _start_session(agent))


@api_route("/auth/logout", "POST", summary="Sign out (clears the session)", tags=TAGS, status=204)
def logout():
    session.clear()
    return "", 204


@api_route("/auth/me", "GET", summary="The signed-in agent, and the session's CSRF token (null with a token)",
           tags=TAGS, response=LoginResponseSchema)
def me():
    agent = current_agent()
    return _me(agent, session.get("csrf") if g.auth_via == "session" else None)


@api_route("/auth/me", "PATCH", summary="Change my availability, display name or language", tags=TAGS,
           body=MePatchSchema, response=AgentSchema)
@commit_after
def update_me():
    data = load_body(MePatchSchema())
    agent = account.update_my_account(db.session, current_agent(), **data)
    return AgentSchema().dump(agent)


@api_route("/auth/password", "POST", summary="Change my password: signs out my other sessions, keeps this one",
           tags=TAGS, body=PasswordChangeSchema, response=LoginResponseSchema, errors=[429])
@limiter.limit(_login_rate_limit, key_func=_by_agent, deduct_when=_failed, scope="agent")
@commit_after
def change_password():
    data = load_body(PasswordChangeSchema())
    agent = account.change_password(db.session, current_agent(), **data)
    csrf = _start_session(agent) if g.auth_via == "session" else None
    return _me(agent, csrf)


@api_route("/auth/tokens", "POST", summary="Create an API token (the clear token is shown only in this response)",
           tags=TAGS, body=ApiTokenCreateSchema, response=ApiTokenCreatedSchema, status=201)
@commit_after
def create_token():
    data = load_body(ApiTokenCreateSchema())
    token, clear = account.issue_api_token(db.session, current_agent(), data["name"])
    body = ApiTokenSchema().dump(token)
    body["token"] = clear
    return body, 201


@api_route("/auth/tokens", "GET", summary="My API tokens that still work (no secrets)", tags=TAGS,
           response=ApiTokenSchema(many=True))
def list_tokens():
    return ApiTokenSchema(many=True).dump(account.list_api_tokens(db.session, current_agent()))


@api_route("/auth/tokens/<int:token_id>", "DELETE", summary="Revoke one of my API tokens", tags=TAGS,
           status=204, errors=[404])
@commit_after
def revoke_token(token_id: int):
    account.revoke_api_token(db.session, current_agent(), token_id)
    return "", 204
