"""Migrations: one head, and the models match what the migrations build (on the suite's backend)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from inbox.db import db, only_for_other_dialect
from inbox.models import Base
from tests.conftest import ROOT


def test_one_head():
    script = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_models_match_migrations(app):
    with db.engine.connect() as connection:
        dialect = connection.dialect.name
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_object": lambda obj, *_: not only_for_other_dialect(obj, dialect)})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], diff
