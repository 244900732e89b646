"""Who is calling: a session cookie (with CSRF token on writes) or an `Authorization: Bearer` API token."""
from __future__ import annotations

import functools
from typing import Any, Callable

from flask import Blueprint, g, request, session

from inbox.crypto import constant_time_equals
from inbox.db import db
from inbox.errors import Forbidden, Unauthorized
from inbox.models import Agent
from inbox.services.auth import token_for

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_ENDPOINTS = {"api.login", "api.openapi_document"}


def load_agent_from_request() -> tuple[Agent | None, str | None]:
    """The agent authenticated by this request and how ('token' | 'session'), or (None, None)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        found = token_for(db.session, header[len("Bearer "):].strip())
        if found is None:
            return None, None
        token, agent = found
        if db.session.is_modified(token):
            # last_used_at is due (at most once a minute): committed now, before the route runs, so a read-only
            # request records it too (its own transaction ends with the request, never committing a write)
            db.session.commit()
        return agent, "token"
    agent_id = session.get("agent_id")
    if agent_id is None:
        return None, None
    agent = db.session.get(Agent, agent_id)
    if agent is None or not agent.is_active or session.get("sv") != agent.session_version:
        session.clear()
        return None, None
    return agent, "session"


def install_request_hooks(bp: Blueprint) -> None:
    @bp.before_request
    def _authenticate() -> None:
        g.agent, g.auth_via = load_agent_from_request()
        if request.endpoint in PUBLIC_ENDPOINTS:
            return
        if g.agent is None:
            raise Unauthorized("sign in or send an API token")
        if g.auth_via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get("X-CSRF-Token", "")
            expected = session.get("csrf", "")
            if not sent or not expected or not constant_time_equals(sent, expected):
                raise Forbidden("missing or wrong X-CSRF-Token header", code="csrf_failed")


def current_agent() -> Agent:
    agent = g.get("agent")
    if agent is None:
        raise Unauthorized("sign in or send an API token")
    return agent


def commit_after(func: Callable[..., Any]) -> Callable[..., Any]:
    """Commit the request's session after a successful write route (live events go out on commit)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            db.session.commit()
            return result
        except BaseException:
            db.session.rollback()
            raise
    return wrapper
