"""search and report indexes: pg_trgm GIN on message text and contact names (PostgreSQL), messages by time

Revision ID: 0006_search_indexes
Revises: 0005_sla_queue
Create Date: 2026-11-22 20:55:00
"""
from __future__ import annotations

from alembic import op

revision = "0006_search_indexes"
down_revision = "0005_sla_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_platform_time", "messages", ["platform_time"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index("ix_messages_text_trgm", "messages", ["text"], postgresql_using="gin",
                    postgresql_ops={"text": "gin_trgm_ops"})
    op.create_index("ix_contacts_name_trgm", "contacts", ["name"], postgresql_using="gin",
                    postgresql_ops={"name": "gin_trgm_ops"})
    op.create_index("ix_contacts_handle_trgm", "contacts", ["handle"], postgresql_using="gin",
                    postgresql_ops={"handle": "gin_trgm_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_contacts_handle_trgm", table_name="contacts")
        op.drop_index("ix_contacts_name_trgm", table_name="contacts")
        op.drop_index("ix_messages_text_trgm", table_name="messages")
    op.drop_index("ix_messages_platform_time", table_name="messages")
