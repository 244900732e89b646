"""inbox.db's query helpers and types on the test database (SQLite; PostgreSQL with RELAIS_TEST_DB=postgresql):
`pairs_among` (a statement built once for any number of key pairs) and UTC datetimes read as they are stored."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from inbox.db import UTCDateTime, db, make_engine, pairs_among, pairs_params
from inbox.models import Conversation
from inbox.services import ingest
from tests.factories import PAGE_ID
from tests.helpers import store_verified


@pytest.fixture
def threads(app: Any, world: Any, background_held: None) -> dict[str, int]:
    """Three conversations of the page's channel (drained from webhooks), by thread key."""
    from inbox.demo.fake_meta import messenger_message_payload

    for k in range(3):
        store_verified(messenger_message_payload(PAGE_ID, f"pairs-{k}", "hi"))
    with app.app_context():
        ingest.drain_webhook_events(linger=0)
        found = {c.thread_key: c.channel_id for c in db.session.execute(select(Conversation)).scalars()}
        db.session.remove()
    return found


def test_pairs_among_finds_exactly_the_pairs_given(app: Any, threads: dict[str, int]) -> None:
    keys = sorted(threads)
    channel_id = threads[keys[0]]
    query = select(Conversation.thread_key).where(
        pairs_among(db.dialect, Conversation.channel_id, Conversation.thread_key, "keys"))
    with app.app_context():
        def among(pairs: list[tuple[int, str]]) -> list[str]:
            return sorted(db.session.execute(query, pairs_params(db.dialect, "keys", pairs)).scalars())
        assert among([(channel_id, keys[0]), (channel_id, keys[2])]) == [keys[0], keys[2]]
        assert among([(channel_id, key) for key in keys]) == keys  # the same statement, another count
        assert among([(channel_id + 1000, keys[0]), (channel_id, "nobody")]) == []
        # a key longer than the column is compared whole, never cut to the column's length
        assert among([(channel_id, keys[1] + "x" * 600)]) == []
        db.session.remove()


def test_datetimes_are_read_in_utc_whatever_the_session_asked(app: Any) -> None:
    """PostgreSQL sessions run in UTC (make_engine), so timestamptz values arrive in `timezone.utc` itself and
    UTCDateTime returns them as read; values in another zone are converted, naive ones (SQLite) taken as UTC."""
    at = datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)
    if db.dialect == "postgresql":
        url = db.engine.url.render_as_string(hide_password=False)
        asked = (make_engine(url, connect_args={"options": "-c TimeZone=Europe/Paris"}, pool_size=1),
                 # options in DATABASE_URL itself are kept (connect_args would replace them)
                 make_engine(db.engine.url.update_query_dict(
                     {"options": "-c TimeZone=Europe/Paris -c statement_timeout=4321"}).render_as_string(
                     hide_password=False), pool_size=1))
        for engine in asked:
            try:
                with engine.connect() as conn:
                    assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
                    read = conn.execute(select(text(":at ::timestamptz")), {"at": at}).scalar()
                    assert read == at and read.tzinfo is timezone.utc
            finally:
                engine.dispose()
        with asked[1].connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "4321ms"
        asked[1].dispose()
    column = UTCDateTime()
    assert column.process_result_value(at, db.engine.dialect) is at
    paris = at.astimezone(timezone(timedelta(hours=2)))
    assert column.process_result_value(paris, db.engine.dialect).tzinfo is timezone.utc
    assert column.process_result_value(paris, db.engine.dialect) == at
    assert column.process_result_value(at.replace(tzinfo=None), db.engine.dialect) == at


def test_a_dumped_json_value_is_stored_as_the_json_it_holds(app: Any, world: Any) -> None:
    """insert_rows on PostgreSQL sends a DumpedJSON's text as it is (a live event's payload, serialised once at
    the commit): the column holds the object, not a JSON string, and ordinary values beside it are serialised."""
    from inbox.db import DumpedJSON, insert_rows, utcnow
    from inbox.models import RealtimeEvent
    from inbox.realtime.relay import dump_json

    payload = {"text": 'dit "merci" \\ à bientôt <b>', "n": [1, None, True], "nested": {"é": "👍"}}
    with app.app_context():
        if db.dialect != "postgresql":
            pytest.skip("DumpedJSON is PostgreSQL's (realtime._write_pending checks the dialect)")
        session = db.session
        ids = [i for i, in insert_rows(session, RealtimeEvent, [
            {"name": "probe.dumped", "rooms": ["admins"], "payload": DumpedJSON(dump_json(payload)),
             "created_at": utcnow()},
            {"name": "probe.plain", "rooms": ["admins"], "payload": payload, "created_at": utcnow()}],
            returning=("id",))]
        session.commit()
        rows = session.execute(select(RealtimeEvent.name, RealtimeEvent.payload,
                                      text("json_typeof(payload)")).where(RealtimeEvent.id.in_(ids))
                               .order_by(RealtimeEvent.id)).all()
        assert [tuple(r) for r in rows] == [("probe.dumped", payload, "object"), ("probe.plain", payload, "object")]
        # `json`, not `jsonb`: kept as the text written, which a replay sends as it is
        stored = session.execute(text("SELECT payload::text FROM realtime_events WHERE id = :id"),
                                 {"id": ids[0]}).scalar_one()
        assert stored == dump_json(payload)
        db.session.remove()
