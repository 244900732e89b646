"""conversation receipt watermarks: the latest read and delivery watermarks of each thread, so an outbound
message stored after its receipt (an echo applied later, maybe by another worker process) is marked too

Revision ID: 0008_receipt_watermarks
Revises: 0007_view_counts
Create Date: 2026-11-23 01:30:00

Plain ADD / DROP COLUMNs (nullable, no default): no table rewrite on PostgreSQL, and SQLite keeps the table
(and the view-counter triggers of 0007 on it) instead of rebuilding it as batch mode does.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import inbox.db


revision = '0008_receipt_watermarks'
down_revision = '0007_view_counts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('conversations', sa.Column('read_watermark', inbox.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column('conversations', sa.Column('delivery_watermark', inbox.db.UTCDateTime(timezone=True),
                                             nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35 has it): batch mode would rebuild the table and lose its triggers
    op.drop_column('conversations', 'delivery_watermark')
    op.drop_column('conversations', 'read_watermark')
