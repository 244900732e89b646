"""A channel change is seen by this process's webhooks and drains as soon as it commits, and not at all when it
rolls back.

Each process keeps channels' decrypted credentials (30 s) and the drain's copies of channel rows (5 s). An admin
change drops them at once, and again when its transaction ends: until the commit, a webhook or drain of this
process reads the committed (old) row and caches it again; after a rollback, what the request cached of its own
change must go. Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql (only there can a reader see
the old row while the admin's transaction is open: SQLite has one writer at a time).
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import pytest
from sqlalchemy import select, update

from adapters.api import sign
from inbox.api.schemas import ChannelSchema
from inbox.background import BACKGROUND_LOCK
from inbox.crypto import decrypt_json, encrypt_json
from inbox.db import db
from inbox.demo.fake_meta import messaging_echo, messenger_message_payload, page_entry, page_payload
from inbox.models import Agent, Channel, Message
from inbox.services import admin, ingest
from inbox.services.channels import credentials
from tests.factories import ACCESS_TOKEN, APP_SECRET, PAGE_ID
from tests.helpers import store_verified


def _signed_api(secret: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps({"id": f"ext-{time.monotonic_ns()}", "conversation_id": "order-1", "contact": {"id": "cust-1"},
                      "text": "Bonjour"}).encode()
    stamp = str(int(time.time()))
    return raw, {"X-Relais-Timestamp": stamp, "X-Relais-Signature": sign(secret, stamp, raw),
                 "Content-Type": "application/json"}


def _api_webhook(app: Any, world: Any, secret: str) -> int:
    raw, headers = _signed_api(secret)
    return app.test_client().post(f"/webhooks/api/{world.api_channel_id}", data=raw, headers=headers).status_code


def _admin(world: Any) -> Agent:
    return db.session.execute(select(Agent).where(Agent.email == world.admin)).scalar_one()


def _meanwhile(action: Callable[[], Any]) -> Any:
    """Runs `action` on another thread of this process (a webhook, a drain) and returns what it returned."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(action()))
    thread.start()
    thread.join(15)
    assert results, "the other thread did not finish"
    return results[0]


def _requires_postgresql() -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing reads the channel while the change is uncommitted")


def test_a_rotated_webhook_secret_works_as_soon_as_it_commits(app: Any, world: Any) -> None:
    """A webhook signed with the old secret arrives between the rotation and its commit (it is still valid
    then). Once committed, the new secret must work and the old one not, at once."""
    _requires_postgresql()
    with app.app_context():
        _channel, secret = admin.rotate_webhook_secret(db.session, _admin(world), world.api_channel_id)
        assert _meanwhile(lambda: _api_webhook(app, world, world.api_secret)) == 202
        db.session.commit()
        db.session.remove()
    assert _api_webhook(app, world, secret) == 202
    assert _api_webhook(app, world, world.api_secret) == 403


def test_a_renamed_page_is_seen_by_the_next_drain(app: Any, world: Any) -> None:
    """A drain of this process runs while the rename is uncommitted (it caches the page's row as committed
    then); the next drain after the commit uses the new name (a native reply's author is the page's name)."""
    _requires_postgresql()

    def drain() -> int:
        with app.app_context():
            try:
                return ingest.drain_webhook_events(linger=0)
            finally:
                db.session.remove()

    with BACKGROUND_LOCK:
        store_verified(messenger_message_payload(PAGE_ID, "psid-rename", "Bonjour"))
        with app.app_context():
            admin.update_channel(db.session, _admin(world), world.page_channel_id, name="Maison Lune (SAV)")
            assert _meanwhile(drain) >= 1
            db.session.commit()
            db.session.remove()
        store_verified(page_payload(page_entry(PAGE_ID, messaging=[
            messaging_echo(PAGE_ID, "psid-rename", "Réponse depuis la page", mid="m_native")])))
        assert drain() == 1
    with app.app_context():
        native = db.session.execute(select(Message).where(Message.external_id == "m_native")).scalar_one()
        assert native.author_name == "Maison Lune (SAV)"
        db.session.remove()


def test_a_rolled_back_rotation_leaves_nothing_cached(app: Any, world: Any) -> None:
    """The route answers with the channel (its masked secrets come from the credential cache) before
    committing; when the transaction is rolled back instead, the stored secret must keep working."""
    with app.app_context():
        channel, _secret = admin.rotate_webhook_secret(db.session, _admin(world), world.api_channel_id)
        ChannelSchema().dump(channel)
        db.session.rollback()
        db.session.remove()
    assert _api_webhook(app, world, world.api_secret) == 202


def test_rotating_one_secret_keeps_the_others_as_stored(app: Any, world: Any) -> None:
    """This process cached the page's credentials; another process then rotated its access token. Rotating
    the verify token here must not write the cached (old) access token back."""
    with app.app_context():
        credentials(db.session.get(Channel, world.page_channel_id))  # cached here
        db.session.execute(update(Channel).where(Channel.id == world.page_channel_id).values(
            credentials_encrypted=encrypt_json({"access_token": ACCESS_TOKEN + "-rotated", "app_secret": APP_SECRET,
                                                "verify_token": "old-verify"})))
        db.session.commit()
        db.session.remove()
        admin.update_channel(db.session, _admin(world), world.page_channel_id, config={"verify_token": "new-verify"})
        db.session.commit()
        db.session.remove()
        stored = decrypt_json(db.session.get(Channel, world.page_channel_id).credentials_encrypted)
        db.session.remove()
    assert stored == {"access_token": ACCESS_TOKEN + "-rotated", "app_secret": APP_SECRET,
                      "verify_token": "new-verify"}
