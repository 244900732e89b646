"""realtime_events.payload: PostgreSQL `json` instead of `jsonb`, the text it was written in

Revision ID: 0010_event_payload_json
Revises: 0009_sending_since
Create Date: 2026-11-25 07:40:00

A replay sends each stored event's payload as its JSON text (inbox/realtime/handlers.py). From `jsonb` PostgreSQL
wrote every payload out again as text (`payload::text`), for every reconnecting console: 2.5 of the 3.9 ms of a
1,334-event replay's read. Nothing searches the payloads, so `json` keeps the text as inserted (no parse into
jsonb at the INSERT either). The table holds a few days of events (the reconciler prunes it): the ALTER rewrites
it once. SQLite stores JSON as text already: nothing to do there.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0010_event_payload_json'
down_revision = '0009_sending_since'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('realtime_events', 'payload', type_=sa.JSON(), existing_type=postgresql.JSONB(),
                        existing_nullable=False, postgresql_using='payload::json')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('realtime_events', 'payload', type_=postgresql.JSONB(), existing_type=sa.JSON(),
                        existing_nullable=False, postgresql_using='payload::jsonb')
