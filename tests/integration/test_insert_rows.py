"""`db.insert_rows` (and `db.update_rows`): one INSERT (UPDATE) for many rows, whose text does not depend on the row count on PostgreSQL (an
`unnest` of one binary array per column), and the live events written with it as their transaction commits.

`db.json_document_insert` (the webhook committer's statement: the rows as one JSON document) is PostgreSQL's.

Runs on SQLite, and on PostgreSQL with RELAIS_TEST_DB=postgresql (the statement-text and prepared-statement checks
are PostgreSQL's).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from inbox import realtime
from inbox.db import DumpedJSON, db, insert_rows, update_rows
from inbox.models import Contact, Conversation, Message, RealtimeEvent

T0 = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=timezone.utc)


def _message(world: Any, conversation_id: int, n: int, **extra: Any) -> dict[str, Any]:
    row = {"conversation_id": conversation_id, "channel_id": world.page_channel_id, "direction": "in",
           "kind": "message", "external_id": f"ir-{n}", "author_type": "contact", "author_contact_id": None,
           "author_name": None, "text": f'texte "{n}" \\ é', "attachments": [{"type": "image", "url": None}],
           "reply_to_id": None, "reply_to_external_id": None, "platform_time": T0 + timedelta(seconds=n),
           "received_at": T0, "extra": {"quote": 'a "b" \\ c', "n": n}, "edit_history": [], "hidden": False,
           "liked": n % 2 == 0, "delivery_attempts": 0}
    row.update(extra)
    return row


def _conversation_id(world: Any) -> int:
    with db.transaction() as session:
        contact = Contact(name="Inès")
        session.add(contact)
        session.flush()
        conversation = Conversation(kind="dm", status="open", brand_id=world.brand_id,
                                    channel_id=world.page_channel_id, contact_id=contact.id,
                                    thread_key=f"dm:ir:{contact.id}")
        session.add(conversation)
        session.flush()
        return conversation.id


def test_rows_go_in_in_order_with_their_values_and_conflicts_are_skipped(app: Any, world: Any) -> None:
    with app.app_context():
        conversation_id = _conversation_id(world)
        rows = [_message(world, conversation_id, n) for n in range(5)]
        with db.transaction() as session:
            first = insert_rows(session, Message, rows, returning=("id", "external_id"),
                                conflict_on=("channel_id", "external_id"))
        assert sorted(external_id for _, external_id in first) == [f"ir-{n}" for n in range(5)]
        # ids follow the rows' order: the caller may map them back by sorting
        assert [external_id for _, external_id in sorted(first)] == [f"ir-{n}" for n in range(5)]
        again = [_message(world, conversation_id, n) for n in (3, 5, 4, 6)]
        with db.transaction() as session:
            second = insert_rows(session, Message, again, returning=("external_id",),
                                 conflict_on=("channel_id", "external_id"))
        assert sorted(external_id for external_id, in second) == ["ir-5", "ir-6"]
        with db.transaction() as session:
            stored = {m.external_id: m for m in session.scalars(select(Message).where(
                Message.conversation_id == conversation_id))}
            assert sorted(stored) == [f"ir-{n}" for n in range(7)]
            m = stored["ir-2"]
            assert (m.text, m.attachments, m.extra, m.liked, m.author_name) == (
                'texte "2" \\ é', [{"type": "image", "url": None}], {"quote": 'a "b" \\ c', "n": 2}, True, None)
            assert m.platform_time == T0 + timedelta(seconds=2) and m.platform_time.tzinfo is not None


def test_a_naive_datetime_is_refused_as_by_the_orm(app: Any, world: Any) -> None:
    with app.app_context():
        conversation_id = _conversation_id(world)
        with pytest.raises(Exception, match="naive datetime"), db.transaction() as session:
            insert_rows(session, Message, [_message(world, conversation_id, 9, received_at=datetime(2026, 1, 1))],
                        returning=("id",))


def test_a_value_too_long_for_its_column_is_refused_not_truncated(app: Any, world: Any) -> None:
    """As a plain INSERT does on PostgreSQL: the arrays are cast to text, not to varchar(n) (which would silently
    cut the value, e.g. an external id the dedupe then never matches)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite does not enforce string lengths")
        conversation_id = _conversation_id(world)
        too_long = _message(world, conversation_id, 300, external_id="x" * 257)
        with pytest.raises(Exception, match="too long"), db.transaction() as session:
            insert_rows(session, Message, [too_long], returning=("id",), conflict_on=("channel_id", "external_id"))


def test_one_statement_text_whatever_the_row_count_on_postgresql(app: Any, world: Any,
                                                                 statements: list[str]) -> None:
    """The same text for 1, 3 and 40 rows, one parameter per column: psycopg converts it once and, from its
    fifth run, executes it as a prepared statement."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the unnest INSERT is PostgreSQL's; SQLite gets a multi-row INSERT")
        conversation_id = _conversation_id(world)
        statements.clear()
        n = 100
        with db.transaction() as session:
            for count in (1, 3, 40, 2, 7, 1):
                insert_rows(session, Message, [_message(world, conversation_id, n + k) for k in range(count)],
                            returning=("id",), conflict_on=("channel_id", "external_id"))
                n += count
            inserts = [s for s in statements if s.startswith("INSERT INTO messages")]
            assert len(inserts) == 6 and len(set(inserts)) == 1, inserts
            assert "unnest(" in inserts[0]
            prepared = session.execute(text("SELECT count(*) FROM pg_prepared_statements "
                                            "WHERE statement LIKE 'INSERT INTO messages%unnest%'")).scalar()
            assert prepared == 1


def test_live_events_are_written_at_the_commit_in_publish_order_and_not_for_a_rolled_back_savepoint(
        app: Any, world: Any) -> None:
    with app.app_context():
        session = db.new_session()
        try:
            with session.begin():
                kept = realtime.publish(session, "sla.warning", {"n": 1, "q": 'a "b"'}, ["admins"])
                mark = realtime.pending_count(session)
                with session.begin_nested() as savepoint:
                    realtime.publish(session, "sla.warning", {"n": 2}, ["admins"])
                    savepoint.rollback()
                realtime.discard_after(session, mark)
                with session.begin_nested():  # a released savepoint writes nothing yet
                    later = realtime.publish(session, "sla.breached", {"n": 3}, ["brand:1", "admins"])
                assert kept.id is None and later.id is None
                assert session.scalar(select(RealtimeEvent.id).where(RealtimeEvent.payload["n"].as_integer() == 1)) \
                    is None
            assert kept.id is not None and later.id is not None and kept.id < later.id
        finally:
            session.close()
        with db.transaction() as session:
            rows = session.scalars(select(RealtimeEvent).where(RealtimeEvent.id >= kept.id)
                                   .order_by(RealtimeEvent.id)).all()
            assert [(r.id, r.name, r.payload, r.rooms) for r in rows] == [
                (kept.id, "sla.warning", {"n": 1, "q": 'a "b"'}, ["admins"]),
                (later.id, "sla.breached", {"n": 3}, ["brand:1", "admins"])]


def test_update_rows_sets_each_rows_values_in_one_statement(app: Any, world: Any) -> None:
    """Each row gets ITS values (NULLs, JSON with quotes, UTC times); rows not listed are untouched; on
    PostgreSQL one statement text whatever the number of rows."""
    with app.app_context():
        conversation_id = _conversation_id(world)
        with db.transaction() as session:
            ids = sorted(id_ for id_, in insert_rows(session, Message, [_message(world, conversation_id, n)
                                                                        for n in range(4)], returning=("id",)))
        statements: list[str] = []
        for size in (1, 3):
            rows = [{"id": id_, "text": None if k == 0 else f'new "{size}" \\ {k}', "liked": size == 3,
                     "extra": {"size": size, "quote": 'a "b"'}, "edited_at": T0 + timedelta(minutes=k)}
                    for k, id_ in enumerate(ids[:size])]
            with db.transaction() as session:
                from sqlalchemy import event
                connection = session.connection()

                def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                    if statement.lstrip().upper().startswith("UPDATE"):
                        statements.append(statement)
                event.listen(connection, "before_cursor_execute", record)
                update_rows(session, Message, rows)
                event.remove(connection, "before_cursor_execute", record)
        with db.transaction() as session:
            got = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
            assert [got[i].text for i in ids] == [None, 'new "3" \\ 1', 'new "3" \\ 2', 'texte "3" \\ é']
            assert [got[i].liked for i in ids] == [True, True, True, False]
            assert got[ids[2]].extra == {"size": 3, "quote": 'a "b"'}
            assert got[ids[1]].edited_at == T0 + timedelta(minutes=1)
            assert got[ids[3]].edited_at is None
        if db.engine.dialect.name == "postgresql":
            assert len(statements) == 2 and len(set(statements)) == 1  # one text for 1 row and for 3


def _webhook_row(n: int, **extra: Any) -> dict[str, Any]:
    row = {"source": "meta", "channel_id": None, "received_at": T0 + timedelta(microseconds=n), "remote_addr": None,
           "headers": {"X-Hub-Signature-256": "sha256=ab", "quote": 'a "b" \\ c', "accent": "é🙂"},
           "body": bytes(range(256)) + f"corps {n}".encode(), "verification": "valid",
           "verification_detail": 'détail "x" \\ y', "status": "pending", "attempts": n, "next_attempt_at": None,
           "error": None, "processed_at": None, "stats": {"nested": [1, {"deep": None}]}}
    row.update(extra)
    return row


def test_json_document_insert_writes_every_value_as_given_in_row_order(app: Any, world: Any) -> None:
    """The webhook committer's statement: the rows as one JSON document. Bytes of every value, quotes, backslashes
    and non-ASCII text, microseconds, NULLs and nested JSON come back as they went in; ids follow the rows."""
    if db.dialect != "postgresql":
        pytest.skip("json_populate_recordset is PostgreSQL's; SQLite keeps the pooled transaction")
    from inbox.db import json_document_insert
    from inbox.models import WebhookEvent

    with app.app_context():
        rows = [_webhook_row(n) for n in range(3)]
        sql, params = json_document_insert(db.engine.dialect, WebhookEvent.__table__, rows, returning=("id",))
        with db.engine.begin() as conn:
            ids = [id_ for id_, in conn.exec_driver_sql(sql, params)]
        assert ids == sorted(ids) and len(ids) == 3
        with db.transaction() as session:
            stored = {e.id: e for e in session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids)))}
            for id_, row in zip(ids, rows, strict=True):
                event = stored[id_]
                assert {name: getattr(event, name) for name in row} == row
        two = json_document_insert(db.engine.dialect, WebhookEvent.__table__, [_webhook_row(9)], returning=("id",))
        assert two[0] == sql  # one text whatever the group's size


def test_json_document_insert_refuses_naive_datetimes_and_types_it_does_not_encode(app: Any) -> None:
    if db.dialect != "postgresql":
        pytest.skip("json_populate_recordset is PostgreSQL's")
    from inbox.db import json_document_insert
    from inbox.models import WebhookEvent

    with app.app_context():
        with pytest.raises(ValueError, match="naive"):
            json_document_insert(db.engine.dialect, WebhookEvent.__table__,
                                 [_webhook_row(1, received_at=T0.replace(tzinfo=None))], returning=("id",))
        with pytest.raises(TypeError, match="DumpedJSON"):  # JSON text would be stored as a JSON string
            json_document_insert(db.engine.dialect, WebhookEvent.__table__,
                                 [_webhook_row(1, stats=DumpedJSON('{"a":1}'))], returning=("id",))
        with pytest.raises(TypeError, match="hidden"):  # a boolean: not one of the types it encodes
            json_document_insert(db.engine.dialect, Message.__table__, [{"text": "x", "hidden": False}],
                                 returning=("id",))
