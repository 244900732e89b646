"""The API channel: signed inbound messages, signed outbound replies with retries."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from adapters.api import sign
from inbox.db import db
from inbox.models import Message
from tests.helpers import bearer, delivery_status, wait_until


class Receiver:
    """A system receiving our replies: records signed POSTs, can answer 503 first."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.fail_first = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append({"headers": dict(self.headers), "body": body})
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"id": f"their-{len(receiver.calls)}"}).encode())

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/relais"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def _signed(secret: str, payload: dict, ts: int | None = None) -> tuple[bytes, dict]:
    raw = json.dumps(payload, ensure_ascii=False).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    return raw, {"X-Relais-Timestamp": stamp, "X-Relais-Signature": sign(secret, stamp, raw),
                 "Content-Type": "application/json"}


def test_api_channel_in_and_out(app, client, world, token_for, receiver, jobs_done):
    with app.app_context():
        from inbox.models import Channel
        channel = db.session.get(Channel, world.api_channel_id)
        channel.config = {"webhook_url": receiver.url}
        db.session.commit()
    payload = {"id": "ext-1", "conversation_id": "order-991", "contact": {"id": "cust-5", "name": "Ana Souza"},
               "text": "مرحبا — my parcel? 📦"}
    raw, headers = _signed(world.api_secret, payload)
    response = client.post(f"/webhooks/api/{world.api_channel_id}", data=raw, headers=headers)
    assert response.status_code == 202, response.get_json()
    assert client.post(f"/webhooks/api/{world.api_channel_id}", data=raw, headers=headers).status_code == 202
    jobs_done()
    token = token_for(world.agent)
    items = client.get("/api/v1/conversations", query_string={"channel_kind": "api"},
                       headers=bearer(token)).get_json()["items"]
    assert len(items) == 1 and items[0]["contact"]["name"] == "Ana Souza"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 1

    receiver.fail_first = 1
    reply = client.post(f"/api/v1/conversations/{items[0]['id']}/messages", json={"text": "Demain !"},
                        headers=bearer(token)).get_json()
    wait_until(lambda: delivery_status(app, reply["id"]) == "sent", timeout=20)
    assert len(receiver.calls) == 2  # one 503, then accepted: delivered once
    call = receiver.calls[-1]
    assert call["headers"]["X-Relais-Signature"] == sign(world.api_secret, call["headers"]["X-Relais-Timestamp"],
                                                         call["body"])
    body = json.loads(call["body"])
    assert body["text"] == "Demain !" and body["conversation_id"] == "order-991" and body["contact"]["id"] == "cust-5"


@pytest.mark.parametrize("case", ["stale", "bad", "missing", "unknown_channel"])
def test_api_channel_refusals_are_kept(app, client, world, case):
    payload = {"id": "x", "conversation_id": "c", "contact": {"id": "u"}, "text": "hi"}
    ts = int(time.time()) - 3600 if case == "stale" else None
    raw, headers = _signed(world.api_secret if case != "bad" else "wrong-secret", payload, ts)
    if case == "missing":
        headers = {"Content-Type": "application/json"}
    channel_id = world.api_channel_id if case != "unknown_channel" else 424242
    response = client.post(f"/webhooks/api/{channel_id}", data=raw, headers=headers)
    assert response.status_code in ((401, 403) if case != "unknown_channel" else (404,))
    assert response.get_json()["error"]["message"]
    from inbox.models import WebhookEvent
    with app.app_context():
        assert db.session.execute(select(WebhookEvent.status)).scalars().all() == ["rejected"]
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0


def test_api_channel_field_errors(client, world):
    raw, headers = _signed(world.api_secret, {"conversation_id": "c", "contact": {"id": "u"}, "text": "no id"})
    response = client.post(f"/webhooks/api/{world.api_channel_id}", data=raw, headers=headers)
    assert response.status_code == 400
    assert "id" in json.dumps(response.get_json()["error"])


def test_openapi_document_lists_the_contract(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    for path in ("/api/v1/conversations", "/api/v1/conversations/{conversation_id}/messages",
                 "/api/v1/conversations/{conversation_id}/claim"):
        assert path in document["paths"], path
    assert "patch" in document["paths"]["/api/v1/conversations/{conversation_id}"]
