"""Passwords (argon2), sessions, API tokens."""
from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.concurrency import off_hub
from inbox.crypto import new_token, sha256_hex
from inbox.db import utcnow
from inbox.errors import Unauthorized, ValidationFailed
from inbox.models import Agent, ApiToken

_hasher = PasswordHasher()
# verified against when the email is unknown, so both paths cost the same (no user enumeration by timing)
_DUMMY_HASH = _hasher.hash("relais-dummy-password")
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed("password too short",
                               fields={"password": [f"at least {MIN_PASSWORD_LENGTH} characters"]})
    return off_hub(_hasher.hash, password)  # argon2 is slow on purpose: not on a gevent web process's hub


def authenticate(session: Session, email: str, password: str) -> Agent:
    """The active agent with these credentials; Unauthorized otherwise (same message either way)."""
    agent = session.execute(select(Agent).where(func.lower(Agent.email) == email.strip().lower())).scalar_one_or_none()
    try:
        off_hub(_hasher.verify, agent.password_hash if agent else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise Unauthorized("wrong email or password") from None
    if agent is None or not agent.is_active:
        raise Unauthorized("wrong email or password")
    if _hasher.check_needs_rehash(agent.password_hash):
        agent.password_hash = off_hub(_hasher.hash, password)
    return agent


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def create_api_token(session: Session, agent: Agent, name: str) -> tuple[ApiToken, str]:
    """Writes an ApiToken holding only the hash; returns it and the clear token, shown once."""
    clear = new_token("rls")
    token = ApiToken(agent_id=agent.id, name=name, token_hash=sha256_hex(clear), prefix=clear[:8],
                     created_at=utcnow())
    session.add(token)
    session.flush()
    return token, clear


def token_for(session: Session, clear: str) -> tuple[ApiToken, Agent] | None:
    """The live token matching `clear` and its active agent. Sets the token's last_used_at when the stored one
    is over a minute old (so most requests write nothing); the caller commits it (`session.is_modified(token)`
    tells whether there is anything to commit)."""
    token = session.execute(select(ApiToken).where(ApiToken.token_hash == sha256_hex(clear))).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        return None
    agent = session.get(Agent, token.agent_id)
    if agent is None or not agent.is_active:
        return None
    now = utcnow()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
    return token, agent
