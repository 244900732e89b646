"""messages.sending_since: when a send job last claimed the message (queued -> sending), so the reconciler
counts a send as interrupted from its claim, not from when the message was written (a retry after a backoff,
or a send queued for a while, was marked `unknown` while it was being sent)

Revision ID: 0009_sending_since
Revises: 0008_receipt_watermarks
Create Date: 2026-11-23 08:10:00

A plain ADD / DROP COLUMN (nullable, no default, no backfill): no table rewrite on PostgreSQL, and SQLite keeps
the table instead of rebuilding it as batch mode does. The rows already `sending` keep it NULL: the reconciler
falls back to their platform_time, as before.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import inbox.db


revision = '0009_sending_since'
down_revision = '0008_receipt_watermarks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('messages', sa.Column('sending_since', inbox.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35 has it): batch mode would rebuild the table
    op.drop_column('messages', 'sending_since')
