"""From stored raw webhook events to conversations and messages: nothing lost, nothing doubled.

`drain_webhook_events()` claims a batch of pending events (FOR UPDATE SKIP LOCKED on PostgreSQL, so several
workers never take the same ones) and applies them in ONE transaction, then commits; the live events recorded
with `realtime.publish` go out after the commit, in seq order. It loops while events are pending.

Customer messages (the bulk of the traffic) are applied set-based, a few statements per batch instead of ten
per message (`_apply_customer_batch`): one multi-row INSERT ... ON CONFLICT DO NOTHING each for contact
identities, conversations and messages. The messages go in before the conversations are locked, in (channel_id,
thread_key) order so concurrent drains never deadlock on them, and FOR NO KEY UPDATE, which the messages' foreign
key checks do not wait for: a drain waiting for another one's conversations has written its contacts and messages
meanwhile, and only the conversations' state is applied one drain after the other. That runs without a savepoint
(it cost two statements and a flush on every drain); if it fails, the whole transaction is rolled back and the
batch is claimed again and applied one event at a time, each in its own savepoint, so one bad event never blocks
the others (it is retried, then dead-lettered). Other kinds (echo, edit, delete, status) always take the per-event path.
Messages are inserted with ON CONFLICT (channel_id, external_id) DO NOTHING: a duplicate delivery, or two
workers on the same platform event, give one message.

What a drain costs is mostly per statement (SQLAlchemy and the driver spend more CPU per statement than the
database does on these small ones), so the drain sends as few as it can: raw events are claimed and their
outcomes written with Core statements (one UPDATE for the batch), channels come from a short-lived
per-process cache, the statement locking the conversations also reads what routing needs (brand default team,
team policy) and their linked ids, languages are guessed from the batch's own messages where it opened the
conversation, and the batch's live events are inserted together at the commit when nothing forces an earlier
flush; their JSON is built from the loaded rows (`conversation_model_json`, `message_item_json`), not by
marshmallow. A one-message drain to a known conversation sends eight statements.

Read and delivery receipts carry a watermark ("everything the page sent up to this time"): besides marking
the outbound messages already stored, the latest watermark of each kind is kept on the conversation, so an
outbound message stored after its receipt (its echo applied later, maybe by another worker process) is
marked at once. Both paths take the conversation's row lock first, so whichever commits second sees the other.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Callable

from flask import current_app, has_app_context
from sqlalchemy import Text, bindparam, case, cast, delete, func, literal, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, joinedload, lazyload, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from adapters import api as api_adapter
from adapters import meta as meta_adapter
from adapters.base import InboundEvent, PayloadError
from inbox import realtime
from inbox.api.schemas import PageRefs, conversation_model_json, message_item_json
from inbox.db import (db, insert_for, insert_rows, pairs_among, pairs_params, pipelined, update_rows,
                      update_rows_statement, utcnow)
from inbox.jobs import gather_after_commit
from inbox.models import (Agent, Brand, Channel, Contact, ContactIdentity, Conversation, Message,
                          Post, WebhookEvent)
from inbox.models.assignment import ConversationLink
from inbox.services import channels as channel_service
from inbox.services import assignment, handoff, sla
from inbox.services.locking import locked_message
from inbox.settings import get_settings

log = logging.getLogger(__name__)
PREVIEW_LENGTH = 280


class RetryLater(Exception):
    """The event refers to something not seen yet (an edit before its message): try again later."""


@dataclass
class ClaimedEvent:
    """A claimed raw event: the columns the drain reads, and its outcome, written back in one UPDATE for the
    batch (`_commit_with_outcomes`). A plain object, not the ORM row: the outcomes cost no change tracking and no
    flush, and the claim loads only the columns the drain reads."""
    id: int
    source: str
    channel_id: int | None
    body: bytes
    verification_detail: str | None
    attempts: int
    next_attempt_at: datetime | None
    error: str | None
    status: str = "pending"
    processed_at: datetime | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    routed: "Routed | None" = None  # parsed by `_split_batchable`: the one-by-one pass does not parse it again


@dataclass
class BatchContext:
    session: Session
    received_at: datetime
    channels_by_page: dict[str, Channel | None] = field(default_factory=dict)
    page_fingerprints: dict[str, str | None] = field(default_factory=dict)  # page id -> its app secret's fingerprint
    channels_by_id: dict[int, Channel | None] = field(default_factory=dict)  # merged into the session once a batch
    touched: dict[int, bool] = field(default_factory=dict)   # conversation id -> created in this batch
    stats: dict[str, Any] = field(default_factory=dict)
    profile_fetches: list[tuple[int, int]] = field(default_factory=list)  # (identity id, channel id)
    # the session's identity map holds clean objects weakly: keep the batch's conversations (and the contacts
    # their JSON shows) alive until they are published, or each would be SELECTed again
    conversations: dict[int, Conversation] = field(default_factory=dict)
    loaded: list[Any] = field(default_factory=list)
    # live events of the set-based pass, published later (`_release_thread_events`) so that, when nothing
    # flushes in between, they are inserted with the conversation events in one statement at the commit
    thread_events: list[tuple[str, dict[str, Any], list[str]]] = field(default_factory=list)
    # read with the set-based pass's conversation lock (`_locked_conversations`): what routing needs (and the
    # language guess, `_know_languages`), and the linked ids their JSON shows, so neither costs a statement
    routing: dict[int, assignment.KnownRouting] = field(default_factory=dict)
    links: dict[int, list[int]] = field(default_factory=dict)
    locked: set[int] = field(default_factory=set)  # conversations whose row lock this transaction holds
    attempts: int = 0  # of the raw event being applied one by one (receipts for unknown threads retry a little)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n


# ---------------------------------------------------------------- the drain
CUSTOMER_KINDS = ("message", "postback", "comment")
PER_EVENT_KINDS = ("echo", "edit", "delete", "status")  # read-then-write on existing rows: applied one by one
# PostgreSQL deadlock_detected / serialization_failure: the victim did nothing wrong, retry it in the next batch
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def _default_linger() -> float:
    """INGEST_LINGER_MS (config.py; default 5, 0 = off, at most 100), in seconds: how long a drain waits before
    it claims, so the webhooks of the next few milliseconds join its batch instead of paying a drain of their own."""
    if has_app_context():
        return float(current_app.extensions["relais.settings"].ingest_linger_ms) / 1000
    return 0.005


def _default_lanes() -> int:
    """INGEST_DRAIN_LANES (config.py; default 2) on PostgreSQL; 1 on SQLite, which has one writer at a time."""
    if not has_app_context() or db.dialect != "postgresql":
        return 1
    return int(current_app.extensions["relais.settings"].ingest_drain_lanes)


SQLITE_BATCH = 200  # SQLite's drain holds the one write lock the webhooks' acks wait for: its batches stay small


def _default_batch() -> int:
    """INGEST_DRAIN_BATCH (config.py; default 400) on PostgreSQL; at most SQLITE_BATCH on SQLite. A batch applies
    each of its conversations once, however many of their messages it holds: under a backlog (10-entry webhooks
    from 600 customers, 1 worker, alternated twice) 400 drained 6,000-6,700 messages a second against 5,500-5,800
    with 200, and 50 ~3,000 (its conversations locked a little longer per batch)."""
    if not has_app_context():
        return SQLITE_BATCH
    batch = int(current_app.extensions["relais.settings"].ingest_drain_batch)
    return batch if db.dialect == "postgresql" else min(batch, SQLITE_BATCH)


_DRAIN_LOCK = threading.Lock()
_backlog = False  # the last drain of this process stopped with a full batch: the next one does not linger
_last_end: float | None = None  # when the last drain of this process that found work ended (time.monotonic)
# a drain lingers only when that was less than this many lingers ago (5 ms: 20 ms, about 50 webhooks a second):
# below that rate another webhook would rarely arrive during the linger
LINGER_AFTER = 4


def drain_webhook_events(*, batch_size: int | None = None, time_budget: float = 30.0, linger: float | None = None,
                         before_claim: Callable[[], None] | None = None, lanes: int | None = None) -> int:
    """Process pending raw events until none is left (or the time budget is spent), `batch_size` at a time
    (INGEST_DRAIN_BATCH by default: `_default_batch`). Returns how many.

    One drain at a time per process (the embedded mode's job threads and reconciler, an RQ worker): while
    batches come one at a time they are applied in id order, so a read receipt is never applied before the echo
    it covers when the two land in different batches.

    A backlog (a batch came full) is drained by `lanes` threads at once (INGEST_DRAIN_LANES by default, on
    PostgreSQL; see `_Lane`), as worker processes drain concurrently, with SKIP LOCKED: one lane applies its
    batch's conversations while another claims, parses and writes the messages of the next, and each waits for
    PostgreSQL while the other runs Python. The watermarks kept on conversations cover the receipts and echoes
    that concurrent drains apply in either order.

    While webhooks keep coming, it first lingers `linger` seconds (INGEST_LINGER_MS by default): a drain's cost
    is mostly fixed (a transaction, a dozen statements), so under load a batch of several webhooks costs little
    more than one. "Keep coming": the previous drain of this process that found work ended less than
    LINGER_AFTER lingers ago (and did not leave a backlog, which the next drain takes at once). After a quiet
    spell it claims at once: at a few webhooks a second the linger would batch almost nothing and only delay
    the message (bench figure 2 at 20 msg/s and 1 agent, alternated: p50 23-25 -> 13-18 ms). `before_claim`
    runs after the linger, before the first claim (the nudged job clears its nudge there: webhooks stored during
    the linger ride along instead of queueing another drain).

    Writes: conversations, messages, contacts, posts, webhook event statuses. Publishes: conversation.created,
    conversation.updated, message.created, message.updated (after each batch's commit)."""
    global _backlog, _last_end
    linger = _default_linger() if linger is None else linger
    lanes = _default_lanes() if lanes is None else lanes
    batch_size = _default_batch() if batch_size is None else batch_size
    if linger > 0 and not _backlog and _webhooks_keep_coming(linger):
        time.sleep(linger)  # outside the lock: another drain of this process may run meanwhile
    if before_claim is not None:
        before_claim()
    started = time.monotonic()
    total = 0
    helpers: list[_Lane] = []
    with _DRAIN_LOCK:
        try:
            while True:
                done = _drain_one_batch(batch_size)
                total += done
                _backlog = done >= batch_size
                if not _backlog or time.monotonic() - started >= time_budget:
                    break
                if len(helpers) < lanes - 1:
                    helpers.append(_Lane(batch_size, started + time_budget))
        finally:
            for helper in helpers:
                total += helper.join()
            if total:
                _last_end = time.monotonic()
    return total


def _webhooks_keep_coming(linger: float) -> bool:
    """The previous drain of this process that found work ended less than LINGER_AFTER lingers ago."""
    return _last_end is not None and time.monotonic() - _last_end < LINGER_AFTER * linger


class _Lane:
    """Another thread of this process draining a backlog beside the drain that started it: full batches, until
    one comes back short (or the drain's time budget is spent). Each of its batches is its own transaction on
    its own connection, claimed with SKIP LOCKED like another worker's; a failure is logged and ends the lane
    (what it had claimed is rolled back, so the drain or the reconciler takes it again)."""

    def __init__(self, batch_size: int, deadline: float) -> None:
        self.batch_size, self.deadline, self.done = batch_size, deadline, 0
        self._app = current_app._get_current_object()  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._run, name="relais-drain-lane", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._app.app_context():
            try:
                while time.monotonic() < self.deadline:
                    done = _drain_one_batch(self.batch_size)
                    self.done += done
                    if done < self.batch_size:
                        break
            except Exception:  # noqa: BLE001 - the starting drain (or the reconciler) takes the batch again
                log.exception("a drain lane failed")
            finally:
                db.session.remove()

    def join(self) -> int:
        self._thread.join()
        return self.done


@functools.cache
def _claim_query(dialect: str, batch_size: int) -> Any:
    """The claim, built once per dialect and size (`now` bound at execution): the raw event columns the drain
    reads, oldest first."""
    events = WebhookEvent.__table__
    query = (select(events.c.id, events.c.source, events.c.channel_id, events.c.body, events.c.verification_detail,
                    events.c.attempts, events.c.next_attempt_at, events.c.error)
             .where(or_(events.c.status == "pending",
                        (events.c.status == "failed") & (events.c.next_attempt_at <= bindparam("now"))))
             .order_by(events.c.id).limit(batch_size))
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def _claim(session: Session, batch_size: int) -> list[ClaimedEvent]:
    query = _claim_query(session.get_bind().dialect.name, batch_size)
    return [ClaimedEvent(*row) for row in session.execute(query, {"now": utcnow()})]


def _commit_with_outcomes(session: Session, events: list[ClaimedEvent]) -> None:
    """Writes every claimed event's outcome (status, error, attempts, next attempt, processed time, stats: one
    UPDATE for all, `db.update_rows`), then commits. On PostgreSQL the outcomes, the transaction's live events
    and the COMMIT go in one round trip (`db.pipelined`) instead of three, after a flush of what the unit of work
    still holds (usually nothing); the session's own commit then finds nothing left to do but its after-commit
    work (the live events published, the jobs enqueued). Elsewhere the transaction's end commits."""
    rows = [{"id": e.id, "status": e.status, "error": e.error, "attempts": e.attempts,
             "next_attempt_at": e.next_attempt_at, "processed_at": e.processed_at, "stats": e.stats}
            for e in events]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        update_rows(session, WebhookEvent, rows)
        return
    session.flush()
    statements = [update_rows_statement(dialect, WebhookEvent, rows)]
    live = realtime.pending_insert(session)
    if live is not None:
        statements.append(live[0])
    results = pipelined(session, statements, commit=True)
    if live is not None:
        live[1](results[1])


class _SetBasedFailed(Exception):
    """The set-based pass failed: its transaction is rolled back and the batch applied one event at a time."""


def _drain_one_batch(batch_size: int) -> int:
    """Claims, applies and commits one batch; returns how many raw events it claimed.

    Customer-message events go through the set-based path first, with no savepoint; if that fails, the
    transaction is rolled back and the events (claimed again) are each applied in their own savepoint
    (`_process_one`), as are the other events."""
    try:
        return _apply_claimed(batch_size, set_based=True)
    except _SetBasedFailed as failed:
        log.warning("set-based apply failed; applying the batch one event at a time", exc_info=failed.__cause__)
    return _apply_claimed(batch_size, set_based=False)


def _apply_claimed(batch_size: int, *, set_based: bool) -> int:
    settings = get_settings()
    with db.transaction() as session:
        events = _claim(session, batch_size)
        if not events:
            return 0
        ctx = BatchContext(session=session, received_at=utcnow())
        batchable, one_by_one = _split_batchable(ctx, events)
        if batchable and set_based:
            try:
                _apply_batch(ctx, batchable)
            except Exception as exc:  # noqa: BLE001 - per-event isolation: the one-by-one pass finds the culprit
                raise _SetBasedFailed from exc
            if one_by_one:
                _release_thread_events(ctx)  # before the per-event pass publishes anything
        elif batchable:
            one_by_one = _in_lock_order(batchable) + one_by_one
        for event in one_by_one:
            _process_one(ctx, event, settings.event_max_attempts)
        _publish_touched_conversations(ctx)
        _commit_with_outcomes(session, events)
    return len(events)


@dataclass
class Routed:
    """One raw event parsed and routed to channels: what to apply, and what could not be routed."""
    items: list[tuple[Channel, InboundEvent]]
    unroutable_ids: list[str] = field(default_factory=list)
    channel_missing: bool = False  # an API channel deleted since the event was stored


def _route_event(ctx: BatchContext, event: ClaimedEvent) -> Routed:
    """Parses the raw event (pure) and finds each item's channel (cached); PayloadError if unusable."""
    if event.source == "meta":
        routed = Routed(items=[])
        fingerprint = event.verification_detail
        for item in meta_adapter.parse(event.body):
            channel = _meta_channel(ctx, item.route_key, fingerprint)
            if channel is None:
                routed.unroutable_ids.append(item.route_key)
            else:
                routed.items.append((channel, item))
        return routed
    if event.source == "api":
        channel = _channel_by_id(ctx, event.channel_id) if event.channel_id else None
        if channel is None:
            return Routed(items=[], channel_missing=True)
        return Routed(items=[(channel, item) for item in api_adapter.parse(event.body, str(channel.id))])
    raise PayloadError(f"unknown webhook source {event.source!r}")


def _routing_status(ctx: BatchContext, event: ClaimedEvent, routed: Routed) -> str:
    """The raw event's status once its routed items are applied; sets its error when something was unroutable."""
    if routed.channel_missing:
        event.error = "the API channel no longer exists"
        return "unroutable"
    if routed.unroutable_ids:
        ids = sorted(set(routed.unroutable_ids))
        ctx.count("unroutable", len(routed.unroutable_ids))
        ctx.stats["unroutable_ids"] = ids
        event.error = f"no connected channel for id(s) {', '.join(ids)}"
        return "unroutable"
    return "processed"


def _split_batchable(ctx: BatchContext, events: list[ClaimedEvent]) -> tuple[list[tuple[ClaimedEvent, Routed]],
                                                                             list[ClaimedEvent]]:
    """Events made only of customer messages (or items ignored anyway) can be applied set-based; the rest
    (other kinds, unparsable bodies: their error is recorded by `_process_one`) are applied one by one."""
    batchable: list[tuple[ClaimedEvent, Routed]] = []
    one_by_one: list[ClaimedEvent] = []
    for event in events:
        try:
            routed = _route_event(ctx, event)
        except Exception:  # noqa: BLE001 - `_process_one` parses it again and records the error
            one_by_one.append(event)
            continue
        event.routed = routed
        if any(item.kind in PER_EVENT_KINDS for _channel, item in routed.items):
            one_by_one.append(event)
        else:
            batchable.append((event, routed))
    return batchable, one_by_one


def _in_lock_order(batch: list[tuple[ClaimedEvent, Routed]]) -> list[ClaimedEvent]:
    """The events sorted by the first conversation key they lock, so one-by-one retries of a failed batch
    still take conversation locks in (roughly) the order every other drain takes them."""
    def key(pair: tuple[ClaimedEvent, Routed]) -> tuple[int, str]:
        keys = [(channel.id, item.thread_key or "") for channel, item in pair[1].items]
        return min(keys, default=(0, ""))
    return [event for event, _routed in sorted(batch, key=key)]


def _apply_batch(ctx: BatchContext, batch: list[tuple[ClaimedEvent, Routed]]) -> None:
    """Applies every event of `batch` set-based, in the batch's transaction (no savepoint: on an exception
    the caller rolls the whole transaction back, which forgets its live events and enqueues too)."""
    session = ctx.session
    ctx.profile_fetches = []
    stats = _apply_customer_batch(ctx, [(routed, {}) for _event, routed in batch])
    if ctx.profile_fetches:
        _look_up_profiles(session, [list(pair) for pair in ctx.profile_fetches])
    now = utcnow()
    for (event, routed), event_stats in zip(batch, stats):
        ctx.stats = event_stats
        event.status = _routing_status(ctx, event, routed)
        if event.status == "processed":
            event.error = None
        event.processed_at = now
        event.stats = dict(ctx.stats)


def _process_one(ctx: BatchContext, event: ClaimedEvent, max_attempts: int) -> None:
    """Applies one raw event in its own savepoint and records its outcome on the event: processed /
    unroutable, or (rolled back) invalid, failed with a retry time, or dead after `max_attempts`."""
    session = ctx.session
    mark = realtime.pending_count(session)
    touched_before, locked_before = set(ctx.touched), set(ctx.locked)
    ctx.stats = {}
    ctx.attempts = event.attempts
    savepoint = session.begin_nested()
    try:
        status = _apply_raw_event(ctx, event)
        savepoint.commit()
        event.status = status
        event.error = None if status == "processed" else event.error
        event.processed_at = utcnow()
        event.stats = dict(ctx.stats)
    except Exception as exc:  # noqa: BLE001 - one bad event must not block the others; it is kept and retried
        savepoint.rollback()
        realtime.discard_after(session, mark)
        _forget_opened(ctx, touched_before)
        ctx.locked.intersection_update(locked_before)  # PostgreSQL released the row locks taken since
        event.error = f"{type(exc).__name__}: {exc}"[:4000]
        if _is_transient(exc):
            # a deadlock / serialization victim: not the event's fault, so no attempt is spent; next batch
            event.status = "failed"
            event.next_attempt_at = utcnow()
            log.warning("webhook event %s hit %s; retried in the next batch", event.id, type(exc).__name__)
            return
        event.attempts += 1
        permanent = isinstance(exc, PayloadError)
        if permanent:
            event.status = "invalid"
        elif event.attempts >= max_attempts:
            event.status = "dead"
            log.error("webhook event %s dead after %s attempts: %s", event.id, event.attempts, exc)
        else:
            event.status = "failed"
            event.next_attempt_at = utcnow() + timedelta(seconds=min(600, 5 * 2 ** event.attempts))
        if not isinstance(exc, RetryLater | PayloadError):
            log.exception("webhook event %s failed (attempt %s)", event.id, event.attempts)


def _forget_opened(ctx: BatchContext, touched_before: set[int]) -> None:
    """After a rolled-back savepoint: the conversations it opened do not exist, so nothing is published for
    them (a conversation.created for a missing conversation went out before, its contact null)."""
    for conversation_id in [cid for cid, created in ctx.touched.items() if created and cid not in touched_before]:
        del ctx.touched[conversation_id]
        ctx.conversations.pop(conversation_id, None)
        ctx.links.pop(conversation_id, None)


def _is_transient(exc: BaseException) -> bool:
    """A lock conflict between concurrent transactions (deadlock, serialization failure), worth an immediate retry."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def _apply_raw_event(ctx: BatchContext, event: ClaimedEvent) -> str:
    """Apply every normalised event of one raw webhook, one by one; returns the raw event's new status."""
    routed = event.routed or _route_event(ctx, event)
    event.routed = None  # items may be changed while applied (an edit of an unseen comment): never reused
    for channel, item in routed.items:
        apply_inbound(ctx, channel, item)
    return _routing_status(ctx, event, routed)


# ---------------------------------------------------------------- channels, cached per process
class _ChannelCache:
    """Channels by Meta page id and by id, kept a few seconds per process: the lookup was one of the ~20
    statements of every drain. Entries are detached copies, merged into each batch's session without a query
    (`merge(load=False)`), so conversation dumps find the channel in the identity map.

    Safe against channel changes: an entry lasts `ttl` seconds (changes made by another process), and only
    while the channels service hands out the same Meta secrets mapping as when it was made. That mapping is
    rebuilt after every channel change of this process (`channels.invalidate_cache`) and every 30 s, so a
    renamed channel or a rotated app secret is seen at once here and within `ttl` elsewhere. (The credential
    cache itself would not do: asking it about a stale copy would put the stale secrets back in it.) A page
    without a channel is never cached: a page connected meanwhile is routed at once."""

    ttl = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> (made at, secrets mapping then, detached copy, app secret fingerprint)
        self._entries: dict[Any, tuple[float, Any, Channel, str | None]] = {}

    def get(self, session: Session, key: Any, load: Callable[[], Channel | None]) -> tuple[Channel | None, str | None]:
        """(the channel in `session`, the fingerprint of its Meta app secret), or (None, None)."""
        generation = channel_service.meta_app_secrets(session)  # no query while it is cached
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl and hit[1] is generation:
            return session.merge(hit[2], load=False), hit[3]
        channel = load()
        if channel is None:
            with self._lock:
                self._entries.pop(key, None)
            return None, None
        fingerprint = None
        if channel.kind == "facebook_page":
            from inbox.webhooks import app_secret_fingerprint
            fingerprint = app_secret_fingerprint(channel_service.credentials(channel)["app_secret"])
        with self._lock:
            self._entries[key] = (now, generation, _detached_copy(channel), fingerprint)
        return channel, fingerprint


def _detached_copy(channel: Channel) -> Channel:
    """A copy of the loaded row's columns, detached (persistent identity, no session), for the cache."""
    copy = Channel(**{attr.key: getattr(channel, attr.key) for attr in sa_inspect(Channel).column_attrs})
    make_transient_to_detached(copy)
    return copy


_channels = _ChannelCache()


def _meta_channel(ctx: BatchContext, page_id: str, fingerprint: str | None) -> Channel | None:
    """The page's channel, only if the event was signed with that page's own app secret (checked per event)."""
    if page_id not in ctx.channels_by_page:
        session = ctx.session
        channel, expected = _channels.get(session, ("page", page_id),
                                          lambda: channel_service.channel_by_page(session, page_id))
        ctx.channels_by_page[page_id], ctx.page_fingerprints[page_id] = channel, expected
    channel = ctx.channels_by_page[page_id]
    if channel is not None and ctx.page_fingerprints[page_id] != fingerprint:
        log.warning("event for page %s signed by another Meta app: not routed", page_id)
        return None
    return channel


def _channel_by_id(ctx: BatchContext, channel_id: int) -> Channel | None:
    """The channel, once per batch (each conversation's JSON asks for it: a merge per conversation was 5% of a
    10-entry drain's CPU)."""
    if channel_id not in ctx.channels_by_id:
        session = ctx.session
        ctx.channels_by_id[channel_id], _fingerprint = _channels.get(session, ("id", channel_id),
                                                                     lambda: session.get(Channel, channel_id))
    return ctx.channels_by_id[channel_id]


# ---------------------------------------------------------------- customer messages, set-based
@dataclass(slots=True)
class _Pending:
    """One customer message of the batch on its way in, with its keys worked out once (`_pending`): each read
    of `channel.id` is an ORM attribute's descriptor, and the keys were read several times per message."""
    channel: Channel
    item: InboundEvent
    stats: dict[str, Any]
    channel_id: int
    identity_key: tuple[str, str]  # (channel kind, author's external id)
    thread: tuple[int, str]  # (channel id, thread key)
    message_key: tuple[int, str]  # (channel id, message's external id)
    contact: Contact | None = None
    author_name: str | None = None
    post: Post | None = None
    conversation_id: int | None = None
    conversation: Conversation | None = None


def _pending(channel: Channel, item: InboundEvent, stats: dict[str, Any],
             kinds: dict[int, tuple[int, str]]) -> _Pending:
    """A complete customer message's `_Pending` (author, thread and external id set); `kinds`: the batch's
    channels' (id, identity kind), by `id(channel)`."""
    assert item.author is not None and item.thread_key is not None and item.external_id is not None
    known = kinds.get(id(channel))
    if known is None:
        known = kinds[id(channel)] = (channel.id, _identity_kind(channel))
    channel_id, kind = known
    return _Pending(channel, item, stats, channel_id, (kind, item.author.external_id),
                    (channel_id, item.thread_key), (channel_id, item.external_id))


def _apply_customer_batch(ctx: BatchContext, batch: list[tuple[Routed, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The set-based equivalent of `apply_inbound` for events holding only customer messages (and items that
    are ignored anyway). Returns each event's stats, in order.

    Writes: contacts and identities, posts, conversations (opened, then locked in (channel_id, thread_key)
    order; their waiting / last-message columns computed here and flushed once), messages (one multi-row
    INSERT ON CONFLICT DO NOTHING). Publishes message.created per new message (recorded in
    `ctx.thread_events`, see `_release_thread_events`); enqueues profile fetches."""
    pending: list[_Pending] = []
    kinds: dict[int, tuple[int, str]] = {}
    for routed, stats in batch:
        for channel, item in routed.items:
            stats[item.kind] = stats.get(item.kind, 0) + 1
            if item.kind not in CUSTOMER_KINDS:
                key = f"ignored:{item.extra.get('item', 'unknown')}"
                stats[key] = stats.get(key, 0) + 1
            elif item.author is None or item.thread_key is None or item.external_id is None:
                stats["ignored:incomplete"] = stats.get("ignored:incomplete", 0) + 1
            else:
                pending.append(_pending(channel, item, stats, kinds))
    if pending:
        _attach_contacts(ctx, pending)
        _attach_posts(ctx, pending)
        first, created = _open_conversations(ctx, pending)
        fresh = _insert_customer_messages(ctx, pending)
        _attach_conversations(ctx, pending, first, created)
        _know_languages(ctx, _note_inbound_messages(fresh))
    return [stats for _routed, stats in batch]


def _attach_contacts(ctx: BatchContext, pending: list[_Pending]) -> None:
    """Finds (or creates, identity unique per kind) the contact of every author, then applies name changes in
    event order as `upsert_contact` does. Notes profile fetches for nameless new Messenger DM contacts in
    `ctx.profile_fetches` (enqueued by the caller once the batch savepoint holds)."""
    session = ctx.session
    first: dict[tuple[str, str], _Pending] = {}
    for p in pending:
        first.setdefault(p.identity_key, p)
    identities, contacts = _identities(session, list(first))
    missing = sorted(key for key in first if key not in identities)
    if missing:
        created, created_contacts = _create_identities(session, [first[key] for key in missing],
                                                       ctx.profile_fetches)
        identities.update(created)
        contacts.update(created_contacts)
    ctx.loaded.extend(contacts.values())  # the conversations' JSON shows them (`_related_for_dump`)
    for p in pending:
        identity = identities[p.identity_key]
        contact = contacts[identity.contact_id]
        name = p.item.author.name if p.item.author else None
        if name and name != identity.name:
            identity.name = name
            if not contact.name or contact.name == identity.name:
                contact.name = name
        p.contact, p.author_name = contact, name or contact.name


def _identities(session: Session, keys: list[tuple[str, str]]
                ) -> tuple[dict[tuple[str, str], ContactIdentity], dict[int, Contact]]:
    """The existing identities among (channel_kind, external_id) keys and their contacts (by id), in one query."""
    if not keys:
        return {}, {}
    dialect = session.get_bind().dialect.name
    identities: dict[tuple[str, str], ContactIdentity] = {}
    contacts: dict[int, Contact] = {}
    for identity, contact in session.execute(_identities_query(dialect), pairs_params(dialect, "keys", keys)):
        identities[(identity.channel_kind, identity.external_id)] = identity
        contacts[contact.id] = contact
    return identities, contacts


@functools.cache
def _identities_query(dialect: str) -> Any:
    """`_identities`' statement, built once per dialect (the keys bound at execution: `pairs_among`)."""
    return (select(ContactIdentity, Contact).join(Contact, Contact.id == ContactIdentity.contact_id)
            .where(pairs_among(dialect, ContactIdentity.channel_kind, ContactIdentity.external_id, "keys")))


def _create_identities(session: Session, firsts: list[_Pending], profile_fetches: list[tuple[int, int]]
                       ) -> tuple[dict[tuple[str, str], ContactIdentity], dict[int, Contact]]:
    """Creates a contact and its identity for each key (sorted), with INSERT ... ON CONFLICT DO NOTHING on the
    identity, RETURNING the identities created (no re-read): a key another worker created meanwhile keeps
    theirs, read then, and our spare contact is deleted. Appends (identity id, channel id) to `profile_fetches`
    for nameless new Messenger DM contacts."""
    now = utcnow()
    values = [{"name": p.item.author.name, "handle": p.item.author.handle, "avatar_url": p.item.author.avatar_url,
               "created_at": now, "updated_at": now} for p in firsts]
    # one INSERT (`insert_rows`: one statement text whatever the count), the ids ascending in row order; then the
    # contacts join the session as loaded rows (the conversations' JSON shows them) without the unit of work's
    # flush, which was a quarter of the worker's time in a burst of new customers (bench.spy, ingest)
    ids = sorted(id_ for id_, in insert_rows(session, Contact, values, returning=("id",)))
    contacts = []
    for id_, row in zip(ids, values, strict=True):
        contact = Contact(id=id_, **row)
        make_transient_to_detached(contact)
        session.add(contact)
        contacts.append(contact)
    rows = [{"contact_id": contact.id, "channel_kind": p.identity_key[0], "external_id": p.identity_key[1],
             "name": contact.name, "handle": contact.handle, "avatar_url": contact.avatar_url,
             "created_at": now, "updated_at": now} for p, contact in zip(firsts, contacts)]
    stmt = (insert_for(session, ContactIdentity)
            .on_conflict_do_nothing(index_elements=["channel_kind", "external_id"])
            .returning(ContactIdentity).execution_options(render_nulls=True))  # one INSERT
    identities = {(identity.channel_kind, identity.external_id): identity for identity in session.scalars(stmt, rows)}
    won = set(identities)
    contacts_by_id = {contact.id: contact for p, contact in zip(firsts, contacts) if p.identity_key in won}
    lost = [contact.id for p, contact in zip(firsts, contacts) if p.identity_key not in won]
    if lost:
        session.execute(delete(Contact).where(Contact.id.in_(lost)).execution_options(synchronize_session=False))
        for contact in contacts:
            if contact.id in lost:
                session.expunge(contact)
        theirs, their_contacts = _identities(session, [p.identity_key for p in firsts if p.identity_key not in won])
        identities.update(theirs)
        contacts_by_id.update(their_contacts)
    for p in firsts:
        if p.identity_key in won and not p.item.author.name and p.channel.kind == "facebook_page" \
                and p.item.conversation_kind == "dm":
            profile_fetches.append((identities[p.identity_key].id, p.channel_id))
    return identities, contacts_by_id


def _attach_posts(ctx: BatchContext, pending: list[_Pending]) -> None:
    """The post of each comment (upserted once per post per batch; direct messages have none), kept referenced
    for the conversations' JSON (`_related_for_dump` read them again)."""
    posts: dict[tuple[int, str], Post | None] = {}
    for p in pending:
        if p.item.post is not None:
            key = (p.channel_id, p.item.post.external_id)
            if key not in posts:
                posts[key] = upsert_post(ctx.session, p.channel, p.item)
            p.post = posts[key]
    ctx.loaded.extend(posts.values())


def _open_conversations(ctx: BatchContext, pending: list[_Pending]
                        ) -> tuple[dict[tuple[int, str], _Pending], set[int]]:
    """The id of every thread's conversation, before any is locked: the existing ones read (one statement, no
    lock), the missing ones opened (one INSERT ... ON CONFLICT DO NOTHING in (channel_id, thread_key) order; the
    first message of a thread decides kind, contact and post), and those another drain opened meanwhile read
    again (the INSERT waited for it). Sets `conversation_id` on each pending message; returns the first message
    of each thread (by (channel_id, thread_key), in first-seen order) and the ids this transaction opened.

    The messages then go in before the conversations are locked (`_attach_conversations`): a drain waiting for
    another one's conversations has its contacts, its conversations' ids and its messages written meanwhile,
    and only what reads and writes the conversations' state waits."""
    session = ctx.session
    first: dict[tuple[int, str], _Pending] = {}
    for p in pending:
        first.setdefault(p.thread, p)
    keys = sorted(first)
    ids = _conversation_ids(session, keys)
    missing = [key for key in keys if key not in ids]
    created: set[int] = set()
    if missing:
        now = utcnow()
        rows = [{"kind": first[key].item.conversation_kind, "status": "open", "priority": 1,
                 "brand_id": first[key].channel.brand_id, "channel_id": key[0],
                 "contact_id": first[key].contact.id, "thread_key": key[1],
                 "post_id": first[key].post.id if first[key].post else None,
                 "created_at": now, "updated_at": now, "extra": {}} for key in missing]
        for id_, channel_id, thread_key in insert_rows(session, Conversation, rows,  # in key order
                                                       returning=("id", "channel_id", "thread_key"),
                                                       conflict_on=("channel_id", "thread_key")):
            ids[(channel_id, thread_key)] = id_
            created.add(id_)
        # a key not created here was opened meanwhile by another drain (committed: the INSERT waited for it)
        raced = [key for key in missing if key not in ids]
        if raced:
            ids.update(_conversation_ids(session, raced))
    for p in pending:
        p.conversation_id = ids[p.thread]
    return first, created


def _conversation_ids(session: Session, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The ids of the conversations of these (channel_id, thread_key) keys that exist, without locking them."""
    dialect = session.get_bind().dialect.name
    query = _ids_query(dialect)
    return {(channel_id, thread_key): id_ for id_, channel_id, thread_key
            in session.execute(query, pairs_params(dialect, "keys", keys))}


@functools.cache
def _ids_query(dialect: str) -> Any:
    return select(Conversation.id, Conversation.channel_id, Conversation.thread_key).where(
        pairs_among(dialect, Conversation.channel_id, Conversation.thread_key, "keys"))


def _attach_conversations(ctx: BatchContext, pending: list[_Pending], first: dict[tuple[int, str], _Pending],
                          created: set[int]) -> None:
    """Loads and locks the batch's conversations (`_open_conversations` found or opened them, and gave each
    thread's `first` message) in (channel_id, thread_key) order: those that existed before this transaction, then
    those it opened (they have no labels and no SLA clocks to load). Every drain locks in that order, so
    concurrent drains wait for each other but never deadlock. Marks them touched (created or not) in first-seen
    order."""
    keys = sorted(first)
    existing = [key for key in keys if first[key].conversation_id not in created]
    opened = [key for key in keys if first[key].conversation_id in created]
    by_key = _locked_conversations(ctx, existing) if existing else {}
    if opened:
        by_key.update(_locked_conversations(ctx, opened, created))
    for key in first:
        conversation = by_key[key]
        ctx.conversations[conversation.id] = conversation
        if conversation.id in created:
            ctx.touched[conversation.id] = True
        else:
            ctx.touched.setdefault(conversation.id, False)
    for p in pending:
        p.conversation = by_key[p.thread]


def _locked_conversations(ctx: BatchContext, keys: list[tuple[int, str]], created: set[int] | None = None
                          ) -> dict[tuple[int, str], Conversation]:
    """The conversations of these (channel_id, thread_key) keys (sorted), locked for update on PostgreSQL in
    that order (only the conversations: FOR NO KEY UPDATE OF), fresh from the database, with what their JSON
    shows joined in the same statement (brand, labels, current SLA clocks: a few rows each) instead of a query per
    relationship. With `created` (ids this transaction just inserted): those have no labels and no SLA clocks
    yet, so their collections are set empty instead of loaded.

    The same statement reads what routing needs of each (`assignment.routing_columns`: the brand's default team,
    the team's policy) and its linked ids, kept in `ctx.routing` / `ctx.links`: two statements fewer per drain
    (three with the savepoint routing then took). Neither is changed by a drain, so the snapshot this statement
    reads them in (taken before it waited for a lock) is as good as a later one."""
    session = ctx.session
    dialect = session.get_bind().dialect.name
    found = {}
    for conversation, default_team_id, policy_mode, links in \
            session.execute(_lock_query(dialect, bool(created)), pairs_params(dialect, "keys", keys)).unique():
        if created and conversation.id in created:
            set_committed_value(conversation, "label_rows", [])
            set_committed_value(conversation, "current_sla_clocks", [])
        found[(conversation.channel_id, conversation.thread_key)] = conversation
        ctx.routing[conversation.id] = assignment.KnownRouting(default_team_id, policy_mode)
        ctx.links[conversation.id] = sorted(int(linked) for linked in links.split(",")) if links else []
        ctx.locked.add(conversation.id)
    return found


@functools.cache
def _lock_query(dialect: str, created: bool) -> Any:
    """`_locked_conversations`' statement (built once per dialect and shape; the keys bound at execution)."""
    query = (select(Conversation, *assignment.routing_columns(), _linked_ids_column(dialect))
             .where(pairs_among(dialect, Conversation.channel_id, Conversation.thread_key, "keys"))
             .order_by(Conversation.channel_id, Conversation.thread_key)
             .options(joinedload(Conversation.brand)).execution_options(populate_existing=True))
    if dialect == "postgresql":  # NO KEY UPDATE: another drain's messages can reference them meanwhile (FK checks)
        query = query.with_for_update(of=Conversation, key_share=True)
    if created:
        return query.options(lazyload(Conversation.label_rows), lazyload(Conversation.current_sla_clocks))
    return query.options(joinedload(Conversation.label_rows), joinedload(Conversation.current_sla_clocks))


def _linked_ids_column(dialect: str) -> Any:
    """A conversation's linked ids as one text column ("4,17"; NULL: none), correlated to the conversation."""
    linked = cast(ConversationLink.linked_id, Text)
    joined = func.string_agg(linked, ",") if dialect == "postgresql" else func.group_concat(linked, ",")
    return (select(joined).where(ConversationLink.conversation_id == Conversation.id)
            .correlate(Conversation).scalar_subquery().label("linked_ids"))


def _insert_customer_messages(ctx: BatchContext, pending: list[_Pending]
                              ) -> list[tuple[_Pending, dict[str, Any], int]]:
    """Inserts the batch's messages with ONE multi-row INSERT ... ON CONFLICT (channel_id, external_id) DO
    NOTHING RETURNING (rows sorted by that key; a mid seen twice in the batch is inserted once), before their
    conversations are locked (their ids are known: `_open_conversations`), then, in event order, records
    message.created built from the inserted values (no re-read) and counts duplicates in the events' stats.
    Returns each new message's pending item, row values and id, in event order."""
    session = ctx.session
    replies = _reply_targets(session, pending)
    values: dict[tuple[int, str], dict[str, Any]] = {}
    for p in pending:
        if p.message_key not in values:
            values[p.message_key] = _customer_message_values(ctx, p, replies.get((p.channel_id, p.item.reply_to)))
    keys = sorted(values)
    new_ids = {(channel_id, external_id): id_ for id_, channel_id, external_id
               in insert_rows(session, Message, [values[key] for key in keys],
                              returning=("id", "channel_id", "external_id"), conflict_on=("channel_id", "external_id"))}
    _link_replies_within_batch(session, values, new_ids, replies)
    fresh = []
    for p in pending:
        message_id = new_ids.pop(p.message_key, None)  # popped: a second copy in the batch is a duplicate
        if message_id is None:
            p.stats["duplicates"] = p.stats.get("duplicates", 0) + 1
            continue
        row = values[p.message_key]
        fresh.append((p, row, message_id))
        ctx.thread_events.append(("message.created", message_item_json(_message_view(message_id, row)),
                                  realtime.message_rooms(row["conversation_id"])))
    return fresh


def _note_inbound_messages(fresh: list[tuple[_Pending, dict[str, Any], int]]
                           ) -> dict[int, list[tuple[datetime, int, str | None]]]:
    """Once the conversations are locked: updates each conversation in memory for its new messages, in event
    order (`note_inbounds`, flushed once later). Returns the new messages' (platform_time, id, text) by
    conversation id."""
    inserted: dict[int, list[tuple[datetime, int, str | None]]] = {}
    noted: dict[int, tuple[Conversation, list[tuple[datetime, str | None]]]] = {}
    for p, row, message_id in fresh:
        assert p.conversation is not None
        at = row["platform_time"]
        noted.setdefault(row["conversation_id"], (p.conversation, []))[1].append(
            (at, _preview(p.item.text, p.item.attachments)))
        inserted.setdefault(row["conversation_id"], []).append((at, message_id, row["text"]))
    for conversation, messages in noted.values():
        note_inbounds(conversation, messages)
    return inserted


def _know_languages(ctx: BatchContext, inserted: dict[int, list[tuple[datetime, int, str | None]]]) -> None:
    """The language guess of the batch's conversations that have none, for routing (`KnownRouting`): from the
    batch's own messages for those this transaction opened (no other transaction can write to a conversation
    it has not seen yet, so they hold nothing else), else from their first texts, read in one query now that
    the batch's messages are in. A customer text added or edited later in the batch forgets it
    (`_texts_changed`)."""
    unset = [c for c in ctx.conversations.values() if c.language is None and c.id in ctx.routing]
    if not unset:
        return
    with ctx.session.no_autoflush:  # the messages are in (Core INSERT): the conversations' changes can wait
        read = assignment.first_texts_languages(ctx.session, [c.id for c in unset if not ctx.touched.get(c.id)])
    for conversation in unset:
        guess = assignment.language_of_first_texts(inserted.get(conversation.id, ())) \
            if ctx.touched.get(conversation.id) else read[conversation.id]
        ctx.routing[conversation.id] = replace(ctx.routing[conversation.id], language=guess, language_known=True)


def _texts_changed(ctx: BatchContext, conversation_id: int) -> None:
    """A customer text of the conversation was added or edited after `_know_languages`: routing reads them."""
    known = ctx.routing.get(conversation_id)
    if known is not None and known.language_known:
        ctx.routing[conversation_id] = replace(known, language=None, language_known=False)


@functools.cache
def _message_attributes() -> tuple[str, ...]:
    return tuple(attr.key for attr in sa_inspect(Message).column_attrs)


def _message_view(message_id: int, row: dict[str, Any]) -> SimpleNamespace:
    """The inserted message as the schema reads it, from the INSERT's values: every mapped column, None
    where the row does not set it, as a transient `Message(**row)` reads. A plain namespace, because building
    an ORM instance (instrumented state, events) per message cost more than dumping it."""
    view = SimpleNamespace(**dict.fromkeys(_message_attributes()))
    view.__dict__.update(row)
    view.id = message_id
    return view


def _customer_message_values(ctx: BatchContext, p: _Pending, reply_to: int | None) -> dict[str, Any]:
    """The messages row of a customer message, as `_apply_customer_message` writes it."""
    item = p.item
    assert p.conversation_id is not None and p.contact is not None
    extra = {k: v for k, v in item.extra.items() if k in ("quick_reply_payload", "postback_payload", "verb",
                                                          "parent_id", "post_id", "echo_id", "payload")}
    if item.kind == "postback":
        extra.setdefault("postback_payload", item.extra.get("payload"))
    return _message_defaults({
        "conversation_id": p.conversation_id, "channel_id": p.channel_id, "direction": "in",
        "kind": "comment" if item.kind == "comment" else "message", "external_id": item.external_id,
        "author_type": "contact", "author_contact_id": p.contact.id, "author_name": p.author_name,
        "text": item.text, "attachments": [a.as_dict() for a in item.attachments],
        "reply_to_id": reply_to, "reply_to_external_id": item.reply_to,
        "platform_time": customer_time(item, ctx.received_at), "received_at": ctx.received_at, "extra": extra,
    })


def _reply_targets(session: Session, pending: list[_Pending]) -> dict[tuple[int, str], int]:
    """Ids of the stored messages the batch's messages reply to, by (channel_id, external_id), in one query."""
    keys = sorted({(p.channel_id, p.item.reply_to) for p in pending if p.item.reply_to})
    if not keys:
        return {}
    dialect = session.get_bind().dialect.name
    query = select(Message.id, Message.channel_id, Message.external_id).where(
        pairs_among(dialect, Message.channel_id, Message.external_id, "keys"))
    return {(channel_id, external_id): id_ for id_, channel_id, external_id
            in session.execute(query, pairs_params(dialect, "keys", keys))}


def _link_replies_within_batch(session: Session, values: dict[tuple[int, str], dict[str, Any]],
                               new_ids: dict[tuple[int, str], int], replies: dict[tuple[int, str], int]) -> None:
    """A reply to a message inserted by this same batch gets its reply_to_id now that the id is known (rare)."""
    for key, row in values.items():
        target = (key[0], row["reply_to_external_id"])
        if row["reply_to_id"] is None and row["reply_to_external_id"] and target in new_ids and key in new_ids:
            row["reply_to_id"] = replies[target] = new_ids[target]
            session.execute(update(Message).where(Message.id == new_ids[key]).values(reply_to_id=new_ids[target])
                            .execution_options(synchronize_session=False))


# ---------------------------------------------------------------- one normalised event
def apply_inbound(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    """Apply one normalised event to the channel's conversations (inside the caller's transaction)."""
    ctx.count(item.kind)
    if item.kind in ("message", "postback", "comment"):
        _apply_customer_message(ctx, channel, item)
    elif item.kind == "echo":
        _apply_echo(ctx, channel, item)
    elif item.kind == "edit":
        _apply_edit(ctx, channel, item)
    elif item.kind == "delete":
        _apply_delete(ctx, channel, item)
    elif item.kind == "status":
        _apply_status(ctx, channel, item)
    else:
        ctx.count(f"ignored:{item.extra.get('item', 'unknown')}")


def customer_time(item: InboundEvent, received_at: datetime) -> datetime:
    """The platform's time, capped at our reception time if the platform's clock is ahead (design.md)."""
    return min(item.platform_time, received_at)


def _look_up_profiles(session: Session, pairs: list[list[int]]) -> None:
    """Once `session` commits, look up these new customers' names ([identity id, channel id] pairs): gathered
    with the other drains' for PROFILE_LOOKUP_BATCH_MS into one job (`jobs.gather`), not a job per drain."""
    from inbox.jobs.tasks import fetch_contact_profiles
    gather_after_commit(session, fetch_contact_profiles, pairs,
                        window=get_settings().profile_lookup_batch_ms / 1000)


def _identity_kind(channel: Channel) -> str:
    # API channel ids are the integrator's own: scope them to the channel so two integrators never collide
    return f"api:{channel.id}" if channel.kind == "api" else channel.kind


def upsert_contact(session: Session, channel: Channel, item: InboundEvent) -> Contact:
    """The contact behind the event's author, created with its identity on first sight (unique per kind)."""
    assert item.author is not None
    kind, external_id = _identity_kind(channel), item.author.external_id
    query = select(ContactIdentity).where(ContactIdentity.channel_kind == kind,
                                          ContactIdentity.external_id == external_id)
    identity = session.execute(query).scalar_one_or_none()
    if identity is None:
        try:
            with session.begin_nested():
                contact = Contact(name=item.author.name, handle=item.author.handle,
                                  avatar_url=item.author.avatar_url)
                session.add(contact)
                session.flush()
                identity = ContactIdentity(contact_id=contact.id, channel_kind=kind, external_id=external_id,
                                           name=item.author.name, handle=item.author.handle,
                                           avatar_url=item.author.avatar_url)
                session.add(identity)
                session.flush()
                if not item.author.name and channel.kind == "facebook_page" and item.conversation_kind == "dm":
                    _look_up_profiles(session, [[identity.id, channel.id]])
                return contact
        except IntegrityError:  # another worker created it between our read and our insert
            identity = session.execute(query).scalar_one()
    contact = session.get(Contact, identity.contact_id)
    assert contact is not None
    if item.author.name and item.author.name != identity.name:
        identity.name = item.author.name
        if not contact.name or contact.name == identity.name:
            contact.name = item.author.name
    return contact


def upsert_post(session: Session, channel: Channel, item: InboundEvent) -> Post | None:
    if item.post is None:
        return None
    values = {"channel_id": channel.id, "external_id": item.post.external_id, "text": item.post.text,
              "permalink": item.post.permalink, "created_at": utcnow(), "updated_at": utcnow()}
    session.execute(insert_for(session, Post).values(**values)
                    .on_conflict_do_nothing(index_elements=["channel_id", "external_id"]))
    post = session.execute(select(Post).where(Post.channel_id == channel.id,
                                              Post.external_id == item.post.external_id)).scalar_one()
    if item.post.text and not post.text:
        post.text = item.post.text
    if item.post.permalink and not post.permalink:
        post.permalink = item.post.permalink
    return post


def find_or_open_conversation(ctx: BatchContext, channel: Channel, thread_key: str, kind: str,
                              contact: Contact, post: Post | None) -> Conversation:
    """The conversation of (channel, thread_key), opened if new; locked for update on PostgreSQL."""
    session = ctx.session
    now = utcnow()
    stmt = (insert_for(session, Conversation)
            .values(kind=kind, status="open", priority=1, brand_id=channel.brand_id, channel_id=channel.id,
                    contact_id=contact.id, thread_key=thread_key, post_id=post.id if post else None,
                    created_at=now, updated_at=now, extra={})
            .on_conflict_do_nothing(index_elements=["channel_id", "thread_key"])
            .returning(Conversation.id))
    created_id = session.execute(stmt).scalar()
    if created_id is not None:
        ctx.links[created_id] = []  # a conversation nobody else has seen yet is linked to nothing
    query = select(Conversation).where(Conversation.channel_id == channel.id, Conversation.thread_key == thread_key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    conversation = session.execute(query.execution_options(populate_existing=True)).scalar_one()
    ctx.conversations[conversation.id] = conversation
    ctx.locked.add(conversation.id)
    if created_id is not None:
        ctx.touched[conversation.id] = True
    else:
        ctx.touched.setdefault(conversation.id, False)
    return conversation


def _message_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Fills the columns a message INSERT must not leave NULL; returns `values` (changed in place)."""
    values.setdefault("attachments", [])
    values.setdefault("edit_history", [])
    values.setdefault("extra", {})
    values.setdefault("hidden", False)
    values.setdefault("liked", False)
    values.setdefault("delivery_attempts", 0)
    return values


def insert_message(session: Session, values: dict[str, Any]) -> Message | None:
    """INSERT ... ON CONFLICT (channel_id, external_id) DO NOTHING RETURNING the row, as a Message in the
    session (no re-select); None if it existed. populate_existing: a row id may come back that the session
    still maps to a message of a rolled-back savepoint (SQLite reuses the ids of deleted rows)."""
    _message_defaults(values)
    stmt = (insert_for(session, Message)
            .on_conflict_do_nothing(index_elements=["channel_id", "external_id"])
            .returning(Message).execution_options(populate_existing=True))
    return session.scalars(stmt, [values]).first()


def _preview(text: str | None, attachments: list[Any]) -> str | None:
    if text:
        return text[:PREVIEW_LENGTH]
    if attachments:
        return f"[{attachments[0].type if hasattr(attachments[0], 'type') else 'attachment'}]"
    return None


def note_inbound(conversation: Conversation, at: datetime, preview: str | None) -> None:
    """A customer message at `at` (platform time): waiting, reopened, preview (out-of-order safe)."""
    note_inbounds(conversation, [(at, preview)])


def note_inbounds(conversation: Conversation, messages: list[tuple[datetime, str | None]]) -> None:
    """`note_inbound` for each customer message (platform time, preview), in that order, with the conversation's
    attributes read once and each changed one written once (a drain's batch brings several messages per
    conversation; the ORM attributes' descriptors per message were 6% of its CPU)."""
    first_in, last_in = conversation.first_inbound_at, conversation.last_inbound_at
    last_out, waiting = conversation.last_outbound_at, conversation.waiting_since
    if last_in is not None and conversation.language == assignment.NO_LANGUAGE \
            and any(at < last_in for at, _preview in messages):
        # an older message came late: it may be one of the first three texts, so the guess is made again
        conversation.language = None
    unanswered = False
    latest_at, latest_preview = messages[0]
    for at, preview in messages:
        if first_in is None or at < first_in:
            first_in = at
        if last_in is None or at > last_in:
            last_in = at
        if last_out is None or at > last_out:  # not answered
            unanswered = True
            if waiting is None or at < waiting:
                waiting = at
        if at >= latest_at:  # the latest, the last of equals: what one at a time would leave
            latest_at, latest_preview = at, preview
    if first_in != conversation.first_inbound_at:
        conversation.first_inbound_at = first_in
    if last_in != conversation.last_inbound_at:
        conversation.last_inbound_at = last_in
    if waiting != conversation.waiting_since:
        conversation.waiting_since = waiting
    if unanswered and conversation.status != "open":
        conversation.status = "open"
        conversation.snoozed_until = None
        conversation.resolved_at = None
    _note_last_message(conversation, latest_at, latest_preview, "in")


def note_public_reply(conversation: Conversation, at: datetime, preview: str | None) -> None:
    """A public reply went out at `at`: everything the customer sent before it is answered."""
    if conversation.last_outbound_at is None or at > conversation.last_outbound_at:
        conversation.last_outbound_at = at
    if conversation.waiting_since is not None and conversation.waiting_since <= at:
        conversation.waiting_since = None
    _note_last_message(conversation, at, preview, "out")


def _note_last_message(conversation: Conversation, at: datetime, preview: str | None, direction: str) -> None:
    if conversation.last_message_at is None or at >= conversation.last_message_at:
        conversation.last_message_at = at
        conversation.last_message_preview = preview
        conversation.last_message_direction = direction
    conversation.updated_at = utcnow()


def _apply_customer_message(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    session = ctx.session
    if item.author is None or item.thread_key is None or item.external_id is None:
        ctx.count("ignored:incomplete")
        return
    contact = upsert_contact(session, channel, item)
    post = upsert_post(session, channel, item)
    conversation = find_or_open_conversation(ctx, channel, item.thread_key, item.conversation_kind, contact, post)
    at = customer_time(item, ctx.received_at)
    reply_to = _message_by_external_id(session, channel.id, item.reply_to) if item.reply_to else None
    extra = {k: v for k, v in item.extra.items() if k in ("quick_reply_payload", "postback_payload", "verb",
                                                          "parent_id", "post_id", "echo_id", "payload")}
    if item.kind == "postback":
        extra.setdefault("postback_payload", item.extra.get("payload"))
    message = insert_message(session, {
        "conversation_id": conversation.id, "channel_id": channel.id, "direction": "in",
        "kind": "comment" if item.kind == "comment" else "message", "external_id": item.external_id,
        "author_type": "contact", "author_contact_id": contact.id, "author_name": item.author.name or contact.name,
        "text": item.text, "attachments": [a.as_dict() for a in item.attachments],
        "reply_to_id": reply_to.id if reply_to else None, "reply_to_external_id": item.reply_to,
        "platform_time": at, "received_at": ctx.received_at, "extra": extra,
    })
    if message is None:
        ctx.count("duplicates")
        return
    _texts_changed(ctx, conversation.id)
    note_inbound(conversation, at, _preview(item.text, item.attachments))
    realtime.publish(session, "message.created", message_item_json(message), realtime.message_rooms(conversation.id))


def _message_by_external_id(session: Session, channel_id: int, external_id: str | None) -> Message | None:
    if not external_id:
        return None
    return session.execute(select(Message).where(Message.channel_id == channel_id,
                                                 Message.external_id == external_id)).scalar_one_or_none()


def _apply_echo(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    """Our own send coming back (matched by metadata = idempotency key, or by mid), or a teammate's native
    reply on the platform: stored as an outbound public reply, which answers the customer."""
    session = ctx.session
    key = item.extra.get("metadata")
    if key:
        found = session.execute(select(Message.id, Message.conversation_id)
                                .where(Message.idempotency_key == key)).one_or_none()
        if found is not None:
            # the conversation's lock first (as receipts and the send's outcome take it), then our message read
            # fresh: the status it decides from is the committed one (the send job may have recorded it failed
            # or sent while this waited), and the conversation's watermarks are final for this send
            ours, conversation = locked_message(session, found.id, found.conversation_id)
            if ours.external_id is None and item.external_id:
                ours.external_id = item.external_id
            _mark_sent(session, conversation, ours, item.platform_time)
            ctx.count("echo_matched")
            return
    if _message_by_external_id(session, channel.id, item.external_id) is not None:
        ctx.count("duplicates")
        return
    conversation = _echo_conversation(ctx, channel, item)
    if conversation is None:
        ctx.count("ignored:echo_without_thread")
        return
    at = min(item.platform_time, ctx.received_at)
    values = {
        "conversation_id": conversation.id, "channel_id": channel.id, "direction": "out",
        "kind": "comment" if item.conversation_kind == "comment" else "message", "reply_type": "reply",
        "external_id": item.external_id, "author_type": "page", "author_name": channel.name, "text": item.text,
        "attachments": [a.as_dict() for a in item.attachments], "reply_to_external_id": item.reply_to,
        "platform_time": at, "received_at": ctx.received_at, "delivery_status": "sent", "sent_at": at,
        "extra": {"native": True, "app_id": item.extra.get("app_id")},
    }
    values.update(receipts_for(conversation, at, "sent", None))  # receipts applied before this echo
    message = insert_message(session, values)
    if message is None:
        ctx.count("duplicates")
        return
    ctx.touched.setdefault(conversation.id, False)
    note_public_reply(conversation, at, _preview(item.text, item.attachments))
    realtime.publish(session, "message.created", message_item_json(message), realtime.message_rooms(conversation.id))


def _echo_conversation(ctx: BatchContext, channel: Channel, item: InboundEvent) -> Conversation | None:
    session = ctx.session
    if item.conversation_kind == "comment":
        parent = _message_by_external_id(session, channel.id, item.reply_to)
        return session.get(Conversation, parent.conversation_id) if parent else None
    if item.thread_key is None:
        return None
    # locked (the receipts of the thread take the same lock): its watermarks stay as read until we commit
    conversation = _locked_conversation_by_key(session, channel.id, item.thread_key)
    if conversation is not None:
        ctx.locked.add(conversation.id)
    if conversation is None and item.author is not None:
        # the page wrote first (natively): open the thread with the customer (the echo's recipient)
        recipient = item.extra.get("recipient_id") or item.thread_key.split(":", 1)[-1]
        contact_event = InboundEvent(route_key=item.route_key, kind="message", platform_time=item.platform_time,
                                     author=type(item.author)(external_id=recipient))
        contact = upsert_contact(session, channel, contact_event)
        conversation = find_or_open_conversation(ctx, channel, item.thread_key, "dm", contact, None)
    return conversation


def _mark_sent(session: Session, conversation: Conversation, message: Message, at: datetime) -> None:
    """The echo of our own send: sent (if we did not know yet), then the receipts the conversation already
    holds (a read receipt applied before this echo, or before the send was recorded). `message` must be read
    under the locks (`locked_message`): a status the platform proved (sent, delivered, read) is left as is."""
    sent = message.delivery_status in ("queued", "sending", "unknown", "failed")
    if message.delivery_status in ("queued", "sending"):  # the conversation's next reply waited for this one
        from inbox.services.delivery import release_next
        release_next(session, message)
    if sent:
        message.delivery_status = "sent"
        message.delivery_error = None
        message.sent_at = message.sent_at or at
    receipts = receipts_for(conversation, message.platform_time, message.delivery_status, message.delivered_at)
    for key, value in receipts.items():
        setattr(message, key, value)
    if not sent and not receipts:
        return
    if sent:
        note_public_reply(conversation, at, message.text[:PREVIEW_LENGTH] if message.text else None)
    realtime.publish(session, "message.updated", message_item_json(message), realtime.message_rooms(conversation.id))
    if sent:
        realtime.publish(session, "conversation.updated",
                         conversation_model_json(conversation, handoff.linked_ids(conversation), PageRefs(), utcnow()),
                         realtime.conversation_rooms(conversation.brand_id))


def _apply_edit(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    session = ctx.session
    message = _message_by_external_id(session, channel.id, item.target_external_id)
    if message is None:
        if item.conversation_kind == "comment" and item.author is not None and item.thread_key:
            # an edit of a comment we never saw: keep it as the comment itself
            item.external_id = item.target_external_id
            _apply_customer_message(ctx, channel, item)
            return
        raise RetryLater(f"edit of unknown message {item.target_external_id}")
    at = item.platform_time
    if message.edited_at is not None and at <= message.edited_at or message.text == item.text:
        ctx.count("duplicates")
        return
    message.edit_history = [*message.edit_history, {"text": message.text, "replaced_at": at.isoformat()}]
    message.text = item.text
    message.edited_at = at
    _texts_changed(ctx, message.conversation_id)
    _publish_message_update(ctx, message)


def _apply_delete(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    message = _message_by_external_id(ctx.session, channel.id, item.target_external_id)
    if message is None:
        ctx.count("ignored:delete_of_unknown")
        return
    if message.deleted_at is None:
        message.deleted_at = item.platform_time
        _publish_message_update(ctx, message)


RECEIPT_RANK = {"sent": 1, "unknown": 1, "delivered": 2, "read": 3}
# attempts of a receipt for a thread with no conversation yet before it is dropped: the echo opening the thread
# (the page wrote first) may be in a batch another worker has not committed yet; retried after 10 s, then 20 s
RECEIPT_RETRIES = 2


def _apply_status(ctx: BatchContext, channel: Channel, item: InboundEvent) -> None:
    """Delivery and read receipts for our outbound messages (by message ids and/or a watermark).

    A watermark is first kept on the conversation (the latest of each kind, `_keep_watermark`, which takes
    the conversation's row lock), then applied to the outbound messages already stored; `receipts_for`
    applies it to those stored later (echoes, our own sends, which take the same lock), whatever the order and
    the process."""
    session = ctx.session
    status = item.status
    if status not in ("delivered", "read"):
        ctx.count("ignored:status")
        return
    targets: list[Message] = []
    if item.watermark is not None and item.thread_key:
        conversation_id = _keep_watermark(session, channel.id, item.thread_key, status, item.watermark)
        if conversation_id is None:
            if ctx.attempts < RECEIPT_RETRIES:
                raise RetryLater(f"{status} receipt for thread {item.thread_key} not seen yet")
            ctx.count("ignored:receipt_without_thread")
        else:
            targets += session.execute(select(Message).where(
                Message.conversation_id == conversation_id, Message.direction == "out",
                Message.platform_time <= item.watermark,
                Message.delivery_status.in_(("sent", "delivered", "unknown")))).scalars()
    ids = list(item.target_external_ids) + ([item.target_external_id] if item.target_external_id else [])
    if ids:
        targets += session.execute(select(Message).where(Message.channel_id == channel.id,
                                                         Message.external_id.in_(ids),
                                                         Message.direction == "out")).scalars()
    for message in {m.id: m for m in targets}.values():
        if RECEIPT_RANK.get(message.delivery_status or "", 0) >= RECEIPT_RANK[status] \
                or message.delivery_status not in RECEIPT_RANK:
            continue
        message.delivery_status = status
        if status == "read":
            message.read_at = item.watermark or item.platform_time
        message.delivered_at = message.delivered_at or item.watermark or item.platform_time
        _publish_message_update(ctx, message)


def _keep_watermark(session: Session, channel_id: int, thread_key: str, status: str, watermark: datetime
                    ) -> int | None:
    """Raises the thread's kept watermark of this kind to `watermark` (never lowers it) in ONE statement,
    which takes the conversation's row lock (waiting for a drain applying an echo there to commit); returns
    the conversation's id, or None if the thread has no conversation yet. The receipt changes nothing shown:
    updated_at is kept."""
    column = Conversation.__table__.c.read_watermark if status == "read" else \
        Conversation.__table__.c.delivery_watermark
    raised = case((column.is_(None) | (column < watermark), literal(watermark, column.type)), else_=column)
    stmt = (update(Conversation)
            .where(Conversation.channel_id == channel_id, Conversation.thread_key == thread_key)
            .values({column.key: raised, "updated_at": Conversation.updated_at})
            .returning(Conversation.id)
            .execution_options(synchronize_session=False))
    return session.execute(stmt).scalar()


def receipts_for(conversation: Conversation, at: datetime, status: str | None,
                 delivered_at: datetime | None) -> dict[str, Any]:
    """What the receipts already kept on the conversation say of an outbound message sent at `at` and now at
    `status`: the columns to set (delivery_status, delivered_at, read_at), or nothing."""
    rank = RECEIPT_RANK.get(status or "")
    if rank is None:  # queued, sending, failed: not sent as far as we know
        return {}
    read, delivered = conversation.read_watermark, conversation.delivery_watermark
    if read is not None and at <= read and rank < RECEIPT_RANK["read"]:
        covered = delivered if delivered is not None and at <= delivered else read
        return {"delivery_status": "read", "read_at": read, "delivered_at": delivered_at or covered}
    if delivered is not None and at <= delivered and rank < RECEIPT_RANK["delivered"]:
        return {"delivery_status": "delivered", "delivered_at": delivered_at or delivered}
    return {}


def _locked_conversation_by_key(session: Session, channel_id: int, thread_key: str) -> Conversation | None:
    """The thread's conversation (None if not opened yet), locked on PostgreSQL as the set-based drain locks
    it (FOR NO KEY UPDATE), fresh."""
    query = select(Conversation).where(Conversation.channel_id == channel_id, Conversation.thread_key == thread_key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Conversation, key_share=True)
    return session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()


def _publish_message_update(ctx: BatchContext, message: Message) -> None:
    realtime.publish(ctx.session, "message.updated", message_item_json(message),
                     realtime.message_rooms(message.conversation_id))


def _release_thread_events(ctx: BatchContext) -> None:
    """Publishes the live events the set-based pass recorded (in their order). They wait so that, when nothing
    flushes between them and the conversation events, all of the batch's live events are inserted by ONE
    statement at the commit; published once per commit, in seq order, as any others."""
    for name, data, rooms in ctx.thread_events:
        realtime.publish(ctx.session, name, data, rooms)
    ctx.thread_events.clear()


def _publish_touched_conversations(ctx: BatchContext) -> None:
    """One conversation.created / conversation.updated per conversation per batch, with its final state.

    Sets what the set-based pass read for routing (`ctx.routing`: languages, default teams) and flushes once
    (routing reads the batch's messages), routes the conversations together (auto-assignment where a policy
    assigns; what was not read already), refreshes their SLA clocks, then builds each one's JSON from the loaded
    rows (`conversation_model_json`: the schema's JSON without marshmallow), with what it shows loaded beforehand
    and the links read with the lock (else in one query) instead of lazy loads per conversation. The set-based
    pass's message.created events are published after the routing's flush unless routing may publish an
    activity row (auto-assignment of an open, unassigned conversation): the customer's message comes first."""
    session = ctx.session
    conversations = [(c, created) for c, created in
                     ((ctx.conversations.get(cid) or session.get(Conversation, cid), created)
                      for cid, created in ctx.touched.items())
                     if c is not None]
    ctx.touched.clear()
    if not conversations:
        _release_thread_events(ctx)
        return
    touched = [c for c, _created in conversations]
    assignment.apply_known_routing(touched, ctx.routing)  # in the UPDATE the batch's changes are written in now
    _write_conversations(session, [c for c in touched if c.id in ctx.locked])  # the others: the flush
    session.flush()
    if any(c.status == "open" and c.assignee_id is None for c in touched):
        _release_thread_events(ctx)
    assignment.route_conversations(session, touched, ctx.routing)
    _release_thread_events(ctx)
    for conversation in touched:
        sla.refresh_conversation(session, conversation, "ingest", locked=conversation.id in ctx.locked)
    related = _related_for_dump(session, touched)  # referenced until the JSON is built
    read = handoff.links_of(session, [c.id for c in touched if c.id not in ctx.links])
    now, refs, held = utcnow(), PageRefs(), session.identity_map
    for conversation, created in conversations:
        links = ctx.links[conversation.id] if conversation.id in ctx.links else read.get(conversation.id, [])
        channel = _channel_by_id(ctx, conversation.channel_id)  # the process's cached copy: no lazy load
        contact = held.get(identity_key(Contact, conversation.contact_id))  # loaded by the batch or just above
        realtime.publish(session, "conversation.created" if created else "conversation.updated",
                         conversation_model_json(conversation, links, refs, now, channel=channel, contact=contact),
                         realtime.conversation_rooms(conversation.brand_id))
    del related


@functools.cache
def _conversation_columns() -> dict[str, str]:
    """Conversation's column attributes: attribute key -> column name."""
    return {attr.key: attr.columns[0].name for attr in sa_inspect(Conversation).column_attrs}


def _write_conversations(session: Session, conversations: list[Conversation]) -> None:
    """The batch's changes to its conversations (waiting clock, last message, language, team) in ONE UPDATE
    (`db.update_rows`: every changed column of every changed conversation, and `updated_at`), then marked written,
    so the flush that follows has nothing left to do for them. The unit of work wrote them as an executemany in
    psycopg's pipeline mode, one statement per group of conversations with the same changed columns, after
    sorting its dependencies: the largest part of the drain's flush (bench figure 4).

    Only conversations whose row lock this transaction holds (`ctx.locked`: read fresh under the lock, and nobody
    else writes them until the commit), so writing a column with the value it already had (a column another
    conversation of the batch changed) is the same as leaving it; only columns: a conversation whose
    relationships changed too (labels, SLA clocks) is left to the flush."""
    columns = _conversation_columns()
    changed: set[str] = set()
    dirty = []
    for conversation in conversations:
        state = sa_inspect(conversation)
        keys = state.committed_state.keys()
        if state.persistent and keys and keys <= columns.keys():
            dirty.append(state)
            changed.update(keys)
    if not dirty:
        return
    now = utcnow()
    names = ("id", *sorted(changed - {"id", "updated_at"}), "updated_at")
    dirty = [state for state in dirty if all(key in state.dict for key in names[:-1])]  # else: the flush
    rows = []
    for state in dirty:
        values = state.dict
        values["updated_at"] = now  # the column's onupdate, as the flush would have set it
        rows.append({columns[key]: values[key] for key in names})
    with session.no_autoflush:  # (SQLite's executemany goes through the session: no flush of them first)
        update_rows(session, Conversation, rows)
    for state in dirty:
        state._commit_all(state.dict, session.identity_map)  # noqa: SLF001 - what the flush does once it wrote a row


def _related_for_dump(session: Session, conversations: list[Conversation]) -> list[Any]:
    """Loads the brands, contacts, assignees and posts the conversations' JSON shows and the session does not
    hold yet, one query per kind, so the dumps find them in the identity map (returned: the caller keeps them
    referenced while dumping)."""
    wanted = ((Brand, {c.brand_id for c in conversations}), (Contact, {c.contact_id for c in conversations}),
              (Agent, {c.assignee_id for c in conversations if c.assignee_id is not None}),
              (Post, {c.post_id for c in conversations if c.post_id is not None}))
    related: list[Any] = []
    held = session.identity_map
    for model, ids in wanted:
        ids = {id_ for id_ in ids if identity_key(model, id_) not in held}
        if ids:
            related += session.execute(select(model).where(model.id.in_(ids))).scalars()
    return related
