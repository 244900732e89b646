"""POST /webhooks/meta is answered by a WSGI layer before Flask (inbox.webhooks.fast_meta_post): the same
checks, storage and answers as the Flask route, without Flask's request machinery. Runs on SQLite, and on
PostgreSQL with RELAIS_TEST_DB=postgresql."""
from __future__ import annotations

import io
import json
from typing import Any

from sqlalchemy import select

from inbox.db import db
from inbox.demo.fake_meta import messenger_message_payload
from inbox.models import WebhookEvent
from tests.factories import PAGE_ID
from tests.helpers import signed_meta


def _cases() -> list[tuple[str, bytes, dict[str, str]]]:
    raw, headers = signed_meta(messenger_message_payload(PAGE_ID, "psid-fast", "bonjour", mid="m_fast"))
    malformed, malformed_headers = signed_meta(b'{"object": "page"}')
    not_json, not_json_headers = signed_meta(b"{not json")
    return [("valid", raw, headers),
            ("forged", raw, {"X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"}),
            ("unsigned", raw, {"Content-Type": "application/json"}),
            ("no entry list", malformed, malformed_headers),
            ("not JSON", not_json, not_json_headers)]


def _via_flask(app: Any, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The same request through the Flask route itself (what the fast path stands in for)."""
    with app.test_request_context("/webhooks/meta", method="POST", data=raw, headers=headers,
                                  environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        response = app.full_dispatch_request()
        return response.status_code, json.loads(response.get_data())


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<id>" if k == "event_id" else v) for k, v in body.items()}


def test_the_fast_path_answers_like_the_flask_route(app, client, world) -> None:
    for label, raw, headers in _cases():
        fast = client.post("/webhooks/meta", data=raw, headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"})
        status, body = _via_flask(app, raw, headers)
        assert fast.status_code == status, label
        assert fast.headers["Content-Type"] == "application/json", label
        assert _shape(fast.get_json()) == _shape(body), label
        assert isinstance(fast.get_json()["event_id"], int), label
    assert [client.post("/webhooks/meta", data=r, headers=h).status_code for _, r, h in _cases()] == \
        [200, 403, 401, 400, 400]
    with app.app_context():
        events = db.session.execute(select(WebhookEvent).order_by(WebhookEvent.id)).scalars().all()
        statuses = [e.status for e in events]
        # every request kept, twice over (fast path, Flask route) and once more: the valid ones pending/processed
        assert len(events) == 15
        assert statuses.count("rejected") == 6 and statuses.count("invalid") == 6
        first = events[0]
        assert first.remote_addr == "10.1.2.3" and first.headers["X-Hub-Signature-256"].startswith("sha256=")
        assert first.headers["Content-Type"] == "application/json" and "Content-Length" in first.headers


def test_an_oversized_body_is_413_and_its_first_bytes_kept(app, client, world) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    big = b'{"object":"page","entry":[' + b" " * limit + b"]}"
    response = client.post("/webhooks/meta", data=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "request_entity_too_large" and str(limit) in error["message"]
    with app.app_context():
        event = db.session.get(WebhookEvent, response.get_json()["event_id"])
        assert event.status == "rejected" and event.body == big[:64 * 1024]


def test_a_body_without_content_length_is_read_to_its_end(app, world) -> None:
    """Chunked uploads reach WSGI without CONTENT_LENGTH: the body is read to its end, up to the limit."""
    raw, headers = signed_meta(messenger_message_payload(PAGE_ID, "psid-chunked", "chunked", mid="m_chunked"))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/meta", "wsgi.input": io.BytesIO(raw),
               "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": headers["Content-Type"],
               "HTTP_X_HUB_SIGNATURE_256": headers["X-Hub-Signature-256"]}
    answered: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda status, _headers: answered.append(status)))
    assert answered == ["200 OK"], body
    assert json.loads(body)["status"] == "EVENT_RECEIVED"


def test_other_requests_still_go_through_flask(app, client, world) -> None:
    assert client.get("/webhooks/meta", query_string={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                      "hub.challenge": "1"}).status_code == 403
    assert client.put("/webhooks/meta", data=b"{}").status_code == 405
    assert client.post("/webhooks/meta/", data=b"{}").status_code in (308, 404, 405)
