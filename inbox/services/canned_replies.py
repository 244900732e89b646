"""Canned replies: saved answers with placeholders, managed by supervisors and admins, searched and rendered
by everyone from the composer.

Who sees what: admins see every reply; others see the global ones, the ones of the brands their teams serve
and the ones of their own teams. A reply one cannot see is a 404. Who manages what: admins any scope,
supervisors the brand and team scopes they serve (not global), agents nothing (403).

Nothing here commits, publishes or enqueues: the caller (a route with `@commit_after`) owns the transaction.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, false, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.errors import Conflict, Forbidden, NotFound, ValidationFailed
from inbox.models import Agent, Brand, CannedReply, Conversation, Team
from inbox.services import access, placeholders
from inbox.services.placeholders import RenderResult

SEARCH_LIMIT = 20


# ---------------------------------------------------------------- access
def _visible(session: Session, agent: Agent) -> Any:
    """WHERE clause: the replies `agent` may see."""
    brand_ids = access.brand_ids_for(session, agent)
    if brand_ids is None:
        return true()
    team_ids = access.team_ids_for(session, agent)
    return or_(CannedReply.scope == "global",
               and_(CannedReply.scope == "brand", CannedReply.brand_id.in_(sorted(brand_ids)))
               if brand_ids else false(),
               and_(CannedReply.scope == "team", CannedReply.team_id.in_(sorted(team_ids)))
               if team_ids else false())


def _usable_in(session: Session, agent: Agent, conversation: Conversation) -> Any:
    """WHERE clause: the replies that fit `conversation` answered by `agent`: global, the conversation's
    brand, the agent's teams and the conversation's team."""
    team_ids = access.team_ids_for(session, agent)
    if conversation.team_id is not None:
        team_ids.add(conversation.team_id)
    return or_(CannedReply.scope == "global",
               and_(CannedReply.scope == "brand", CannedReply.brand_id == conversation.brand_id),
               and_(CannedReply.scope == "team", CannedReply.team_id.in_(sorted(team_ids)))
               if team_ids else false())


def _check_manage(session: Session, agent: Agent, scope: str, brand_id: int | None, team_id: int | None) -> None:
    """403 unless `agent` may create or change a reply of this scope."""
    if agent.role == "admin":
        return
    if agent.role != "supervisor":
        raise Forbidden("only supervisors and administrators manage canned replies")
    if scope == "global":
        raise Forbidden("only administrators manage global canned replies")
    if scope == "brand" and brand_id not in (access.brand_ids_for(session, agent) or set()):
        raise Forbidden("you manage canned replies of the brands your teams serve only")
    if scope == "team" and team_id not in access.team_ids_for(session, agent):
        raise Forbidden("you manage canned replies of your own teams only")


def get_canned_reply(session: Session, agent: Agent, reply_id: int) -> CannedReply:
    """The reply if `agent` may see it (archived ones included); 404 otherwise."""
    reply = session.execute(
        select(CannedReply).where(CannedReply.id == reply_id, _visible(session, agent))).scalar_one_or_none()
    if reply is None:
        raise NotFound("canned reply not found")
    return reply


# ---------------------------------------------------------------- validation
def _check_target(session: Session, scope: str, brand_id: int | None, team_id: int | None) -> None:
    """The scope names exactly the brand or team it needs, and that brand or team exists (422 otherwise)."""
    errors: dict[str, list[str]] = {}
    if scope == "brand" and brand_id is None:
        errors["brand_id"] = ["required when scope is brand"]
    if scope == "team" and team_id is None:
        errors["team_id"] = ["required when scope is team"]
    if scope != "brand" and brand_id is not None:
        errors["brand_id"] = ["only for scope brand"]
    if scope != "team" and team_id is not None:
        errors["team_id"] = ["only for scope team"]
    if not errors and brand_id is not None and session.get(Brand, brand_id) is None:
        errors["brand_id"] = [f"unknown brand {brand_id}"]
    if not errors and team_id is not None and session.get(Team, team_id) is None:
        errors["team_id"] = [f"unknown team {team_id}"]
    if errors:
        raise ValidationFailed("the scope and its brand or team do not agree", fields=errors)


def _write(session: Session, reply: CannedReply, values: dict[str, Any]) -> None:
    """Set `values` on `reply` and write it; a live reply with the same shortcut in the same scope is a 409 on
    `shortcut`. The values are set inside the savepoint, so a conflict leaves the transaction usable."""
    shortcut = values.get("shortcut", reply.shortcut)
    try:
        with session.begin_nested():
            for key, value in values.items():
                setattr(reply, key, value)
            session.add(reply)
            session.flush()
    except IntegrityError:
        raise Conflict(f"the shortcut /{shortcut} is already used in this scope",
                       fields={"shortcut": ["already used in this scope"]}) from None


# ---------------------------------------------------------------- changes
def create_canned_reply(session: Session, agent: Agent, *, shortcut: str, title: str, body: str, scope: str,
                        brand_id: int | None = None, team_id: int | None = None,
                        language: str | None = None) -> CannedReply:
    """Create a reply (422 on an unknown placeholder or a scope without its brand/team, 403 when `agent` may
    not manage that scope, 409 when the shortcut is taken). Writes one row."""
    _check_target(session, scope, brand_id, team_id)
    _check_manage(session, agent, scope, brand_id, team_id)
    placeholders.check(body)
    reply = CannedReply(created_by_id=agent.id, usage_count=0, archived=False)
    _write(session, reply, {"shortcut": shortcut, "title": title, "body": body, "scope": scope,
                            "brand_id": brand_id, "team_id": team_id, "language": language})
    return reply


def update_canned_reply(session: Session, agent: Agent, reply_id: int, changes: dict[str, Any]) -> CannedReply:
    """Change text, shortcut, language, scope or the archived flag. Moving to another scope without naming
    its brand/team clears them. `agent` must manage both the old and the new scope. Writes one row."""
    reply = get_canned_reply(session, agent, reply_id)
    _check_manage(session, agent, reply.scope, reply.brand_id, reply.team_id)
    scope = changes.get("scope", reply.scope)
    same_scope = scope == reply.scope
    brand_id = changes["brand_id"] if "brand_id" in changes else (reply.brand_id if same_scope else None)
    team_id = changes["team_id"] if "team_id" in changes else (reply.team_id if same_scope else None)
    _check_target(session, scope, brand_id, team_id)
    _check_manage(session, agent, scope, brand_id, team_id)
    if "body" in changes:
        placeholders.check(changes["body"])
    values = {key: changes[key] for key in ("shortcut", "title", "body", "language", "archived") if key in changes}
    _write(session, reply, {**values, "scope": scope, "brand_id": brand_id, "team_id": team_id})
    return reply


def archive_canned_reply(session: Session, agent: Agent, reply_id: int) -> None:
    """Archive a reply: it leaves the composer and frees its shortcut; its usage count is kept."""
    reply = get_canned_reply(session, agent, reply_id)
    _check_manage(session, agent, reply.scope, reply.brand_id, reply.team_id)
    reply.archived = True
    session.flush()


# ---------------------------------------------------------------- composer
def _needle(q: str | None) -> str:
    """What the agent typed after "/" (the slash itself is optional), lower-cased."""
    return (q or "").strip().removeprefix("/").strip().lower()


def search_canned_replies(session: Session, agent: Agent, *, q: str | None = None, conversation_id: int | None = None,
                          language: str | None = None, archived: bool = False,
                          limit: int = SEARCH_LIMIT) -> list[CannedReply]:
    """The composer's list. Matches on the shortcut's prefix come first, then on the shortcut, title or body
    text; within each, replies in the preferred language (the `language` asked, else the conversation's, else
    the agent's) come first, then language-neutral ones, then by usage. With `conversation_id`, only the
    replies usable in that conversation (404 when the agent cannot see it); `language` also filters to that
    language and language-neutral replies. Reads only."""
    query = select(CannedReply).where(CannedReply.archived == archived, _visible(session, agent))
    preferred = language or agent.language
    if conversation_id is not None:
        conversation = access.get_conversation_for(session, agent, conversation_id)
        query = query.where(_usable_in(session, agent, conversation))
        preferred = language or placeholders.conversation_language(conversation) or agent.language
    if language:
        query = query.where(or_(CannedReply.language == language, CannedReply.language.is_(None)))
    order: list[Any] = []
    needle = _needle(q)
    if needle:
        prefix = CannedReply.shortcut.startswith(needle, autoescape=True)
        query = query.where(or_(CannedReply.shortcut.contains(needle, autoescape=True),
                                func.lower(CannedReply.title).contains(needle, autoescape=True),
                                func.lower(CannedReply.body).contains(needle, autoescape=True)))
        order.append(case((prefix, 0), else_=1))
    if preferred:
        order.append(case((CannedReply.language == preferred, 0), (CannedReply.language.is_(None), 1), else_=2))
    order += [CannedReply.usage_count.desc(), CannedReply.shortcut, CannedReply.id]
    return list(session.execute(query.order_by(*order).limit(limit)).scalars())


def render_canned_reply(session: Session, agent: Agent, reply_id: int, conversation_id: int) -> RenderResult:
    """The reply's text filled in for `conversation_id` as `agent` would send it, and the placeholders left
    without a value. 404 when the agent cannot see the conversation or the reply, 422 when the reply is not
    usable there (another brand's or team's, or archived). Increments the reply's usage count (one UPDATE)."""
    conversation = access.get_conversation_for(session, agent, conversation_id)
    reply = session.execute(
        select(CannedReply).where(CannedReply.id == reply_id,
                                  or_(_visible(session, agent), _usable_in(session, agent, conversation)))
    ).scalar_one_or_none()
    if reply is None:
        raise NotFound("canned reply not found")
    if reply.archived:
        raise ValidationFailed("this canned reply is archived", fields={"_schema": ["archived canned reply"]})
    usable = session.execute(select(CannedReply.id).where(CannedReply.id == reply.id,
                                                          _usable_in(session, agent, conversation))).first()
    if usable is None:
        raise ValidationFailed("this canned reply belongs to another brand or team",
                               fields={"conversation_id": ["the canned reply is not usable in this conversation"]})
    result = placeholders.render(reply.body, placeholders.context_for(session, conversation, agent))
    session.execute(update(CannedReply).where(CannedReply.id == reply.id)
                    .values(usage_count=CannedReply.usage_count + 1,
                            updated_at=CannedReply.updated_at)   # a use is not an edit
                    .execution_options(synchronize_session=False))
    return result
