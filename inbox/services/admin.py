"""Administration and the signed-in agent's own account: brands, channels, teams, agents, the raw webhook log.

Every public function takes the acting agent and checks access first (through `inbox.services.access`);
the `do_*` functions change data without an actor, for the CLI. Nothing here commits: the caller (a route
with `@commit_after`, or the CLI's `db.transaction()`) owns the transaction.
"""
from __future__ import annotations

import secrets
from typing import Any, Callable, Iterable

from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.crypto import decrypt_json, encrypt_json, sha256_hex
from inbox.db import utcnow
from inbox.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from inbox.jobs import INGEST, nudge_after_commit
from inbox.models import Agent, ApiToken, Brand, Channel, Team, TeamBrand, TeamMember, WebhookEvent
from inbox.realtime import access_changed, publish
from inbox.services import channels as channel_service
from inbox.services import team_names
from inbox.services.access import brand_ids_for, require_admin, team_ids_for
from inbox.services.auth import authenticate, create_api_token, hash_password

# which `config` keys each channel kind takes, and which of them are required at creation
CHANNEL_SETTINGS: dict[str, frozenset[str]] = {
    "facebook_page": frozenset({"page_id", "access_token", "app_secret", "verify_token"}),
    "api": frozenset({"webhook_url"}),
}
CHANNEL_REQUIRED: dict[str, tuple[str, ...]] = {"facebook_page": ("page_id", "access_token", "app_secret"),
                                                "api": ()}
CREDENTIAL_KEYS = frozenset({"access_token", "app_secret", "verify_token"})


class _Unset:
    """Marks a keyword argument that was not given, where None is a value (clearing a language)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def generate_password() -> str:
    """A password shown once to whoever creates the account (16 url-safe characters)."""
    return secrets.token_urlsafe(12)


def _flush_unique(session: Session, row: Any, field: str, message: str) -> None:
    """Insert/update `row`; a unique violation (a concurrent twin) becomes a 409 naming `field`."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(message, fields={field: ["already exists"]}) from None


def _require_ids(session: Session, model: Any, ids: Iterable[int], field: str) -> set[int]:
    wanted = set(ids)
    if not wanted:
        return wanted
    found = set(session.execute(select(model.id).where(model.id.in_(wanted))).scalars())
    missing = sorted(wanted - found)
    if missing:
        raise ValidationFailed(f"unknown ids in {field}", fields={field: [f"unknown id {i}" for i in missing]})
    return wanted


# ---------- brands ----------
def list_brands(session: Session, actor: Agent) -> list[Brand]:
    """All brands for admins; for others, the brands their teams serve."""
    query = select(Brand).order_by(Brand.name, Brand.id)
    allowed = brand_ids_for(session, actor)
    if allowed is not None:
        query = query.where(Brand.id.in_(allowed))
    return list(session.execute(query).scalars())


def get_brand(session: Session, actor: Agent, brand_id: int) -> Brand:
    """The brand if the actor may see it; 404 otherwise."""
    brand = session.get(Brand, brand_id)
    allowed = brand_ids_for(session, actor)
    if brand is None or (allowed is not None and brand_id not in allowed):
        raise NotFound("brand not found")
    return brand


def _check_name_free(session: Session, model: type[Brand] | type[Team], name: str, *,
                     except_id: int | None = None) -> None:
    """Conflict when another brand / team already has this name (case-insensitively)."""
    query = select(model.id).where(func.lower(model.name) == name.lower())
    if except_id is not None:
        query = query.where(model.id != except_id)
    if session.execute(query).first() is not None:
        raise Conflict(f"a {model.__name__.lower()} with this name exists", fields={"name": ["already exists"]})


def do_create_brand(session: Session, name: str) -> Brand:
    """Writes a Brand. Conflict when the name is taken (case-insensitively)."""
    _check_name_free(session, Brand, name)
    brand = Brand(name=name)
    _flush_unique(session, brand, "name", "a brand with this name exists")
    return brand


def create_brand(session: Session, actor: Agent, name: str) -> Brand:
    require_admin(actor)
    return do_create_brand(session, name)


def update_brand(session: Session, actor: Agent, brand_id: int, *, name: str | None = None) -> Brand:
    """Renames a brand (admins)."""
    require_admin(actor)
    brand = get_brand(session, actor, brand_id)
    if name is not None and name != brand.name:
        _check_name_free(session, Brand, name, except_id=brand.id)
        brand.name = name
        _flush_unique(session, brand, "name", "a brand with this name exists")
    return brand


# ---------- channels ----------
def check_channel_config(kind: str, config: dict[str, Any], *, creating: bool) -> None:
    """The settings must belong to the channel's kind (and, at creation, include the required ones)."""
    errors: dict[str, list[str]] = {}
    for key in sorted(set(config) - CHANNEL_SETTINGS.get(kind, frozenset())):
        errors[f"config.{key}"] = [f"not a setting of {kind} channels"]
    if creating:
        for key in CHANNEL_REQUIRED.get(kind, ()):
            if not config.get(key):
                errors[f"config.{key}"] = [f"required for {kind} channels"]
    if errors:
        raise ValidationFailed("channel settings do not match its kind", fields=errors)


def create_channel(session: Session, actor: Agent, *, brand_id: int, kind: str, name: str,
                   config: dict[str, Any]) -> tuple[Channel, dict[str, str]]:
    """Admins connect a channel (see `channels.create_channel`): returns it and the secrets to show once."""
    require_admin(actor)
    check_channel_config(kind, config, creating=True)
    created = channel_service.create_channel(session, brand_id=brand_id, kind=kind, name=name, config=config)
    _channels_changed(session)
    return created


def list_channels(session: Session, actor: Agent, *, brand_id: int | None = None) -> list[Channel]:
    require_admin(actor)
    query = select(Channel).order_by(Channel.brand_id, Channel.name, Channel.id)
    if brand_id is not None:
        query = query.where(Channel.brand_id == brand_id)
    return list(session.execute(query).scalars())


def get_channel(session: Session, actor: Agent, channel_id: int) -> Channel:
    require_admin(actor)
    return channel_service.get_channel(session, channel_id)


def _write_credentials(channel: Channel, changed: dict[str, str]) -> None:
    """Replaces some of the channel's secrets, keeping the others as stored in its row (not as cached: the
    cache may predate another process's rotation, which would be written back)."""
    credentials = {**decrypt_json(channel.credentials_encrypted), **changed}
    channel.credentials_encrypted = encrypt_json(credentials)
    token = credentials.get("verify_token")
    channel.verify_token_hash = sha256_hex(token) if token else None


_CHANNELS_CHANGED = "relais.channels_changed"


def _channels_changed(session: Session) -> None:
    """Drops this process's channel caches (credentials, Meta app secrets, and with them the drain's channel
    copies) now, so the rest of the request sees its change, and again when the transaction ends: until the
    commit, a webhook or drain of this process may cache the old row again (and would keep it for up to 30 s),
    and after a rollback, what this request cached of its own change must go."""
    channel_service.invalidate_cache()
    session.info[_CHANNELS_CHANGED] = True


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _drop_channel_caches(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the real end is still to come
        return
    if session.info.pop(_CHANNELS_CHANGED, None):
        channel_service.invalidate_cache()


def update_channel(session: Session, actor: Agent, channel_id: int, *, name: str | None = None,
                   status: str | None = None, config: dict[str, Any] | None = None) -> Channel:
    """Renames, disables / re-enables (clearing an error) or rotates a channel's credentials (admins).
    Webhooks verify with the new secrets, and drains see the change, as soon as it commits."""
    require_admin(actor)
    channel = channel_service.get_channel(session, channel_id)
    config = config or {}
    check_channel_config(channel.kind, config, creating=False)
    if name is not None:
        channel.name = name
    if status is not None and status != channel.status:
        channel.status = status
        channel.status_detail = None
    rotated = {key: value for key, value in config.items() if key in CREDENTIAL_KEYS}
    if rotated:
        _write_credentials(channel, rotated)
    if "webhook_url" in config:
        channel.config = {**(channel.config or {}), "webhook_url": config["webhook_url"]}
    session.flush()
    _channels_changed(session)
    return channel


def rotate_webhook_secret(session: Session, actor: Agent, channel_id: int) -> tuple[Channel, str]:
    """A new signing secret for an API channel (admins); the old one stops working at once.
    Returns the channel and the clear secret, to show once."""
    require_admin(actor)
    channel = channel_service.get_channel(session, channel_id)
    if channel.kind != "api":
        raise Conflict("only API channels have a webhook secret; rotate a page's verify_token with PATCH")
    secret = secrets.token_urlsafe(32)
    _write_credentials(channel, {"webhook_secret": secret})
    session.flush()
    _channels_changed(session)
    return channel, secret


# ---------- teams ----------
def list_teams(session: Session, actor: Agent) -> list[Team]:
    """All teams for admins, their own teams for supervisors; agents are refused."""
    query = select(Team).order_by(Team.name, Team.id)
    if actor.role == "supervisor":
        query = query.where(Team.id.in_(team_ids_for(session, actor)))
    elif actor.role != "admin":
        raise Forbidden("supervisors and administrators only")
    return list(session.execute(query).scalars())


def get_team(session: Session, actor: Agent, team_id: int) -> Team:
    """Admins see any team, supervisors their own ones (404 for others); agents are refused."""
    if actor.role not in ("admin", "supervisor"):
        raise Forbidden("supervisors and administrators only")
    team = session.get(Team, team_id)
    if team is None or (actor.role == "supervisor" and team_id not in team_ids_for(session, actor)):
        raise NotFound("team not found")
    return team


def _sync_links(rows: list[Any], key: str, wanted: set[int], make: Callable[[int], Any]) -> None:
    """Make an association collection hold exactly the `wanted` ids (rows keyed by attribute `key`)."""
    for row in [row for row in rows if getattr(row, key) not in wanted]:
        rows.remove(row)
    have = {getattr(row, key) for row in rows}
    rows.extend(make(wanted_id) for wanted_id in sorted(wanted - have))


def _set_team_brands(session: Session, team: Team, brand_ids: Iterable[int]) -> None:
    _sync_links(team.brands, "brand_id", _require_ids(session, Brand, brand_ids, "brand_ids"),
                lambda brand_id: TeamBrand(brand_id=brand_id))


def _set_team_members(session: Session, team: Team, agent_ids: Iterable[int]) -> None:
    _sync_links(team.members, "agent_id", _require_ids(session, Agent, agent_ids, "member_ids"),
                lambda agent_id: TeamMember(agent_id=agent_id))


def do_create_team(session: Session, *, name: str, brand_ids: Iterable[int] = (),
                   member_ids: Iterable[int] = ()) -> Team:
    """Writes a Team serving `brand_ids` with `member_ids` as members."""
    _check_name_free(session, Team, name)
    team = Team(name=name)
    _set_team_brands(session, team, brand_ids)
    _set_team_members(session, team, member_ids)
    _flush_unique(session, team, "name", "a team with this name exists")
    return team


def create_team(session: Session, actor: Agent, *, name: str, brand_ids: Iterable[int] = (),
                member_ids: Iterable[int] = ()) -> Team:
    require_admin(actor)
    team = do_create_team(session, name=name, brand_ids=brand_ids, member_ids=member_ids)
    access_changed(session, _member_ids(session, team.id))
    return team


def _member_ids(session: Session, team_id: int) -> set[int]:
    return set(session.execute(select(TeamMember.agent_id).where(TeamMember.team_id == team_id)).scalars())


def update_team(session: Session, actor: Agent, team_id: int, *, name: str | None = None,
                brand_ids: Iterable[int] | None = None, member_ids: Iterable[int] | None = None) -> Team:
    """Renames a team or replaces the brands it serves / its members (admins). Access follows at once:
    a member's next request sees the new brands."""
    require_admin(actor)
    team = get_team(session, actor, team_id)
    if brand_ids is not None or member_ids is not None:  # open sockets follow (before and after members)
        access_changed(session, _member_ids(session, team.id))
    if name is not None and name != team.name:
        _check_name_free(session, Team, name, except_id=team.id)
        team.name = name
        team_names.forget()  # the conversations' JSON shows it (this process at once, the others within seconds)
    if brand_ids is not None:
        _set_team_brands(session, team, brand_ids)
    if member_ids is not None:
        _set_team_members(session, team, member_ids)
    _flush_unique(session, team, "name", "a team with this name exists")
    if brand_ids is not None or member_ids is not None:
        access_changed(session, _member_ids(session, team.id))
    return team


def delete_team(session: Session, actor: Agent, team_id: int) -> None:
    """Deletes a team (admins); its conversations keep their brand and lose their team (SET NULL)."""
    require_admin(actor)
    team = get_team(session, actor, team_id)
    access_changed(session, _member_ids(session, team.id))
    session.delete(team)
    session.flush()
    team_names.forget()


# ---------- agents ----------
def list_agents(session: Session, actor: Agent) -> list[Agent]:
    """Admins: every agent. Supervisors: the agents of their teams (themselves included).
    Agents: their teammates (the API shows them only id, name and availability)."""
    query = select(Agent).order_by(Agent.name, Agent.id)
    if actor.role != "admin":
        teams = team_ids_for(session, actor)
        teammates = select(TeamMember.agent_id).where(TeamMember.team_id.in_(teams))
        query = query.where((Agent.id.in_(teammates)) | (Agent.id == actor.id))
        if actor.role == "agent":
            query = query.where(Agent.is_active.is_(True))
    return list(session.execute(query).scalars())


def get_agent(session: Session, actor: Agent, agent_id: int) -> Agent:
    """An agent visible to `actor` by the rules of `list_agents`; 404 otherwise."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound("agent not found")
    if actor.role != "admin" and agent.id != actor.id:
        shared = team_ids_for(session, actor) & team_ids_for(session, agent)
        if not shared or (actor.role == "agent" and not agent.is_active):
            raise NotFound("agent not found")
    return agent


def _set_memberships(session: Session, agent: Agent, team_ids: Iterable[int]) -> None:
    _sync_links(agent.memberships, "team_id", _require_ids(session, Team, team_ids, "team_ids"),
                lambda team_id: TeamMember(team_id=team_id))


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_agent_by_email(session: Session, email: str) -> Agent | None:
    return session.execute(select(Agent).where(func.lower(Agent.email) == normalise_email(email))) \
        .scalar_one_or_none()


def do_create_agent(session: Session, *, email: str, name: str, role: str = "agent", password: str | None = None,
                    team_ids: Iterable[int] = (), capacity: int = 20,
                    language: str | None = None) -> tuple[Agent, str | None]:
    """Writes an Agent (email stored lower-case) and their team memberships. Without a password, one is
    generated: returns the agent and that generated password (None when one was given), to show once."""
    if find_agent_by_email(session, email) is not None:
        raise Conflict("an agent with this email exists", fields={"email": ["already exists"]})
    generated = None if password else generate_password()
    agent = Agent(email=normalise_email(email), name=name, role=role, capacity=capacity, language=language,
                  password_hash=hash_password(password or generated), availability="offline")
    _set_memberships(session, agent, team_ids)
    _flush_unique(session, agent, "email", "an agent with this email exists")
    return agent, generated


def create_agent(session: Session, actor: Agent, **fields: Any) -> tuple[Agent, str | None]:
    require_admin(actor)
    return do_create_agent(session, **fields)


def _other_active_admins(session: Session, agent: Agent) -> int:
    return session.execute(select(func.count()).select_from(Agent).where(
        Agent.role == "admin", Agent.is_active.is_(True), Agent.id != agent.id)).scalar_one()


def update_agent(session: Session, actor: Agent, agent_id: int, *, name: str | None = None,
                 role: str | None = None, is_active: bool | None = None, team_ids: Iterable[int] | None = None,
                 capacity: int | None = None, language: str | None = UNSET,
                 password: str | None = None) -> Agent:
    """Changes an agent (admins). Agents are never deleted: deactivating one (or resetting their password)
    bumps their session_version, which signs them out everywhere; their API tokens stop working too.
    The last active administrator cannot be demoted or deactivated (Conflict)."""
    require_admin(actor)
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound("agent not found")
    loses_admin = agent.role == "admin" and agent.is_active and (
        (role is not None and role != "admin") or is_active is False)
    if loses_admin and _other_active_admins(session, agent) == 0:
        raise Conflict("the last active administrator cannot be demoted or deactivated",
                       fields={"role" if role is not None and role != "admin" else "is_active":
                               ["last active administrator"]})
    if name is not None:
        agent.name = name
    if role is not None:
        agent.role = role
    if capacity is not None:
        agent.capacity = capacity
    if language is not UNSET:
        agent.language = language
    if team_ids is not None:
        _set_memberships(session, agent, team_ids)
    if password is not None:
        agent.password_hash = hash_password(password)
        agent.session_version += 1
    if is_active is not None and is_active != agent.is_active:
        agent.is_active = is_active
        if not is_active:
            agent.session_version += 1
            agent.availability = "offline"
    if team_ids is not None or role is not None or is_active is not None or password is not None:
        access_changed(session, [agent.id])  # open sockets follow, or close
    session.flush()
    return agent


# ---------- the signed-in agent's own account ----------
def update_profile(session: Session, agent: Agent, *, availability: str | None = None, name: str | None = None,
                   language: str | None = UNSET) -> Agent:
    """The agent changes their own availability, display name or language.
    Publishes `agent.updated` {id, name, availability} to admins and the agent's brands when they change."""
    before = (agent.name, agent.availability)
    if availability is not None:
        agent.availability = availability
    if name is not None:
        agent.name = name
    if language is not UNSET:
        agent.language = language
    if (agent.name, agent.availability) != before:
        brand_ids = brand_ids_for(session, agent)
        rooms = ["admins", f"agent:{agent.id}"] + [f"brand:{b}" for b in sorted(brand_ids or ())]
        publish(session, "agent.updated", {"id": agent.id, "name": agent.name,
                                           "availability": agent.availability}, rooms)
    session.flush()
    return agent


def update_my_account(session: Session, agent: Agent, *, availability: str | None = None,
                      name: str | None = None, language: str | None = UNSET) -> Agent:
    """PATCH /auth/me: display name and language here; availability through `presence.set_availability`,
    the one way to choose it (it also resets presence's memory and, going online, picks up waiting work)."""
    from inbox.services import presence  # presence builds on update_profile: import it lazily

    if name is not None or language is not UNSET:
        update_profile(session, agent, name=name, language=language)
    if availability is not None:
        presence.set_availability(session, agent, availability)
    return agent


def change_password(session: Session, agent: Agent, *, current_password: str, new_password: str) -> Agent:
    """Checks the current password, stores the new one and bumps session_version: every other session of
    the agent is signed out (the caller re-issues its own session)."""
    try:
        authenticate(session, agent.email, current_password)
    except Unauthorized:
        raise ValidationFailed("the current password is wrong",
                               fields={"current_password": ["does not match"]}) from None
    try:
        agent.password_hash = hash_password(new_password)
    except ValidationFailed as err:
        raise ValidationFailed(err.message, fields={"new_password": err.fields.get("password", [])}) from None
    agent.session_version += 1
    access_changed(session, [agent.id])  # the other sessions' sockets close too
    session.flush()
    return agent


def issue_api_token(session: Session, agent: Agent, name: str) -> tuple[ApiToken, str]:
    """Writes an API token for the agent; returns it and the clear token, shown once."""
    return create_api_token(session, agent, name)


def list_api_tokens(session: Session, agent: Agent) -> list[ApiToken]:
    """The agent's tokens that still work, newest first (no secrets: only a prefix is kept in clear)."""
    return list(session.execute(select(ApiToken).where(ApiToken.agent_id == agent.id,
                                                       ApiToken.revoked_at.is_(None))
                                .order_by(ApiToken.id.desc())).scalars())


def revoke_api_token(session: Session, agent: Agent, token_id: int) -> None:
    """Revokes one of the agent's own tokens (idempotent); someone else's token is a 404."""
    token = session.get(ApiToken, token_id)
    if token is None or token.agent_id != agent.id:
        raise NotFound("token not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        access_changed(session, [agent.id])  # sockets opened with this token close
    session.flush()


# ---------- raw webhook events ----------
def list_webhook_events(session: Session, actor: Agent, *, status: str | None = None, source: str | None = None,
                        limit: int = 50, cursor: str | None = None) -> tuple[list[WebhookEvent], str | None]:
    """The raw webhook log, newest first, keyset-paginated by id (admins)."""
    require_admin(actor)
    query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    if source is not None:
        query = query.where(WebhookEvent.source == source)
    if cursor is not None:
        query = query.where(WebhookEvent.id < int(cursor))
    events = list(session.execute(query).scalars())
    next_cursor = str(events[limit - 1].id) if len(events) > limit else None
    return events[:limit], next_cursor


def get_webhook_event(session: Session, actor: Agent, event_id: int) -> WebhookEvent:
    require_admin(actor)
    event = session.get(WebhookEvent, event_id)
    if event is None:
        raise NotFound("webhook event not found")
    return event


def replay_webhook_event(session: Session, actor: Agent, event_id: int) -> WebhookEvent:
    """Puts an authentic event back in the queue: status pending, attempts 0, no error, due now (admins),
    and nudges `drain_webhook_events` (ingest queue) once the caller commits, as a stored webhook does. Events that
    failed signature verification are never processed (Conflict)."""
    from inbox.jobs.tasks import drain_webhook_events

    event = get_webhook_event(session, actor, event_id)
    if event.verification != "valid":
        raise Conflict("only events with a valid signature can be replayed",
                       details={"verification": event.verification})
    event.status = "pending"
    event.attempts = 0
    event.error = None
    event.next_attempt_at = None
    session.flush()
    nudge_after_commit(session, drain_webhook_events, queue=INGEST)
    return event
