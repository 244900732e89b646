"""Who gets a conversation: each team's assignment policy, brand routing and backlog pickup.

Routing: a brand may name a default team (`brand_routings`); a conversation that opens without a team joins
it. A team's policy (`assignment_policies`; no row = `manual`) decides what happens to its open, unassigned
conversations: `manual` leaves them in the queue; `round_robin` gives each to the eligible agent assigned
least recently; `least_loaded` to the one holding the fewest open conversations. Eligible: an active member
of the team who may see the brand, `online`, under `Agent.capacity` open conversations and under the
policy's per-channel-kind cap. With `match_language`, agents speaking the conversation's language
(`Agent.language` + `AgentState.languages`) go first; anyone eligible otherwise.

One owner, capacity kept, under concurrency: the conversation is taken with a conditional
`UPDATE ... WHERE assignee_id IS NULL` (as claim does); on PostgreSQL the agent row is locked
(FOR NO KEY UPDATE SKIP LOCKED: an agent being assigned elsewhere is skipped, never waited for, so no
deadlock) before their load is counted, and waiting conversations are picked FOR UPDATE SKIP LOCKED. On
SQLite every write transaction is BEGIN IMMEDIATE, so assigners run one at a time.

Backlog pickup: when an agent comes online or frees capacity (resolve, unassign, transfer, handoff), the
waiting unassigned conversations of their teams are offered again, urgent first then longest waiting, each
to the agent the policy picks, until nobody eligible has room. The reconciler does the same sweep on its
timer, and unassigns conversations of agents offline longer than `unassign_after_offline_minutes`.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Integer, bindparam, exists, func, or_, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from inbox import realtime
from inbox.db import db, insert_for, utcnow
from inbox.errors import Forbidden, NotFound, ValidationFailed
from inbox.jobs import enqueue_after_commit
from inbox.models import (Agent, AgentState, AssignmentPolicy, Brand, BrandRouting, Channel, Conversation, Message,
                          Team, TeamBrand, TeamMember)
from inbox.models.assignment import ASSIGNMENT_MODES
from inbox.services import access

log = logging.getLogger(__name__)
SWEEP_LIMIT = 200  # waiting conversations offered per team per sweep

# ---------------------------------------------------------------- language
_FRENCH = frozenset("""le la les un une des du de et est je tu il elle nous vous ils elles mon ma mes ton ta
votre vos notre nos pour pas ne plus avec sur dans par qui que quoi où ou mais donc car ce cette ces ça cela
suis es sommes êtes sont ai as avons avez ont bonjour bonsoir merci svp stp commande colis livraison reçu
toujours encore aussi très bien rien quand comment pourquoi au aux chez y en qu c j l d n s m t""".split())
_ENGLISH = frozenset("""the a an and is are was were be been i you he she we they my your our their his her
its it this that these those for not no with on in at of to from by what where when why how who hello hi hey
thanks thank please order package delivery received still also very good nothing have has had do does did can
could would should will just got any""".split())
_ACCENTED = re.compile(r"[àâæçéèêëîïôœùûüÿ]")
_WORD = re.compile(r"[a-zàâæçéèêëîïôœùûüÿ]+")


def detect_language(text: str | None) -> str | None:
    """A cheap guess between French and English ("fr" / "en"), None when the text does not tell.

    Stopwords count one each, a word with a French accent one more; the larger side wins, a tie says None."""
    if not text:
        return None
    words = _WORD.findall(text.lower().replace("’", "'"))
    french = sum(1 for w in words if w in _FRENCH) + sum(1 for w in words if _ACCENTED.search(w))
    english = sum(1 for w in words if w in _ENGLISH)
    if french > english:
        return "fr"
    if english > french:
        return "en"
    return None


def language_code(value: str | None) -> str | None:
    """"fr-FR" / "FR" -> "fr"."""
    if not value:
        return None
    return value.strip().lower().replace("_", "-").split("-")[0] or None


def agent_languages(agent: Agent, state: AgentState | None) -> set[str]:
    codes = {language_code(agent.language)} | {language_code(v) for v in (state.languages if state else [])}
    codes.discard(None)
    return codes  # type: ignore[return-value]


# ---------------------------------------------------------------- policies and routing
def _require_team_lead(session: Session, agent: Agent, team_id: int) -> Team:
    """The team, if `agent` is an admin or a supervisor in it (404 for teams they cannot see)."""
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound("team not found")
    if agent.role == "admin":
        return team
    member = team_id in access.team_ids_for(session, agent)
    if not member:
        raise NotFound("team not found")
    if agent.role != "supervisor":
        raise Forbidden("only the team's supervisors and administrators change its assignment policy")
    return team


def policy_for(session: Session, team_id: int | None) -> AssignmentPolicy | None:
    return session.get(AssignmentPolicy, team_id) if team_id is not None else None


def get_policy(session: Session, agent: Agent, team_id: int) -> AssignmentPolicy | None:
    """The team's policy (None = manual) for an admin or a supervisor of the team."""
    _require_team_lead(session, agent, team_id)
    return policy_for(session, team_id)


def set_policy(session: Session, agent: Agent, team_id: int, data: dict[str, Any]) -> AssignmentPolicy:
    """Replace the team's policy (admin / supervisor of the team). Enqueues, after commit, a sweep of the
    team's waiting conversations when the mode is not manual."""
    _require_team_lead(session, agent, team_id)
    if data["mode"] not in ASSIGNMENT_MODES:
        raise ValidationFailed("unknown mode", fields={"mode": [f"one of {', '.join(ASSIGNMENT_MODES)}"]})
    policy = policy_for(session, team_id)
    if policy is None:
        policy = AssignmentPolicy(team_id=team_id)
        session.add(policy)
    policy.mode = data["mode"]
    policy.capacity_by_channel_kind = dict(data.get("capacity_by_channel_kind") or {})
    policy.match_language = bool(data.get("match_language", False))
    policy.unassign_after_offline_minutes = data.get("unassign_after_offline_minutes")
    policy.updated_at = utcnow()
    session.flush()
    if policy.mode != "manual":
        from inbox.jobs.tasks import assign_waiting
        enqueue_after_commit(session, assign_waiting, team_id)
    return policy


def get_brand_routing(session: Session, agent: Agent, brand_id: int) -> dict[str, Any]:
    if session.get(Brand, brand_id) is None or not access.can_see_brand(session, agent, brand_id):
        raise NotFound("brand not found")
    routing = session.get(BrandRouting, brand_id)
    return {"brand_id": brand_id, "default_team_id": routing.default_team_id if routing else None}


def set_brand_routing(session: Session, agent: Agent, brand_id: int, default_team_id: int | None) -> dict[str, Any]:
    """Admins choose the team a brand's new conversations open in; it must serve the brand."""
    access.require_admin(agent)
    if session.get(Brand, brand_id) is None:
        raise NotFound("brand not found")
    if default_team_id is not None and not team_serves_brand(session, default_team_id, brand_id):
        raise ValidationFailed("this team does not serve the brand",
                               fields={"default_team_id": ["no such team serving this brand"]})
    routing = session.get(BrandRouting, brand_id)
    if routing is None:
        routing = BrandRouting(brand_id=brand_id)
        session.add(routing)
    routing.default_team_id = default_team_id
    routing.updated_at = utcnow()
    session.flush()
    return {"brand_id": brand_id, "default_team_id": default_team_id}


def team_serves_brand(session: Session, team_id: int, brand_id: int) -> bool:
    return session.get(TeamBrand, (team_id, brand_id)) is not None


# ---------------------------------------------------------------- choosing an agent
def _state(session: Session, agent_id: int) -> AgentState:
    """The agent's state row, created on first need (concurrent creators are fine)."""
    session.execute(insert_for(session, AgentState)
                    .values(agent_id=agent_id, connections=0, languages=[])
                    .on_conflict_do_nothing(index_elements=["agent_id"]))
    state = session.get(AgentState, agent_id)
    assert state is not None
    return state


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _open_load(session: Session, agent_ids: Iterable[int], channel_kind: str | None = None) -> dict[int, int]:
    """Open conversations held by each agent (of one channel kind when given)."""
    ids = list(agent_ids)
    if not ids:
        return {}
    query = (select(Conversation.assignee_id, func.count()).where(Conversation.assignee_id.in_(ids),
                                                                  Conversation.status == "open")
             .group_by(Conversation.assignee_id))
    if channel_kind is not None:
        query = query.join(Channel, Channel.id == Conversation.channel_id).where(Channel.kind == channel_kind)
    return {agent_id: count for agent_id, count in session.execute(query)}


def _eligible(session: Session, conversation: Conversation, policy: AssignmentPolicy,
              exclude: set[int]) -> list[Agent]:
    """Online, active team members who may see the brand and have room, best first per the policy."""
    sees_brand = or_(Agent.role == "admin", exists().where(
        TeamBrand.brand_id == conversation.brand_id, TeamMember.team_id == TeamBrand.team_id,
        TeamMember.agent_id == Agent.id))
    agents = list(session.execute(
        select(Agent).join(TeamMember, TeamMember.agent_id == Agent.id)
        .where(TeamMember.team_id == policy.team_id, Agent.is_active.is_(True), Agent.availability == "online",
               sees_brand)).scalars())
    agents = [a for a in agents if a.id not in exclude]
    if not agents:
        return []
    load = _open_load(session, (a.id for a in agents))
    kind = conversation.channel.kind
    kind_cap = (policy.capacity_by_channel_kind or {}).get(kind)
    kind_load = _open_load(session, (a.id for a in agents), kind) if kind_cap is not None else {}
    agents = [a for a in agents if load.get(a.id, 0) < a.capacity
              and (kind_cap is None or kind_load.get(a.id, 0) < kind_cap)]
    states = {s.agent_id: s for s in session.execute(
        select(AgentState).where(AgentState.agent_id.in_([a.id for a in agents]))).scalars()} if agents else {}
    never = datetime.min.replace(tzinfo=utcnow().tzinfo)

    def last_assigned(agent: Agent) -> datetime:
        state = states.get(agent.id)
        return state.last_assigned_at if state and state.last_assigned_at else never

    if policy.mode == "least_loaded":
        agents.sort(key=lambda a: (load.get(a.id, 0), last_assigned(a), a.id))
    else:
        agents.sort(key=lambda a: (last_assigned(a), a.id))
    if policy.match_language and conversation.language:
        speakers = [a for a in agents if conversation.language in agent_languages(a, states.get(a.id))]
        agents = speakers + [a for a in agents if a not in speakers]
    return agents


def _has_room(session: Session, agent: Agent, conversation: Conversation, policy: AssignmentPolicy) -> bool:
    """Checked again once the agent row is locked: the count now includes every committed assignment."""
    if _open_load(session, [agent.id]).get(agent.id, 0) >= agent.capacity:
        return False
    kind = conversation.channel.kind
    cap = (policy.capacity_by_channel_kind or {}).get(kind)
    return cap is None or _open_load(session, [agent.id], kind).get(agent.id, 0) < cap


def _lock_agent(session: Session, agent: Agent) -> bool:
    """Lock the agent row on PostgreSQL (skip when another transaction holds it); True when locked."""
    if not _is_postgresql(session):
        return True
    query = select(Agent.id).where(Agent.id == agent.id, Agent.availability == "online") \
        .with_for_update(skip_locked=True, key_share=True)
    return session.execute(query).scalar() is not None


def auto_assign(session: Session, conversation: Conversation) -> Agent | None:
    """Give an open, unassigned conversation to the agent its team's policy picks; None when the policy is
    manual, nobody eligible has room, or someone else took it meanwhile. Inside the caller's transaction.

    Writes: conversations.assignee_id / assigned_at, the agent's last_assigned_at, an activity row
    (publishes its message.created). The caller publishes the conversation."""
    if conversation.status != "open" or conversation.assignee_id is not None:
        return None
    policy = policy_for(session, conversation.team_id)
    if policy is None or policy.mode == "manual":
        return None
    released_by = (conversation.extra or {}).get("released_by")
    exclude = {released_by} if isinstance(released_by, int) else set()
    session.flush()
    for agent in _eligible(session, conversation, policy, exclude):
        if not _lock_agent(session, agent) or not _has_room(session, agent, conversation, policy):
            continue
        now = utcnow()
        extra = {k: v for k, v in (conversation.extra or {}).items() if k != "released_by"}
        taken = session.execute(
            update(Conversation)
            .where(Conversation.id == conversation.id, Conversation.assignee_id.is_(None),
                   Conversation.status == "open")
            .values(assignee_id=agent.id, assigned_at=now, updated_at=now, extra=extra)
            .execution_options(synchronize_session=False)).rowcount
        session.refresh(conversation)
        if taken != 1:
            return None
        _state(session, agent.id).last_assigned_at = now
        from inbox.services.conversations import _activity
        mode = policy.mode.replace("_", "-")
        _activity(session, conversation, None, f"Assigned to {agent.name} ({mode} assignment)",
                  {"type": "assigned", "assignee_id": agent.id, "assignee_name": agent.name, "by": "policy",
                   "mode": policy.mode})
        return agent
    return None


# ---------------------------------------------------------------- ingest, changes, sweeps
def route_conversation(session: Session, conversation: Conversation) -> Agent | None:
    """For ingest, before the conversation is published: guess its language from the first customer
    messages, put a team-less conversation in its brand's default team, and auto-assign it if it is open and
    unassigned. Returns the new assignee, if any. In a savepoint: a failure here leaves the conversation in
    the queue (the reconciler's sweep tries again), it never fails the ingest batch."""
    mark = realtime.pending_count(session)
    try:
        with session.begin_nested():
            return _route(session, conversation)
    except Exception:  # noqa: BLE001 - routing is best effort; ingestion must go on
        realtime.discard_after(session, mark)
        log.exception("routing conversation %s failed; left in the queue", conversation.id)
        return None


@dataclass(frozen=True)
class KnownRouting:
    """What `route_conversations` reads of one conversation, when the caller has read it already in the same
    transaction (ingest: `routing_columns` in the statement that locks its conversations, and the language guess
    once the batch's messages are in), so that routing it costs no statement and no savepoint."""
    default_team_id: int | None  # its brand's default team (None: no brand routing, or none set)
    policy_mode: str | None  # of the policy of its team, or of that default team when it has none (None: no policy)
    language: str | None = None  # the guess from its first customer texts (`language_of_first_texts`)...
    language_known: bool = False  # ...made by the caller: its language is unset and no customer text changed since


def routing_columns() -> tuple[Any, Any]:
    """Two columns for a SELECT of conversations (correlated to it), the `KnownRouting` of each: its brand's
    default team and the mode of the policy of its own team, else of that default team."""
    default_team = (select(BrandRouting.default_team_id).where(BrandRouting.brand_id == Conversation.brand_id)
                    .correlate(Conversation).scalar_subquery())
    mode = (select(AssignmentPolicy.mode)
            .where(AssignmentPolicy.team_id == func.coalesce(Conversation.team_id, default_team))
            .correlate(Conversation).scalar_subquery())
    return default_team.label("routing_default_team_id"), mode.label("routing_policy_mode")


def apply_known_routing(conversations: Iterable[Conversation], known: Mapping[int, KnownRouting]) -> None:
    """Sets, in memory, what `route_conversations` would set from what the caller read (`known`, by conversation
    id): the guessed language of a conversation without one, the brand's default team of one without a team. The
    caller does it before flushing the conversations, so these land in the same UPDATE."""
    for conversation in conversations:
        facts = known.get(conversation.id)
        if facts is None:
            continue
        # (no guess: left unset, not set again to None, which made the conversation dirty for the commit's flush)
        if conversation.language is None and facts.language_known and facts.language is not None:
            conversation.language = facts.language
        if conversation.team_id is None and facts.default_team_id is not None:
            conversation.team_id = facts.default_team_id


def route_conversations(session: Session, conversations: list[Conversation],
                        known: Mapping[int, KnownRouting] | None = None) -> None:
    """Batch variant of `route_conversation` for a drain batch, with the same effects: languages guessed and
    default teams set with one query each for the whole batch; the per-conversation savepoint and
    auto-assignment run only where the team's policy may assign (open, unassigned, policy not manual).
    A failure of the batch queries falls back to `route_conversation` one by one (best effort, as there).

    `known`: what the caller read already of some conversations (`KnownRouting`; applied here with
    `apply_known_routing`, which the caller may call first so that these changes share the UPDATE of its own):
    they need none of these queries, and no savepoint is taken when no conversation needs one (most drains: the
    savepoint and its queries were a third of a one-message drain)."""
    known = known or {}
    apply_known_routing(conversations, known)
    guess = [c for c in conversations
             if c.language is None and not (c.id in known and known[c.id].language_known)]
    default = [c for c in conversations if c.team_id is None and c.id not in known]
    waiting = [c for c in conversations if c.status == "open" and c.assignee_id is None]
    assigning: set[int] = set()
    if guess or default or any(c.id not in known and c.team_id is not None for c in waiting):
        try:
            with session.begin_nested():
                _guess_languages(session, guess)
                _default_teams(session, default)
                teams = {c.team_id for c in conversations if c.id not in known and c.team_id is not None
                         and c.status == "open" and c.assignee_id is None}
                assigning = set(session.execute(_assigning_query(), {"team_ids": list(teams)}).scalars()) \
                    if teams else set()
        except Exception:  # noqa: BLE001 - routing is best effort; ingestion must go on
            log.exception("batch routing failed; routing %d conversation(s) one by one", len(conversations))
            for conversation in conversations:
                route_conversation(session, conversation)
            return
    for conversation in waiting:
        facts = known.get(conversation.id)
        if facts is not None:
            assigns = facts.policy_mode is not None and facts.policy_mode != "manual"
        else:
            assigns = conversation.team_id in assigning
        if assigns and conversation.status == "open" and conversation.assignee_id is None:
            route_conversation(session, conversation)  # language and team are set: this only auto-assigns


@functools.cache
def _assigning_query() -> Any:
    """The teams among `team_ids` whose policy may assign (built once: building it cost more than running it)."""
    return select(AssignmentPolicy.team_id).where(AssignmentPolicy.team_id.in_(bindparam("team_ids", expanding=True)),
                                                  AssignmentPolicy.mode != "manual")


FIRST_TEXTS = 3  # a conversation's language is guessed from its first three customer texts
# `Conversation.language` once its first FIRST_TEXTS customer texts are in and tell no language ("ok", emoji, an
# order number): the guess is made, and it is none. Stored so that no drain reads those texts again (None: not
# guessed yet, or fewer texts so far, which a later text may complete). A message older than the conversation's
# latest inbound one, arriving late, may be one of the first three: it makes the guess again (`ingest.note_inbounds`).
# Like a guessed language it is kept when a text is edited later. The API and the live events show it as null, and
# routing, which reads a language's truth, finds none.
NO_LANGUAGE = ""


def guess_from_first_texts(texts: list[str]) -> str | None:
    """The language of a conversation from its first customer texts (at most FIRST_TEXTS, in order): the guess,
    else NO_LANGUAGE when all FIRST_TEXTS are in (final), else None (a later text may tell)."""
    guess = detect_language(" ".join(texts))
    if guess is None and len(texts) >= FIRST_TEXTS:
        return NO_LANGUAGE
    return guess


def language_of_first_texts(messages: Iterable[tuple[datetime, int, str | None]]) -> str | None:
    """The language guess from a conversation's customer messages as (platform_time, id, text): its first
    FIRST_TEXTS texts in (platform_time, id) order, as `_guess_languages` reads them from the database
    (`guess_from_first_texts`: NO_LANGUAGE when the three tell none)."""
    firsts = sorted((m for m in messages if m[2] is not None), key=lambda m: (m[0], m[1]))[:FIRST_TEXTS]
    return guess_from_first_texts([text for _at, _id, text in firsts if text is not None])


@functools.cache
def _first_texts_query(dialect: str) -> Any:
    """The first FIRST_TEXTS customer texts of each of `conversation_ids`, in order (built once per dialect).

    On PostgreSQL, a LATERAL LIMIT per conversation over ix_messages_conversation_time (the ids one array: one
    statement text whatever their count): a few index entries per conversation, however long it is. A window
    over every customer message of the conversations read them all: 18 against 4 ms for 600 conversations of 25
    messages, and a drain asks again for every conversation whose first texts tell no language. SQLite (the
    embedded mode) keeps the window."""
    if dialect == "postgresql":
        ids = func.unnest(bindparam("conversation_ids", type_=postgresql.ARRAY(Integer))).table_valued(
            "id").render_derived(name="c")
        firsts = (select(Message.text, Message.platform_time, Message.id)
                  .where(Message.conversation_id == ids.c.id, Message.direction == "in", Message.text.is_not(None))
                  .order_by(Message.platform_time, Message.id).limit(FIRST_TEXTS).lateral("m"))
        return (select(ids.c.id, firsts.c.text).select_from(ids).join(firsts, true())
                .order_by(ids.c.id, firsts.c.platform_time, firsts.c.id))
    ranked = (select(Message.conversation_id, Message.text,
                     func.row_number().over(partition_by=Message.conversation_id,
                                            order_by=(Message.platform_time, Message.id)).label("n"))
              .where(Message.conversation_id.in_(bindparam("conversation_ids", expanding=True)),
                     Message.direction == "in", Message.text.is_not(None)).subquery())
    return (select(ranked.c.conversation_id, ranked.c.text).where(ranked.c.n <= FIRST_TEXTS)
            .order_by(ranked.c.conversation_id, ranked.c.n))


def first_texts_languages(session: Session, conversation_ids: list[int]) -> dict[int, str | None]:
    """The language guess of each conversation from its first customer texts, in one query
    (`guess_from_first_texts`)."""
    texts: dict[int, list[str]] = {}
    if conversation_ids:
        query = _first_texts_query(session.get_bind().dialect.name)
        for conversation_id, text in session.execute(query, {"conversation_ids": conversation_ids}):
            texts.setdefault(conversation_id, []).append(text)
    return {cid: guess_from_first_texts(texts.get(cid, [])) for cid in conversation_ids}


def _guess_languages(session: Session, conversations: list[Conversation]) -> None:
    """Sets `language` from the first three customer texts of each conversation (one query for all)."""
    if not conversations:
        return
    guesses = first_texts_languages(session, [c.id for c in conversations])
    for conversation in conversations:
        conversation.language = guesses[conversation.id]


@functools.cache
def _default_teams_query() -> Any:
    return select(BrandRouting.brand_id, BrandRouting.default_team_id).where(
        BrandRouting.brand_id.in_(bindparam("brand_ids", expanding=True)))


def _default_teams(session: Session, conversations: list[Conversation]) -> None:
    """Puts team-less conversations in their brand's default team (one query for all)."""
    brand_ids = {c.brand_id for c in conversations}
    if not brand_ids:
        return
    defaults = dict(session.execute(_default_teams_query(), {"brand_ids": sorted(brand_ids)}).all())
    for conversation in conversations:
        if defaults.get(conversation.brand_id) is not None:
            conversation.team_id = defaults[conversation.brand_id]


def _route(session: Session, conversation: Conversation) -> Agent | None:
    if conversation.language is None:
        texts = session.execute(select(Message.text).where(
            Message.conversation_id == conversation.id, Message.direction == "in", Message.text.is_not(None))
            .order_by(Message.platform_time, Message.id).limit(FIRST_TEXTS)).scalars()
        conversation.language = guess_from_first_texts(list(texts))
    if conversation.team_id is None:
        routing = session.get(BrandRouting, conversation.brand_id)
        if routing is not None and routing.default_team_id is not None:
            conversation.team_id = routing.default_team_id
    return auto_assign(session, conversation)


def after_update(session: Session, conversation: Conversation, before: tuple[int | None, str, int | None]) -> None:
    """After an agent changed a conversation (`before` = its (assignee_id, status, team_id)): capacity freed
    by its former holder (resolve, pending, snooze, unassign, transfer) enqueues, after commit, their backlog
    pickup; a conversation back in a team's queue enqueues that team's sweep. A conversation its holder let go
    is not offered back to them."""
    assignee_before, status_before, team_before = before
    freed = assignee_before is not None and (conversation.assignee_id != assignee_before
                                             or (status_before == "open" and conversation.status != "open"))
    queued = conversation.assignee_id is None and conversation.status == "open" and conversation.team_id is not None
    if freed and queued:
        conversation.extra = {**(conversation.extra or {}), "released_by": assignee_before}
    from inbox.jobs.tasks import assign_waiting, pick_up_backlog
    if freed:
        enqueue_after_commit(session, pick_up_backlog, assignee_before)
    if queued and (freed or status_before != "open" or conversation.team_id != team_before):
        enqueue_after_commit(session, assign_waiting, conversation.team_id)


def _waiting(session: Session, team_id: int, limit: int) -> list[Conversation]:
    """Open unassigned conversations of the team: urgent first, then longest waiting (locked, skipping
    those another transaction holds, on PostgreSQL)."""
    query = (select(Conversation).where(Conversation.team_id == team_id, Conversation.status == "open",
                                        Conversation.assignee_id.is_(None))
             .order_by(Conversation.priority.desc(), Conversation.waiting_since.is_(None),
                       Conversation.waiting_since, Conversation.id).limit(limit))
    if _is_postgresql(session):
        query = query.with_for_update(skip_locked=True, of=Conversation)
    return list(session.execute(query).scalars())


def assign_waiting(session: Session, team_id: int, *, limit: int = SWEEP_LIMIT) -> int:
    """Offer the team's waiting conversations in order to the agents its policy picks. Returns how many got
    an owner; publishes conversation.updated for each (and the activity rows)."""
    policy = policy_for(session, team_id)
    if policy is None or policy.mode == "manual":
        return 0
    from inbox.services.conversations import publish_conversation
    assigned = 0
    for conversation in _waiting(session, team_id, limit):
        if auto_assign(session, conversation) is not None:
            assigned += 1
            publish_conversation(session, conversation)
    return assigned


def auto_teams_of(session: Session, agent_id: int) -> list[int]:
    """The agent's teams whose policy is not manual."""
    return list(session.execute(
        select(AssignmentPolicy.team_id).join(TeamMember, TeamMember.team_id == AssignmentPolicy.team_id)
        .where(TeamMember.agent_id == agent_id, AssignmentPolicy.mode != "manual")
        .order_by(AssignmentPolicy.team_id)).scalars())


def pick_up_backlog(session: Session, agent_id: int) -> int:
    """An agent came online or has room again: sweep the waiting conversations of their auto teams."""
    return sum(assign_waiting(session, team_id) for team_id in auto_teams_of(session, agent_id))


def unassign_offline(session: Session, now: datetime) -> int:
    """Conversations held by agents offline longer than their team's `unassign_after_offline_minutes` go
    back to the queue (activity row, conversation.updated); the team sweep then offers them again."""
    from inbox.services.conversations import _activity, publish_conversation
    # one statement finds them all: the reconciler runs often and should take its table locks at once
    query = (select(Conversation, AssignmentPolicy.unassign_after_offline_minutes, AgentState.offline_since)
             .join(AssignmentPolicy, AssignmentPolicy.team_id == Conversation.team_id)
             .join(Agent, Agent.id == Conversation.assignee_id)
             .join(AgentState, AgentState.agent_id == Conversation.assignee_id)
             .where(AssignmentPolicy.unassign_after_offline_minutes.is_not(None), Conversation.status == "open",
                    Agent.availability == "offline", AgentState.offline_since.is_not(None))
             .order_by(Conversation.id).limit(SWEEP_LIMIT))
    if _is_postgresql(session):
        query = query.with_for_update(skip_locked=True, of=Conversation)
    count = 0
    for conversation, minutes, offline_since in session.execute(query).all():
        if offline_since > now - timedelta(minutes=minutes):
            continue
        holder = conversation.assignee_id
        done = session.execute(update(Conversation)
                               .where(Conversation.id == conversation.id, Conversation.assignee_id == holder)
                               .values(assignee_id=None, assigned_at=None, updated_at=now)
                               .execution_options(synchronize_session=False)).rowcount
        session.refresh(conversation)
        if done != 1:
            continue
        name = session.get(Agent, holder).name if holder else "?"
        _activity(session, conversation, None,
                  f"Unassigned: {name} has been offline for more than {minutes} min",
                  {"type": "assigned", "assignee_id": None, "by": "policy", "reason": "offline",
                   "previous_assignee_id": holder, "previous_assignee_name": name if holder else None,
                   "minutes": minutes})
        publish_conversation(session, conversation)
        count += 1
    return count


def reconcile_assignment(now: datetime | None = None) -> dict[str, int]:
    """The reconciler's part: presence timeouts, unassign-after-offline, then a sweep of every auto team
    that has conversations waiting. Each step in its own transaction."""
    from inbox.services import presence
    now = now or utcnow()
    report = {"agents_offline": presence.expire(now)}
    with db.transaction() as session:
        report["unassigned_offline"] = unassign_offline(session, now)
    with db.transaction() as session:
        team_ids = list(session.execute(
            select(AssignmentPolicy.team_id).where(AssignmentPolicy.mode != "manual", exists().where(
                Conversation.team_id == AssignmentPolicy.team_id, Conversation.status == "open",
                Conversation.assignee_id.is_(None)))).scalars())
    assigned = 0
    for team_id in team_ids:
        with db.transaction() as session:
            assigned += assign_waiting(session, team_id)
    report["auto_assigned"] = assigned
    return report
