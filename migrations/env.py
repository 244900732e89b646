"""Alembic environment: the database comes from config.load_settings() (DATABASE_URL) unless the caller
passes a connection in `config.attributes["connection"]` (tests) or sets sqlalchemy.url."""
from __future__ import annotations

from alembic import context

from config import load_settings
from inbox.db import make_engine, only_for_other_dialect
from inbox.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    dialect = connection.dialect.name
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True,
                      include_object=lambda obj, *_: not only_for_other_dialect(obj, dialect))
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
