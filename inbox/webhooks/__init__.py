"""Inbound webhooks: verify over the raw bytes, store durably, answer fast, process in a job.

GET  /webhooks/meta                 Meta subscription handshake (hub.mode / hub.verify_token / hub.challenge)
POST /webhooks/meta                 one callback per Meta app; entries routed by entry.id when processed
POST /webhooks/api/<channel_id>     the API channel (X-Relais-Timestamp + X-Relais-Signature)
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ServiceUnavailable

from adapters import api as api_adapter
from adapters import meta as meta_adapter
from adapters.base import PayloadError, SignatureError
from inbox.db import db
from inbox.jobs import INGEST, nudge
from inbox.services.channels import credentials, meta_app_secrets, meta_verify_token_matches
from inbox.services.webhook_store import StoreUnavailable, store_webhook_event
from inbox.settings import get_settings

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Hub-Signature-256", "X-Hub-Signature", "X-Relais-Timestamp",
                "X-Relais-Signature", "X-Forwarded-For", "Content-Length")
MAX_REJECTED_BODY = 64 * 1024


def init_app(app: Flask) -> None:
    from inbox.extensions import limiter

    # No rate limit applies to webhooks (the platforms must always get through). A request filter is the
    # limiter's earliest exit: it skips resolving (empty) limits on the hottest route.
    if _is_webhook_request not in getattr(limiter, "_request_filters", ()):
        limiter.request_filter(_is_webhook_request)
    app.register_blueprint(bp)
    app.wsgi_app = fast_meta_post(app, app.wsgi_app)  # type: ignore[method-assign]


def _is_webhook_request() -> bool:
    return request.blueprint == bp.name


def app_secret_fingerprint(secret: str) -> str:
    return "app:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _headers() -> dict[str, str]:
    headers = request.headers  # one proxy lookup, not two per kept header
    return {name: value for name in KEPT_HEADERS if (value := headers.get(name)) is not None}


def _answer(status: int, code: str, message: str, **extra: object) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "fields": {}}, **extra}) if status >= 400 \
        else jsonify({"status": code, **extra})
    response.status_code = status
    return response


def _store(**kwargs: object) -> int | Response:
    try:
        return store_webhook_event(remote_addr=request.remote_addr, headers=_headers(), **kwargs)  # type: ignore[arg-type]
    except StoreUnavailable:
        return _answer(503, "unavailable", "could not store the event; retry later")


def _store_pending(**kwargs: object) -> int | Response:
    """Stores an event for the drain and nudges the drain once the event is durable. The group committer
    runs the nudge once per group commit, before answering: a burst of webhooks costs one nudge per commit
    instead of a Redis round trip on every request's path."""
    return _store(status="pending", on_durable=_nudge_drain, **kwargs)


def _nudge_drain() -> None:
    """Runs in the group committer once the events are durable; with Redis the enqueue itself happens on the
    jobs' nudger thread, so a slow Redis never holds up the commits (`inbox.jobs.nudge`)."""
    from inbox.jobs.tasks import drain_webhook_events
    try:
        nudge(drain_webhook_events, queue=INGEST)
    except Exception:  # the event is stored: the reconciler will process it even if Redis is down
        log.exception("could not enqueue the drain; the reconciler will pick the event up")


def _received(status: int, code: str, event_id: int) -> Response:
    """The success answer, built without the JSON provider (`jsonify`): the same compact, key-sorted body."""
    body = json.dumps({"event_id": event_id, "status": code}, separators=(",", ":")) + "\n"
    return Response(body, status, mimetype="application/json")


@bp.get("/meta")
def meta_handshake():
    token = request.args.get("hub.verify_token", "")
    if request.args.get("hub.mode") == "subscribe" and token and request.args.get("hub.challenge") is not None \
            and meta_verify_token_matches(db.session, token):
        return Response(request.args["hub.challenge"], 200, mimetype="text/plain")
    return _answer(403, "forbidden", "verify token does not match any connected page")


@bp.post("/meta")
def meta_event():
    """The route as Flask sees it; in a served app the POST is answered by `fast_meta_post` before Flask."""
    status, body = meta_post(request.get_data(cache=False), _headers(), request.remote_addr)
    return Response(body, status, mimetype="application/json")


def meta_post(raw: bytes, headers: dict[str, str], remote_addr: str | None) -> tuple[int, bytes]:
    """A Meta webhook POST: verified over the raw bytes, stored durably (rejected and malformed ones too, for
    inspection), answered with (status, JSON body). Needs an app context, not a request context."""
    header = headers.get("X-Hub-Signature-256")

    def store(**kwargs: object) -> int | None:
        try:
            return store_webhook_event(source="meta", remote_addr=remote_addr, headers=headers, **kwargs)  # type: ignore[arg-type]
        except StoreUnavailable:
            return None

    try:
        try:
            secret = meta_adapter.verify_signature(raw, header, _meta_secrets(refresh=False))
        except SignatureError as first:
            try:  # a page connected seconds ago in another process: look again before refusing
                secret = meta_adapter.verify_signature(raw, header, _meta_secrets(refresh=True))
            except SignatureError:
                stored = store(body=raw[:MAX_REJECTED_BODY], verification="invalid", detail=first.reason,
                               status="rejected", error=first.reason)
                if stored is None:
                    return _error_body(503, "unavailable", "could not store the event; retry later")
                log.warning("meta webhook rejected (%s), kept as event %s", first.reason, stored)
                return _error_body(401 if header is None else 403, "invalid_signature", first.reason,
                                   event_id=stored)
    except ServiceUnavailable as exc:
        return _error_body(503, "service_unavailable", str(exc.description))
    error = _meta_body_error(raw)
    if error:
        stored = store(body=raw, verification="valid", detail=app_secret_fingerprint(secret), status="invalid",
                       error=error)
        if stored is None:
            return _error_body(503, "unavailable", "could not store the event; retry later")
        return _error_body(400, "malformed_body", error, event_id=stored)
    stored = store(body=raw, verification="valid", detail=app_secret_fingerprint(secret), status="pending",
                   on_durable=_nudge_drain)
    if stored is None:
        return _error_body(503, "unavailable", "could not store the event; retry later")
    return 200, _json({"event_id": stored, "status": "EVENT_RECEIVED"})


def _json(body: dict[str, object]) -> bytes:
    """The same compact, key-sorted JSON as the app's `jsonify`."""
    return (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()


def _error_body(status: int, code: str, message: str, **extra: object) -> tuple[int, bytes]:
    return status, _json({"error": {"code": code, "message": message, "fields": {}}, **extra})


# ---------------------------------------------------------------- the served path, before Flask
_STATUS_LINES = {200: "200 OK", 400: "400 BAD REQUEST", 401: "401 UNAUTHORIZED", 403: "403 FORBIDDEN",
                 413: "413 REQUEST ENTITY TOO LARGE", 503: "503 SERVICE UNAVAILABLE"}
_ENVIRON_HEADERS = {name: "CONTENT_TYPE" if name == "Content-Type" else "CONTENT_LENGTH" if name == "Content-Length"
                    else "HTTP_" + name.upper().replace("-", "_") for name in KEPT_HEADERS}


def fast_meta_post(app: Flask, wsgi_app: Any) -> Any:
    """WSGI: answers POST /webhooks/meta with `meta_post` under an app context only, and passes everything
    else to `wsgi_app`.

    Why: this is the busiest route and the platforms time out on slow answers. Flask's request machinery
    (request context, session cookie, rate-limiter filters, URL matching, after-request hooks) was about a third
    of the web process's CPU per webhook (bench figure 1's profile), and a webhook uses none of it: it is signed,
    cookie-less and never rate-limited. Same checks, same storage, same answers as the Flask route."""
    limit = app.config.get("MAX_CONTENT_LENGTH") or 8 * 1024 * 1024

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/webhooks/meta" or environ.get("REQUEST_METHOD") != "POST":
            return wsgi_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        stream = environ["wsgi.input"]
        headers = {name: value for name, key in _ENVIRON_HEADERS.items() if (value := environ.get(key)) is not None}
        with app.app_context():
            try:
                if length > limit:  # not read: its first bytes are kept for inspection, as a rejected event
                    status, body = _too_large(stream.read(MAX_REJECTED_BODY), headers, environ, limit)
                else:
                    raw = stream.read(length) if length >= 0 else stream.read(limit + 1)
                    if len(raw) > limit:
                        status, body = _too_large(raw[:MAX_REJECTED_BODY], headers, environ, limit)
                    else:
                        status, body = meta_post(raw, headers, environ.get("REMOTE_ADDR"))
            except Exception:  # the one JSON error shape, never a bare 500
                log.exception("unhandled error on POST /webhooks/meta")
                status, body = _error_body(500, "internal_error", "unexpected server error; it has been logged")
        start_response(_STATUS_LINES.get(status, f"{status} ERROR"),
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return serve


def _too_large(head: bytes, headers: dict[str, str], environ: dict[str, Any], limit: int) -> tuple[int, bytes]:
    reason = f"the body is over {limit} bytes"
    try:
        stored = store_webhook_event(source="meta", remote_addr=environ.get("REMOTE_ADDR"), headers=headers,
                                     body=head, verification="invalid", detail=reason, status="rejected",
                                     error=reason)
    except StoreUnavailable:
        return _error_body(503, "unavailable", "could not store the event; retry later")
    return _error_body(413, "request_entity_too_large", reason, event_id=stored)


def _meta_secrets(*, refresh: bool) -> list[str]:
    # the scoped session itself, not a session: with the secrets cached (the usual case) none is created
    try:
        return list(meta_app_secrets(db.session, refresh=refresh))
    except SQLAlchemyError as exc:  # the database is down: 503, so Meta delivers again later
        raise ServiceUnavailable("could not read the connected pages; retry later") from exc
    finally:
        if db.session.registry.has():
            db.session.close()  # release the connection (and SQLite's lock): storing goes through the committer


def _meta_body_error(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "body is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        return "body has no entry list"
    return None


@bp.post("/api/<int:channel_id>")
def api_event(channel_id: int):
    from inbox.models import Channel

    raw = request.get_data(cache=False)
    channel = db.session.get(Channel, channel_id)
    if channel is None or channel.kind != "api" or channel.status == "disabled":
        db.session.close()
        stored = _store(source="api", body=raw[:MAX_REJECTED_BODY], verification="invalid",
                        detail="unknown channel", status="rejected", error=f"no active API channel {channel_id}")
        return stored if isinstance(stored, Response) else _answer(404, "not_found", "no such API channel")
    secret = credentials(channel)["webhook_secret"]
    db.session.close()
    try:
        api_adapter.verify(raw, request.headers, secret, tolerance=get_settings().api_webhook_tolerance_seconds)
    except SignatureError as exc:
        stored = _store(source="api", channel_id=channel_id, body=raw[:MAX_REJECTED_BODY], verification="invalid",
                        detail=exc.reason, status="rejected", error=exc.reason)
        if isinstance(stored, Response):
            return stored
        status = 401 if "missing" in exc.reason else 403
        return _answer(status, "invalid_signature", exc.reason, event_id=stored)
    try:
        api_adapter.parse(raw, str(channel_id))
    except PayloadError as exc:
        stored = _store(source="api", channel_id=channel_id, body=raw, verification="valid", status="invalid",
                        error=str(exc))
        if isinstance(stored, Response):
            return stored
        response = _answer(400, "malformed_body", str(exc), event_id=stored)
        fields = getattr(exc, "fields", None)
        if fields:
            body = response.get_json()
            body["error"]["fields"] = fields
            response.set_data(json.dumps(body))
        return response
    stored = _store_pending(source="api", channel_id=channel_id, body=raw, verification="valid")
    if isinstance(stored, Response):
        return stored
    return _received(202, "accepted", stored)
