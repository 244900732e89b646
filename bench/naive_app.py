"""Reference (b) for the ingest figure: the naive webhook handler Relais is measured against.

One ORM transaction per webhook, processing inline before answering: verify the signature, parse, and for each
message read-then-insert the contact, the conversation and the message, commit, answer 200. Its own tables
(naive_*) in the benchmark's database. Served exactly like Relais:

    DATABASE_URL=postgresql://... gunicorn -w 1 -k gthread --threads 64 bench.naive_app:app
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

from flask import Flask, abort, jsonify, request
from sqlalchemy import BigInteger, DateTime, ForeignKey, String, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

APP_SECRET = os.environ.get("NAIVE_APP_SECRET", "test-app-secret")


class Base(DeclarativeBase):
    pass


class NaiveContact(Base):
    __tablename__ = "naive_contacts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    psid: Mapped[str] = mapped_column(String(64), unique=True)


class NaiveConversation(Base):
    __tablename__ = "naive_conversations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("naive_contacts.id"), unique=True)
    last_message_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    preview: Mapped[str | None] = mapped_column(Text)


class NaiveMessage(Base):
    __tablename__ = "naive_messages"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("naive_conversations.id"), index=True)
    mid: Mapped[str] = mapped_column(String(200), unique=True)
    text: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
engine = create_engine(url, pool_size=10, max_overflow=54)
Base.metadata.create_all(engine)
app = Flask(__name__)


@app.post("/webhooks/meta")
def webhook():
    raw = request.get_data()
    expected = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        abort(403)
    body = json.loads(raw)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for entry in body.get("entry", []):
            for item in entry.get("messaging", []):
                psid, message = item["sender"]["id"], item.get("message") or {}
                contact = session.execute(select(NaiveContact).where(NaiveContact.psid == psid)).scalar()
                if contact is None:
                    contact = NaiveContact(psid=psid)
                    session.add(contact)
                    session.flush()
                conversation = session.execute(select(NaiveConversation).where(
                    NaiveConversation.contact_id == contact.id)).scalar()
                if conversation is None:
                    conversation = NaiveConversation(contact_id=contact.id, last_message_at=now)
                    session.add(conversation)
                    session.flush()
                if session.execute(select(NaiveMessage.id).where(NaiveMessage.mid == message["mid"])).scalar():
                    continue
                session.add(NaiveMessage(conversation_id=conversation.id, mid=message["mid"],
                                         text=message.get("text"), received_at=now))
                conversation.last_message_at = now
                conversation.preview = (message.get("text") or "")[:280]
    return jsonify({"status": "EVENT_RECEIVED"})
