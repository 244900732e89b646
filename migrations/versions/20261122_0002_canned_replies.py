"""canned replies

Revision ID: 0002_canned_replies
Revises: f9aa07851145
Create Date: 2026-11-22 20:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import inbox.db

revision = '0002_canned_replies'
down_revision = 'f9aa07851145'
branch_labels = None
depends_on = None

_LIVE = "archived = false"


def upgrade() -> None:
    op.create_table('canned_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shortcut', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('brand_id', sa.Integer(), nullable=True),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=10), nullable=True),
    sa.Column('usage_count', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('created_at', inbox.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', inbox.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        "(scope = 'global' AND brand_id IS NULL AND team_id IS NULL)"
        " OR (scope = 'brand' AND brand_id IS NOT NULL AND team_id IS NULL)"
        " OR (scope = 'team' AND team_id IS NOT NULL AND brand_id IS NULL)",
        name=op.f('ck_canned_replies_scope_target')),
    sa.ForeignKeyConstraint(['brand_id'], ['brands.id'], name=op.f('fk_canned_replies_brand_id_brands'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['agents.id'], name=op.f('fk_canned_replies_created_by_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_canned_replies_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_canned_replies'))
    )
    with op.batch_alter_table('canned_replies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_canned_replies_brand_id'), ['brand_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_canned_replies_created_by_id'), ['created_by_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_canned_replies_team_id'), ['team_id'], unique=False)
        batch_op.create_index('ix_canned_replies_live_shortcut', ['archived', 'shortcut'], unique=False)
        batch_op.create_index('ix_canned_replies_live_usage', ['archived', 'usage_count'], unique=False)
        batch_op.create_index('uq_canned_replies_global_shortcut', ['shortcut'], unique=True,
                              sqlite_where=sa.text(f"scope = 'global' AND {_LIVE}"),
                              postgresql_where=sa.text(f"scope = 'global' AND {_LIVE}"))
        batch_op.create_index('uq_canned_replies_brand_shortcut', ['brand_id', 'shortcut'], unique=True,
                              sqlite_where=sa.text(f"scope = 'brand' AND {_LIVE}"),
                              postgresql_where=sa.text(f"scope = 'brand' AND {_LIVE}"))
        batch_op.create_index('uq_canned_replies_team_shortcut', ['team_id', 'shortcut'], unique=True,
                              sqlite_where=sa.text(f"scope = 'team' AND {_LIVE}"),
                              postgresql_where=sa.text(f"scope = 'team' AND {_LIVE}"))


def downgrade() -> None:
    with op.batch_alter_table('canned_replies', schema=None) as batch_op:
        batch_op.drop_index('uq_canned_replies_team_shortcut')
        batch_op.drop_index('uq_canned_replies_brand_shortcut')
        batch_op.drop_index('uq_canned_replies_global_shortcut')
        batch_op.drop_index('ix_canned_replies_live_usage')
        batch_op.drop_index('ix_canned_replies_live_shortcut')
        batch_op.drop_index(batch_op.f('ix_canned_replies_team_id'))
        batch_op.drop_index(batch_op.f('ix_canned_replies_created_by_id'))
        batch_op.drop_index(batch_op.f('ix_canned_replies_brand_id'))

    op.drop_table('canned_replies')
