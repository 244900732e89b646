"""The database: one engine, one scoped session, the column types and helpers every model and service uses.

SQLite (embedded default) and PostgreSQL behave the same: timezone-aware UTC datetimes, JSON columns and
dialect-specific `INSERT ... ON CONFLICT DO NOTHING` through `insert_for()`.
"""
from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import orjson
from sqlalchemy import exc as sa_exc
from sqlalchemy import (JSON, DateTime, Integer, LargeBinary, String, Text, any_, bindparam, create_engine, event, func,
                        select, tuple_)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (timestamptz on PostgreSQL, naive UTC text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is timezone.utc and dialect.name != "sqlite":  # utcnow()'s, as most are: nothing to do
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use timezone-aware UTC")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is timezone.utc:  # PostgreSQL sessions run in UTC (make_engine): every value, as read
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")
# A JSON document kept as the text it was written in (PostgreSQL `json`, not `jsonb`): for a column read back only
# whole and never searched, like the live events' payloads, which a replay sends as their stored text. `jsonb`
# parsed each payload as it was inserted and wrote it out again for every replayed event (`payload::text`: 2.5 of
# the 3.9 ms of a 1,334-event replay's read).
JSONTextType = JSON()


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=json_text, json_deserializer=orjson.loads, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (IMMEDIATE: take the write lock up front, so two writers wait on
            # busy_timeout instead of failing with SQLITE_BUSY when a read transaction upgrades).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # A connection beyond pool_size is opened for a burst and closed when returned: a PostgreSQL backend forked,
    # authenticated and its prepared statements lost each time. Under gevent a web process can have hundreds of
    # greenlets wanting one at once (500 agents opening new conversations: bench figure 2 opened 110 connections
    # in 10 s with 10 kept + 30 overflow, 23 with 20 + 10), so the kept pool is the larger part. Settings:
    # DATABASE_POOL_SIZE / DATABASE_MAX_OVERFLOW (config.py).
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    # No ping before every checkout (pool_pre_ping: one round trip more for every transaction, a drain's or a
    # request's): only a connection idle for PING_AFTER_IDLE seconds is pinged (`_ping_when_idle`)
    ping_after_idle = kwargs.pop("ping_after_idle", PING_AFTER_IDLE)
    # the connection used last is handed out first: the few connections a steady load needs stay hot, so each
    # reaches psycopg's prepare threshold (5 executions of a statement) quickly and keeps its plans, instead of
    # every request rotating through all of them
    kwargs.setdefault("pool_use_lifo", True)
    # Sessions in UTC, whatever the server's default (e.g. Europe/Paris): timestamptz values then arrive in
    # `datetime.timezone.utc` itself (psycopg maps "UTC" to it, "Etc/UTC" or any other name to a ZoneInfo), which
    # UTCDateTime returns as read instead of converting every datetime of every row (the drain's lock query reads
    # dozens per conversation); SQL date arithmetic never depends on the server's setting either.
    # (connect_args replace the URL's own parameters: an `?options=...` of DATABASE_URL is kept in front)
    connect_args = dict(kwargs.pop("connect_args", {}))
    given = connect_args.get("options") or make_url(url).query.get("options")
    given = " ".join(given) if isinstance(given, tuple) else given
    connect_args["options"] = " ".join(filter(None, (given, "-c TimeZone=UTC")))
    # JSON columns read by orjson too (psycopg's loader called the standard library's: 4% of the drain's lock query)
    engine = create_engine(url, connect_args=connect_args, json_serializer=json_text, json_deserializer=orjson.loads,
                           **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine, ping_after_idle)
    return engine


# A pooled PostgreSQL connection unused for this long is pinged before it is handed out (see `_ping_when_idle`).
PING_AFTER_IDLE = 1.0
_CHECKED_IN = "relais.checked_in_at"


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """SQLAlchemy's pre-ping, for connections idle `idle` seconds or more only. A connection the database closed
    (a restart, an idle timeout on the way) is found by the ping and replaced, with every connection opened
    before it (the pool is invalidated, as pre-ping does), before anything uses it. A connection used less than a
    second ago is handed out as it is: the drain and busy request threads, which check a connection out several
    times a second, no longer pay a round trip for each transaction. The remaining risk: the database restarted
    within that second; the first statement then fails as a disconnect, SQLAlchemy invalidates the pool, and the
    request fails (the drain's job fails, and its webhooks, durable, are drained by the next one)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)  # none yet: a connection opened for this checkout
        if checked_in is None or time.monotonic() - checked_in < idle:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa_exc.InvalidatePoolError() from exc  # the pool reconnects, as pre-ping does
            raise


_WROTE = "relais.wrote"  # in a connection's info: a statement of its current transaction may have written


def _track_writes(engine: Engine) -> None:
    """Marks the connection when its transaction sends anything but a SELECT (see `Database.end_request`)."""
    @event.listens_for(engine, "begin")
    def _forget(conn: Any) -> None:
        conn.info.pop(_WROTE, None)

    @event.listens_for(engine, "before_cursor_execute")
    def _note(conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _executemany: bool) -> None:
        if _WROTE in conn.info:
            return
        compiled = getattr(context, "compiled", None)
        if compiled is not None and not context.is_text:  # a Core / ORM construct: it says what it is
            reads = not (context.isinsert or context.isupdate or context.isdelete or context.isddl)
        else:  # SQL text: only a plain SELECT reads
            reads = statement.lstrip()[:6].upper() == "SELECT"
        if not reads:
            conn.info[_WROTE] = True


class Database:
    """Holds the engine and the thread-scoped session; `init(url)` is called by create_app and by workers."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._factory = sessionmaker(expire_on_commit=False)
        self.session = scoped_session(self._factory)

    def init(self, url: str, **engine_kwargs: Any) -> None:
        if self.engine is not None:
            self.session.remove()
            self.engine.dispose()
        self.engine = make_engine(url, **engine_kwargs)
        _track_writes(self.engine)
        self._factory.configure(bind=self.engine)

    @property
    def dialect(self) -> str:
        assert self.engine is not None, "database not initialised"
        return self.engine.dialect.name

    def new_session(self) -> Session:
        """A session of its own, outside the thread-scoped one (jobs, timers)."""
        return self._factory()

    def end_request(self, *, succeeded: bool) -> None:
        """Ends the thread's session at the end of a request. A request that succeeded and whose transaction
        wrote nothing (no statement but SELECTs, nothing left unflushed, nothing waiting for a commit) ends it
        with COMMIT: the same as a ROLLBACK for such a transaction, but psycopg forgets the connection's prepared
        statements, and its counts towards preparing them, on every ROLLBACK, so the list pages would be
        planned again on each request. Everything else is rolled back, as the session's removal does."""
        registry = self.session.registry
        try:
            if succeeded and registry.has() and self._read_only(registry()):
                registry().commit()
        except Exception:  # ending with a rollback, as below, is always safe
            log.warning("could not end a read-only transaction with COMMIT", exc_info=True)
        finally:
            self.session.remove()

    @staticmethod
    def _read_only(session: Session) -> bool:
        """Whether the session's transaction is open, healthy, and only read (see `_track_writes`)."""
        transaction = session.get_transaction()
        if transaction is None or not transaction.is_active or session.in_nested_transaction():
            return False
        if session.new or session.dirty or session.deleted or session.info:
            return False
        connection = session.connection()
        if connection.info.get(_WROTE):
            return False
        if connection.dialect.name == "postgresql":  # not after an error (the server would roll back anyway)
            from psycopg.pq import TransactionStatus
            return connection.connection.dbapi_connection.info.transaction_status == TransactionStatus.INTRANS
        return True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A fresh session in one transaction: committed on success, rolled back on error, always closed."""
        session = self._factory()
        try:
            with session.begin():
                yield session
        finally:
            session.close()


db = Database()


def insert_for(session: Session, model: Any) -> Any:
    """An INSERT for `model` in the session's dialect, so callers can add `.on_conflict_do_nothing(...)`."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise RuntimeError(f"unsupported database dialect {name!r}")


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]], *, returning: tuple[str, ...],
                conflict_on: tuple[str, ...] | None = None) -> list[tuple[Any, ...]]:
    """INSERT every row (all with the same keys) in ONE statement, in the given order, with ON CONFLICT
    (`conflict_on`) DO NOTHING when given; returns the `returning` columns of the rows inserted (any order).

    On PostgreSQL the statement is `INSERT ... SELECT ... FROM unnest(<one array per column>) WITH ORDINALITY`:
    its text and its parameter count (one per column) are the same whatever the number of rows, so psycopg
    converts it once and prepares it on the server like any repeated query. A multi-row VALUES list (what
    SQLAlchemy's insertmanyvalues renders) is a new text for every row count with columns x rows parameters,
    over psycopg's 50-parameter limit for caching a query's conversion: re-parsed in Python and planned by the
    server on every drain (the largest single cost of the message INSERT in bench figure 1's profile).
    Values go through each column's type (UTC datetimes checked, JSON wrapped) as SQLAlchemy would bind them.
    Other databases get the multi-row INSERT."""
    if not rows:
        return []
    table = model.__table__
    if session.get_bind().dialect.name != "postgresql":
        stmt = insert_for(session, model)
        if conflict_on is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict_on))
        stmt = stmt.returning(*(table.c[name] for name in returning)).execution_options(render_nulls=True)
        return [tuple(row) for row in session.execute(stmt, rows)]
    connection = session.connection()
    sql, params = unnest_insert(connection.dialect, table, rows, returning=returning, conflict_on=conflict_on)
    return [tuple(row) for row in connection.exec_driver_sql(sql, params)]


def unnest_insert(dialect: Any, table: Any, rows: list[dict[str, Any]], *, returning: tuple[str, ...],
                  conflict_on: tuple[str, ...] | None = None) -> tuple[str, tuple[list[Any], ...]]:
    """`insert_rows`' PostgreSQL statement and its parameters (one list per column, values bound through each
    column's type), for a caller holding a driver connection of its own (the webhook group commit)."""
    columns = tuple(rows[0])
    sql, processors = _unnest_insert(dialect, table, columns, returning, conflict_on)
    return sql, _column_arrays(rows, columns, processors)


def json_document_insert(dialect: Any, table: Any, rows: list[dict[str, Any]], *, returning: tuple[str, ...]
                         ) -> tuple[str, tuple[str]]:
    """`unnest_insert` with the rows sent as ONE JSON document (`json_populate_recordset` over the table's row
    type, in row order) instead of one array per column, for a caller holding a driver connection of its own (the
    webhook group commit, on the ack's path). psycopg dumps an array's elements one by one in Python; the JSON is
    serialised in C. `python -m bench.insert_forms`: client CPU per statement 33 against 70-84 µs for one
    webhook_events row, 47 against 102 µs for five, 280-294 against 361-395 µs for fifty; at fifty the statement
    takes ~0.1 ms longer in all (PostgreSQL parses the document), so only the small groups of the ack path use it.

    Columns of the types a webhook event has: integers, strings, timestamps (ISO 8601), JSON (the value itself)
    and bytea (hex). Any other type is refused when the statement is built: its text form is not checked here."""
    columns = tuple(rows[0])
    sql, encoders = _json_document_insert(dialect, table, columns, returning)
    document = []
    for row in rows:
        document.append({name: (encode(row[name]) if encode is not None and row[name] is not None else row[name])
                         for name, encode in zip(columns, encoders)})
    return sql, (json_text(document),)


def json_text(value: Any) -> str:
    """A JSON column's text (the engine's `json_serializer`) and the webhook group commit's document: compact UTF-8,
    by orjson, as the live events are (`realtime.relay.dump_json`). The standard library's encoder was ~4% of the
    drain's CPU here (each message's attachments and extra, each raw event's stats: py-spy)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_document_insert(dialect: Any, table: Any, columns: tuple[str, ...], returning: tuple[str, ...]
                          ) -> tuple[str, tuple[Any, ...]]:
    def build() -> tuple[str, tuple[Any, ...]]:
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(name) for name in columns)
        values = ", ".join(f"v.{quote(name)}" for name in columns)
        sql = (f"INSERT INTO {quote(table.name)} ({names}) SELECT {values} FROM json_populate_recordset("
               f"NULL::{quote(table.name)}, %s::json) WITH ORDINALITY AS v ORDER BY v.ordinality RETURNING "
               + ", ".join(quote(name) for name in returning))
        return sql, tuple(_json_encoder(table.c[name], dialect) for name in columns)
    return _built(("json", table.name, columns, returning), build)


def _bytea_hex(value: bytes) -> str:
    return "\\x" + bytes(value).hex()  # bytea's hex input form: \x then two digits a byte


def _json_value(value: Any) -> Any:
    if type(value) is DumpedJSON:  # already JSON text: it would be stored as a JSON string, not as its value
        raise TypeError("json_document_insert takes a JSON column's value, not its DumpedJSON text")
    return value


def _json_encoder(column: Any, dialect: Any) -> Any:
    """How a column's value goes into `json_document_insert`'s document (None: as it is). A TypeDecorator's own
    bind step (UTCDateTime refuses naive datetimes) runs first."""
    type_, decorate = column.type, None
    if isinstance(type_, TypeDecorator):
        type_, decorate = type_.impl_instance, type_.process_bind_param
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, JSON):
        encode = _json_value
    elif isinstance(impl, Integer | String):
        encode = None
    elif isinstance(impl, LargeBinary):
        encode = _bytea_hex
    elif isinstance(impl, DateTime):
        encode = datetime.isoformat
    else:
        raise TypeError(f"json_document_insert: column {column.name} has type {impl!r}")
    if decorate is None:
        return encode

    def decorated(value: Any) -> Any:
        value = decorate(value, dialect)
        return encode(value) if encode is not None and value is not None else value
    return decorated


def update_rows(session: Session, model: Any, rows: list[dict[str, Any]], *, key: str = "id") -> None:
    """UPDATE each row's columns (every row with the same keys, `key` among them) in ONE statement.

    On PostgreSQL `UPDATE ... FROM unnest(<one array per column>) WHERE key = v.key`: one text and one execution
    whatever the number of rows. An executemany goes through psycopg's pipeline mode (enter, one prepared
    statement per row, sync), which for the drain's usual one to five rows cost more than the statement
    itself. Other databases get an executemany."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        table = model.__table__
        stmt = (table.update().where(table.c[key] == bindparam(f"_{key}"))
                .values({name: bindparam(f"_{name}") for name in rows[0] if name != key}))
        session.execute(stmt, [{f"_{name}": value for name, value in row.items()} for row in rows])
        return
    connection.exec_driver_sql(*update_rows_statement(connection.dialect, model, rows, key=key))


def update_rows_statement(dialect: Any, model: Any, rows: list[dict[str, Any]], *, key: str = "id"
                          ) -> tuple[str, tuple[list[Any], ...]]:
    """`update_rows`' PostgreSQL statement and its parameters, for a caller sending it itself (`pipelined`)."""
    table = model.__table__
    columns = tuple(rows[0])

    def build() -> tuple[str, tuple[Any, ...]]:
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(name) for name in columns)
        arrays = ", ".join(f"%b::{_array_element_type(table.c[name], dialect)}[]" for name in columns)
        sets = ", ".join(f"{quote(name)} = {_array_value(table.c[name], dialect, quote)}" for name in columns
                         if name != key)
        sql = (f"UPDATE {quote(table.name)} AS t SET {sets} FROM unnest({arrays}) AS v({names}) "
               f"WHERE t.{quote(key)} = v.{quote(key)}")
        return sql, tuple(_bind_processor(table.c[name], dialect) for name in columns)
    sql, processors = _built(("update", table.name, columns, key), build)
    return sql, _column_arrays(rows, columns, processors)


def pipelined(session: Session, statements: list[tuple[str, Any]], *, commit: bool = False) -> list[list[Any]]:
    """Sends `statements` (PostgreSQL only: SQL text in psycopg's placeholders, and its parameters) in ONE round
    trip with psycopg's pipeline mode, followed by the transaction's COMMIT when `commit`; returns each statement's
    rows ([] for one that returns none). (A transaction not begun yet begins first, in a round trip of its own:
    psycopg waits for the BEGIN's answer, even in pipeline mode.)

    Each round trip to PostgreSQL costs both processes a wake-up and, on a busy box, a wait for a core: the drain
    of one message made ten, and its last three (the raw events' outcomes, the live events, the COMMIT) needed no
    answer before the next. The statements go to the driver directly, because
    SQLAlchemy reads a statement's result as soon as it is sent, which in pipeline mode is not there yet. The
    engine's `before_cursor_execute` listeners still see each one (their context is None); their errors are raised
    as SQLAlchemy's (`DBAPIError`), and a lost connection is invalidated as SQLAlchemy does.

    With `commit`, the transaction is committed here, at the driver: the caller ends the session's transaction
    right after, and its COMMIT finds nothing to do (psycopg skips it). Flush the session first: anything written
    after this COMMIT would run in a transaction of its own."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    cursors = []
    try:
        with driver.pipeline():
            for sql, params in statements:
                cursor = driver.cursor()
                cursors.append(cursor)
                # the engine's listeners see it as any other statement (with no execution context)
                connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
                cursor.execute(sql, params)
            if commit:
                # as a statement: psycopg's commit() in a pipeline syncs, then leaving the pipeline syncs again (a
                # second round trip); the connection's transaction status follows the server's answer either way
                with driver.cursor() as cursor:
                    cursor.execute("COMMIT")
        return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
    except connection.dialect.loaded_dbapi.Error as exc:
        sql = "; ".join(sql for sql, _params in statements)
        invalidated = connection.dialect.is_disconnect(exc, driver, None)
        if invalidated:
            connection.invalidate(exc)
        raise sa_exc.DBAPIError.instance(sql, None, exc, connection.dialect.loaded_dbapi.Error,
                                         connection_invalidated=invalidated) from exc
    finally:
        for cursor in cursors:
            cursor.close()


_UNNEST_STATEMENTS: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}  # insert_rows', update_rows', ...


def _built(key: tuple[Any, ...], build: Callable[[], tuple[str, tuple[Any, ...]]]) -> tuple[str, tuple[Any, ...]]:
    """A statement's text and its per-column helpers, built once per shape (`key`)."""
    built = _UNNEST_STATEMENTS.get(key)
    if built is None:
        built = _UNNEST_STATEMENTS[key] = build()
    return built


class DumpedJSON(str):
    """A JSON column's value already serialised (compact JSON text), for `insert_rows` / `update_rows` on
    PostgreSQL: sent as it is instead of being serialised again. The live events' payloads are serialised once,
    at the commit, for their `realtime_events` row and for the message the relay publishes (inbox/realtime).
    Other databases take the value itself (the caller checks the dialect)."""

    __slots__ = ()


def _bind_processor(column: Any, dialect: Any) -> Any:
    """The column's bind processor for an unnest array. On PostgreSQL a JSON column's array is text[] (cast back in
    the statement, `_array_value`): each value is serialised by orjson here, and a DumpedJSON goes through as it
    is. (Each value wrapped for psycopg's jsonb dumper, after SQLAlchemy's JSON bind step, was 5% of a 10-entry
    drain's CPU, the INSERT's values dumped one by one in Python; PostgreSQL parses the same text either way.)"""
    if _json_on_postgresql(column, dialect):
        return _json_array_value
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _json_on_postgresql(column: Any, dialect: Any) -> bool:
    """A JSON column on PostgreSQL: its unnest array is text[], each value cast back in the statement."""
    return dialect.name == "postgresql" and isinstance(column.type.dialect_impl(dialect), JSON)


def _json_array_value(value: Any) -> str:
    """A JSON column's value in a text[] array: its JSON text (None: JSON null, as SQLAlchemy binds it)."""
    if type(value) is DumpedJSON:
        return value
    return json_text(value)


def _array_value(column: Any, dialect: Any, quote: Callable[[str], str]) -> str:
    """A column of the unnest `v` as it is written: a JSON column's text cast back to its type."""
    if _json_on_postgresql(column, dialect):
        cast = "jsonb" if isinstance(column.type.dialect_impl(dialect), postgresql.JSONB) else "json"
        return f"v.{quote(column.name)}::{cast}"
    return f"v.{quote(column.name)}"


def _column_arrays(rows: list[dict[str, Any]], columns: tuple[str, ...], processors: tuple[Any, ...]
                   ) -> tuple[list[Any], ...]:
    """One list per column of the rows' values, each bound through its column's type (an unnest's arrays)."""
    return tuple([process(row[name]) for row in rows] if process else [row[name] for row in rows]
                 for name, process in zip(columns, processors))


def _unnest_insert(dialect: Any, table: Any, columns: tuple[str, ...], returning: tuple[str, ...],
                   conflict_on: tuple[str, ...] | None) -> tuple[str, tuple[Any, ...]]:
    """`insert_rows`' PostgreSQL statement and each column's bind processor (built once per shape)."""
    def build() -> tuple[str, tuple[Any, ...]]:
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(name) for name in columns)
        # %b: arrays in binary; as text, every element is escaped into an array literal (a JSON payload's quotes
        # and backslashes by a regular expression: ten times the cost of the binary form for live events)
        arrays = ", ".join(f"%b::{_array_element_type(table.c[name], dialect)}[]" for name in columns)
        values = ", ".join(_array_value(table.c[name], dialect, quote) for name in columns)
        sql = (f"INSERT INTO {quote(table.name)} ({names}) SELECT {values} FROM unnest({arrays}) WITH ORDINALITY "
               f"AS v({names}, ord) ORDER BY ord")
        if conflict_on is not None:
            sql += f" ON CONFLICT ({', '.join(quote(name) for name in conflict_on)}) DO NOTHING"
        sql += " RETURNING " + ", ".join(quote(name) for name in returning)
        return sql, tuple(_bind_processor(table.c[name], dialect) for name in columns)
    return _built((table.name, columns, returning, conflict_on), build)


def _array_element_type(column: Any, dialect: Any) -> str:
    """The type an `insert_rows` array is cast to: the column's, but a string column's without its length. An
    explicit cast to varchar(n) silently truncates a longer value; the INSERT's own assignment to the column
    refuses it ("value too long"), as a plain INSERT does. A JSON column's: text (`_bind_processor`)."""
    if isinstance(column.type.dialect_impl(dialect), String) or _json_on_postgresql(column, dialect):
        return "text"
    return column.type.compile(dialect=dialect)


def among(dialect: str, column: Any, ids: Any = None, *, name: str | None = None) -> Any:
    """`column IN ids`; on PostgreSQL `column = ANY(:ids)`, one array parameter: one statement text whatever the
    number of ids (prepared once by psycopg) and not that many parameters to render and bind. Either the ids, or
    `name`: a parameter given when the statement runs (a statement built once)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, None if name else sorted(ids), type_=postgresql.ARRAY(Integer)))
    return column.in_(bindparam(name, expanding=True)) if name else column.in_(sorted(ids))


def pairs_among(dialect: str, first: Any, second: Any, name: str) -> Any:
    """`(first, second) IN <pairs>`, the pairs given when the statement runs (`pairs_params(dialect, name, ...)`), so
    the statement is built once. On PostgreSQL `IN (SELECT unnest(:name_1), unnest(:name_2))`: two array
    parameters, one statement text whatever the number of pairs (prepared once by psycopg), where a row-value
    list renders and binds two parameters per pair and is a new text for every count (the drain's lock query is
    long: psycopg parsed its text again at every execution). Elsewhere an expanding IN of tuples."""
    if dialect == "postgresql":
        return tuple_(first, second).in_(select(
            func.unnest(bindparam(f"{name}_1", type_=postgresql.ARRAY(_element_type(first)))),
            func.unnest(bindparam(f"{name}_2", type_=postgresql.ARRAY(_element_type(second))))).scalar_subquery())
    return tuple_(first, second).in_(bindparam(name, expanding=True))


def _element_type(column: Any) -> Any:
    """A column's type as an array element: a string column's without its length (a cast to varchar(n) would
    silently cut a longer value, which could then equal a stored one)."""
    return Text() if isinstance(column.type, String) else column.type


def pairs_params(dialect: str, name: str, pairs: Any) -> dict[str, Any]:
    """The parameters of `pairs_among(dialect, ..., name)` for these pairs."""
    pairs = list(pairs)
    if dialect == "postgresql":
        return {f"{name}_1": [a for a, _b in pairs], f"{name}_2": [b for _a, b in pairs]}
    return {name: pairs}


def only_for_other_dialect(obj: Any, dialect_name: str) -> bool:
    """True for a schema object declared with `.ddl_if(dialect=...)` for another database (e.g. a PostgreSQL
    trigram index seen from SQLite): Alembic's comparison skips it, as CREATE TABLE does."""
    condition = getattr(obj, "_ddl_if", None)
    return condition is not None and condition.dialect is not None and condition.dialect != dialect_name
