"""Sending one outbound message to its platform: at most once, retried with backoff when the platform says
it did not take it, and its real status shown to the agent.

The claim is a conditional UPDATE queued -> sending: of two jobs for the same message (a retry, a duplicate
enqueue, two workers) only one sends. It records the claim's time (sending_since). A crash after the claim
leaves the message "sending"; once the claim is STUCK_SENDING_AFTER old the reconciler marks it "unknown"
(never resent automatically: the platform may have it), unless the platform's echo proves it was sent.

A conversation's replies leave in the order they were written: the claim passes over a message while an
earlier reply of its conversation is still queued (a retry waiting for its backoff included) or sending, and
each outcome other than a retry hands the conversation's next queued reply to a send job. Sends of different
conversations run at once (a worker's pool of SEND_CONCURRENCY threads, `inbox.jobs.JobPool`).

While the platform call runs, a drain (in any process) may apply the echo of this very send and its receipts.
Recording the outcome therefore takes the conversation's row lock first, as those drains do, then reads the
message fresh (locked too): the status only moves forward (sending -> sent -> delivered -> read), a
receipt kept on the conversation meanwhile applies at once, and a send the platform already proved (sent,
delivered, read) is never put back in the queue or marked failed.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from adapters import api as api_adapter
from adapters import meta
from adapters.base import PlatformError, SendResult
from adapters.http import PlatformClient, backoff_seconds, new_session
from inbox import realtime
from inbox.api.schemas import PageRefs, conversation_model_json, message_item_json
from inbox.db import db, utcnow
from inbox.models import Channel, Contact, ContactIdentity, Conversation, Message
from inbox.services import handoff, sla
from inbox.services.channels import credentials
from inbox.services.ingest import note_public_reply, receipts_for
from inbox.services.locking import locked_message
from inbox.settings import get_settings

log = logging.getLogger(__name__)


_graph = threading.local()
# A kept-alive connection idle longer than this is not reused: the server may close an idle connection at any
# moment, and a send caught by that close could not be told apart from one the platform took ("unknown").
GRAPH_KEEPALIVE_IDLE_S = 5.0


def meta_client(base_url: str | None = None) -> PlatformClient:
    """A Graph API client over this thread's HTTP session: the sends of a busy worker and a batch of name lookups
    reuse its kept-alive connections instead of a new TCP connection and TLS handshake per call. Connections
    are dropped when the thread's previous client was made more than GRAPH_KEEPALIVE_IDLE_S ago (requests'
    sessions are not shared between threads). `base_url`: META_GRAPH_BASE_URL, read from the app when not given
    (a thread without the app's context passes it)."""
    now = time.monotonic()
    session = getattr(_graph, "session", None)
    if session is None:
        session = _graph.session = new_session()
    elif now - _graph.used_at > GRAPH_KEEPALIVE_IDLE_S:
        session.close()  # its connection pools are emptied; the next call connects afresh
    _graph.used_at = now
    return PlatformClient(base_url or get_settings().meta_graph_base_url, timeout=15, session=session)


def meta_credentials(channel: Channel) -> meta.MetaCredentials:
    creds = credentials(channel)
    return meta.MetaCredentials(page_id=channel.external_id or "", access_token=creds["access_token"],
                                app_secret=creds["app_secret"])


# a reply in these states holds back the later replies of its conversation
IN_FLIGHT = ("queued", "sending")


def _earlier_in_flight() -> Any:
    """An earlier reply of the same conversation still on its way (the claim's order condition)."""
    earlier = aliased(Message)
    return exists().where(earlier.conversation_id == Message.conversation_id, earlier.id < Message.id,
                          earlier.delivery_status.in_(IN_FLIGHT))


def deliver_message(message_id: int) -> str | None:
    """Send message `message_id` if it is queued, due and the next of its conversation; returns its resulting
    status (None if not ours)."""
    now = utcnow()
    with db.transaction() as session:
        claimed = session.execute(
            update(Message)
            .where(Message.id == message_id, Message.delivery_status == "queued",
                   (Message.next_attempt_at.is_(None)) | (Message.next_attempt_at <= now), ~_earlier_in_flight())
            .values(delivery_status="sending", delivery_attempts=Message.delivery_attempts + 1, sending_since=now)
        ).rowcount
        if claimed != 1:
            _retry_when_due(session, message_id, now)
            return None
        row = session.execute(_claimed_query(), {"message_id": message_id}).one()
        message, channel = row.Message, row.Channel
        request = _build_request(session, message, row, channel)
        conversation_id = message.conversation_id
    try:
        result = _send(request)
    except PlatformError as exc:
        return _record_failure(message_id, conversation_id, exc)
    except Exception as exc:  # a bug or an unexpected answer: the platform may or may not have it
        log.exception("send of message %s failed unexpectedly", message_id)
        return _record_outcome(message_id, conversation_id, status="unknown",
                               error=f"unexpected error while sending ({type(exc).__name__}); check the platform "
                                     "before sending again")
    return _record_success(message_id, conversation_id, result)


@functools.cache
def _claimed_query() -> Any:
    """The claimed message, its conversation's kind, thread key and contact, and its channel, in one statement: a
    loaded Conversation would bring its labels and SLA clocks (two more statements), which a send does not use."""
    return (select(Message, Conversation.kind, Conversation.thread_key, Conversation.contact_id, Channel)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Message.id == bindparam("message_id")))


def _build_request(session: Any, message: Message, conversation: Any, channel: Channel) -> dict[str, Any]:
    """Everything the platform call needs, read inside the claim transaction (no DB access while sending).
    `conversation`: its kind, thread_key and contact_id."""
    request: dict[str, Any] = {"channel_kind": channel.kind, "reply_type": message.reply_type,
                               "conversation_kind": conversation.kind, "text": message.text or "",
                               "key": message.idempotency_key, "tag": (message.extra or {}).get("tag"),
                               "target": message.reply_to_external_id}
    if channel.kind == "facebook_page":
        request["creds"] = meta_credentials(channel)
        request["psid"] = conversation.thread_key.split(":", 1)[1] if conversation.kind == "dm" else None
    elif channel.kind == "api":
        creds = credentials(channel)
        contact = session.get(Contact, conversation.contact_id)
        identity = session.execute(select(ContactIdentity).where(
            ContactIdentity.contact_id == conversation.contact_id,
            ContactIdentity.channel_kind == f"api:{channel.id}")).scalars().first()
        request.update(url=(channel.config or {}).get("webhook_url"), secret=creds["webhook_secret"], payload={
            "id": message.idempotency_key, "message_id": message.id, "type": "message.created",
            "conversation_id": conversation.thread_key.split(":", 1)[1],
            "contact": {"id": identity.external_id if identity else None, "name": contact.name if contact else None},
            "text": message.text, "author": {"name": message.author_name},
            "created_at": message.platform_time.isoformat()})
    return request


def _send(request: dict[str, Any]) -> SendResult:
    if request["channel_kind"] == "facebook_page":
        client, creds = meta_client(), request["creds"]
        if request["reply_type"] == "private_reply":
            return meta.send_private_reply(client, creds, request["target"], request["text"])
        if request["conversation_kind"] == "comment":
            return meta.reply_to_comment(client, creds, request["target"], request["text"])
        return meta.send_message(client, creds, request["psid"], request["text"], tag=request["tag"],
                                 metadata=request["key"])
    if request["channel_kind"] == "api":
        if not request["url"]:
            raise PlatformError("this API channel has no webhook_url to deliver replies to", retryable=False)
        return api_adapter.send(None, request["url"], request["secret"], request["payload"])
    raise PlatformError(f"sending is not supported for {request['channel_kind']}", retryable=False)


def _retry_when_due(session: Session, message_id: int, now: datetime) -> None:
    """A send job that ran before its message's retry time (a scheduler on another host whose clock runs ahead)
    schedules itself again for that time, instead of leaving the retry to the reconciler's next pass."""
    row = session.execute(select(Message.delivery_status, Message.next_attempt_at)
                          .where(Message.id == message_id)).first()
    if row is None or row.delivery_status != "queued" or row.next_attempt_at is None or row.next_attempt_at <= now:
        return
    from inbox.jobs import SEND, enqueue_after_commit
    from inbox.jobs.tasks import send_message
    enqueue_after_commit(session, send_message, message_id, queue=SEND,
                         delay=(row.next_attempt_at - now).total_seconds())


# statuses the platform itself reported (our send's answer, its echo, a receipt): an outcome never lowers them
PROVEN_SENT = ("sent", "delivered", "read")


def _record_failure(message_id: int, conversation_id: int, exc: PlatformError) -> str:
    max_attempts = get_settings().send_max_attempts
    with db.transaction() as session:
        message, _conversation = locked_message(session, message_id, conversation_id)
        if message.delivery_status in PROVEN_SENT:  # its echo arrived meanwhile: the platform has it
            return message.delivery_status
        if getattr(exc, "maybe_delivered", False):  # a timeout after sending, or a 2xx without an id
            status, error, delay = "unknown", (f"no answer from the platform ({exc}); it may have received the "
                                               "message: check before sending again"), None
        elif exc.retryable and message.delivery_attempts < max_attempts:
            delay = backoff_seconds(message.delivery_attempts, exc.retry_after)
            status, error = "queued", f"retrying after: {exc}"
            message.next_attempt_at = utcnow() + timedelta(seconds=delay)
        else:
            status, error, delay = "failed", str(exc), None
        apply_outcome(session, message, status, error)
    if delay is not None:
        from inbox.jobs import SEND, enqueue
        from inbox.jobs.tasks import send_message
        enqueue(send_message, message_id, queue=SEND, delay=delay)
    return status


def _record_outcome(message_id: int, conversation_id: int, *, status: str, error: str | None) -> str:
    with db.transaction() as session:
        message, _conversation = locked_message(session, message_id, conversation_id)
        if message.delivery_status in PROVEN_SENT:
            return message.delivery_status
        apply_outcome(session, message, status, error)
    return status


def apply_outcome(session: Any, message: Message, status: str, error: str | None) -> None:
    """Sets the send's status and error and publishes message.updated. The caller holds the locks
    (`locked_message`) and has checked that the platform has not proved the send already (PROVEN_SENT)."""
    message.delivery_status = status
    message.delivery_error = error
    conversation = session.get(Conversation, message.conversation_id)
    realtime.publish(session, "message.updated", message_item_json(message), realtime.message_rooms(conversation.id))
    if status not in IN_FLIGHT:
        release_next(session, message)


def release_next(session: Any, message: Message) -> None:
    """`message` is no longer on its way: once the session commits, a send job for the next queued reply of its
    conversation, which the claim held back behind it (one with a retry time has its own delayed job)."""
    from inbox.jobs import SEND, enqueue_after_commit
    from inbox.jobs.tasks import send_message

    with session.no_autoflush:  # the other replies' rows are read; this one's changes can wait for the commit
        row = session.execute(select(Message.id, Message.next_attempt_at).where(
            Message.conversation_id == message.conversation_id, Message.delivery_status == "queued",
            Message.id > message.id).order_by(Message.id).limit(1)).first()
    if row is not None and (row.next_attempt_at is None or row.next_attempt_at <= utcnow()):
        enqueue_after_commit(session, send_message, row.id, queue=SEND)


def _record_success(message_id: int, conversation_id: int, result: SendResult) -> str:
    """Records the platform's acceptance: external id, sent_at, status `sent` unless the echo and receipts
    applied meanwhile took it further, then the receipts kept on the conversation (a read receipt applied while
    the message was still `sending`). Publishes message.updated and conversation.updated. Returns the status."""
    with db.transaction() as session:
        message, conversation = locked_message(session, message_id, conversation_id, with_refs=True)
        _take_external_id(session, message, result.external_id)
        if message.delivery_status not in PROVEN_SENT:  # sending, or unknown / queued / failed set meanwhile
            message.delivery_status = "sent"
            message.delivery_error = None
        message.sent_at = message.sent_at or utcnow()
        receipts = receipts_for(conversation, message.platform_time, message.delivery_status, message.delivered_at)
        for key, value in receipts.items():
            setattr(message, key, value)
        note_public_reply(conversation, message.sent_at, (message.text or "")[:280] or None)
        sla.refresh_conversation(session, conversation, f"message:{message.id}")
        session.flush()
        realtime.publish(session, "message.updated", message_item_json(message),
                         realtime.message_rooms(conversation.id))
        realtime.publish(session, "conversation.updated",
                         conversation_model_json(conversation, handoff.linked_ids(conversation), PageRefs(), utcnow()),
                         realtime.conversation_rooms(conversation.brand_id))
        release_next(session, message)
        return message.delivery_status


def _take_external_id(session: Any, message: Message, external_id: str) -> None:
    """Store the platform's id. If the platform's echo of this very send was stored first as a native
    reply (comments carry no metadata to match it), that copy is merged into ours."""
    if not external_id or message.external_id == external_id:
        return
    try:
        with session.begin_nested():
            message.external_id = external_id
            session.flush()
    except IntegrityError:
        duplicate = session.execute(select(Message).where(Message.channel_id == message.channel_id,
                                                          Message.external_id == external_id)).scalar_one()
        conversation = session.get(Conversation, duplicate.conversation_id)
        session.delete(duplicate)
        session.flush()
        message.external_id = external_id
        if conversation is not None:
            realtime.publish(session, "message.deleted", {"id": duplicate.id, "conversation_id": conversation.id},
                             realtime.message_rooms(conversation.id))
