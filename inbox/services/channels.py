"""Channels: creation with generated secrets, encrypted credentials, and the lookups webhooks need."""
from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.crypto import decrypt_json, encrypt_json, sha256_hex
from inbox.errors import Conflict, NotFound, ValidationFailed
from inbox.models import Brand, Channel
from inbox.settings import get_settings

SECRET_KEYS = ("access_token", "app_secret", "verify_token", "webhook_secret")


def create_channel(session: Session, *, brand_id: int, kind: str, name: str,
                   config: dict[str, Any]) -> tuple[Channel, dict[str, str]]:
    """Writes a Channel with its credentials encrypted. Returns it and the secrets to show ONCE to the admin
    (generated ones included: the API channel's webhook secret, a Meta verify token when none was given)."""
    if session.get(Brand, brand_id) is None:
        raise ValidationFailed("unknown brand", fields={"brand_id": ["no such brand"]})
    credentials: dict[str, str] = {}
    public: dict[str, Any] = {}
    external_id: str | None = None
    if kind == "facebook_page":
        missing = [k for k in ("page_id", "access_token", "app_secret") if not config.get(k)]
        if missing:
            raise ValidationFailed("missing Facebook page settings",
                                   fields={f"config.{k}": ["required"] for k in missing})
        external_id = str(config["page_id"]).strip()
        if not external_id.isdigit():
            raise ValidationFailed("invalid page id", fields={"config.page_id": ["digits only"]})
        credentials = {"access_token": config["access_token"], "app_secret": config["app_secret"],
                       "verify_token": config.get("verify_token") or secrets.token_urlsafe(24)}
        public = {"page_id": external_id}
    elif kind == "api":
        webhook_url = config.get("webhook_url")
        if webhook_url is not None and not str(webhook_url).startswith(("http://", "https://")):
            raise ValidationFailed("invalid webhook URL", fields={"config.webhook_url": ["must be http(s)://"]})
        credentials = {"webhook_secret": config.get("webhook_secret") or secrets.token_urlsafe(32)}
        public = {"webhook_url": webhook_url}
    else:
        raise ValidationFailed("unknown channel kind", fields={"kind": ["facebook_page or api"]})
    channel = Channel(brand_id=brand_id, kind=kind, name=name, external_id=external_id, config=public,
                      credentials_encrypted=encrypt_json(credentials),
                      verify_token_hash=sha256_hex(credentials["verify_token"]) if "verify_token" in credentials
                      else None)
    try:
        with session.begin_nested():
            session.add(channel)
            session.flush()
    except IntegrityError:
        raise Conflict("this account is already connected", fields={"config.page_id": ["already connected"]}) \
            from None
    invalidate_cache()
    return channel, {k: v for k, v in credentials.items() if k in ("verify_token", "webhook_secret")}


def webhook_urls(channel: Channel) -> dict[str, str]:
    base = get_settings().public_base_url
    if channel.kind == "facebook_page":
        return {"callback_url": f"{base}/webhooks/meta"}
    return {"inbound_url": f"{base}/webhooks/api/{channel.id}"}


class _CredentialCache:
    """Decrypted credentials kept briefly in memory: verifying a webhook must not cost a decryption."""

    ttl = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, tuple[float, dict[str, Any]]] = {}
        self._meta: tuple[float, dict[str, list[str]]] | None = None

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._meta = None

    def credentials(self, channel: Channel) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._by_id.get(channel.id)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        value = decrypt_json(channel.credentials_encrypted)
        with self._lock:
            self._by_id[channel.id] = (now, value)
        return value

    def meta_secrets(self, session: Session, *, refresh: bool = False) -> dict[str, list[str]]:
        """app secret -> page ids of the active Facebook channels using it."""
        now = time.monotonic()
        with self._lock:
            if self._meta and not refresh and now - self._meta[0] < self.ttl:
                return self._meta[1]
        mapping: dict[str, list[str]] = {}
        for channel in session.execute(select(Channel).where(Channel.kind == "facebook_page",
                                                             Channel.status != "disabled")).scalars():
            mapping.setdefault(self.credentials(channel)["app_secret"], []).append(channel.external_id or "")
        with self._lock:
            self._meta = (now, mapping)
        return mapping


_cache = _CredentialCache()


def invalidate_cache() -> None:
    _cache.clear()


def credentials(channel: Channel) -> dict[str, Any]:
    return _cache.credentials(channel)


def meta_app_secrets(session: Session, *, refresh: bool = False) -> dict[str, list[str]]:
    return _cache.meta_secrets(session, refresh=refresh)


def meta_verify_token_matches(session: Session, token: str) -> bool:
    return session.execute(select(Channel.id).where(Channel.kind == "facebook_page",
                                                    Channel.verify_token_hash == sha256_hex(token))).first() is not None


def channel_by_page(session: Session, page_id: str) -> Channel | None:
    return session.execute(select(Channel).where(Channel.kind == "facebook_page",
                                                 Channel.external_id == page_id)).scalar_one_or_none()


def get_channel(session: Session, channel_id: int) -> Channel:
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound("channel not found")
    return channel
