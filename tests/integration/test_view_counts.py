"""View counters from the trigger-maintained counter tables (services.view_counts): exact after every kind of
change, whatever the code path, on SQLite and PostgreSQL; compaction; concurrent writers (PostgreSQL)."""
from __future__ import annotations

import importlib.util
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from inbox.db import db
from inbox.errors import Conflict, NotFound, ValidationFailed
from inbox.demo.fake_meta import feed_comment_payload, messenger_message_payload
from inbox.models import Agent, Conversation
from inbox.models import view_count as model_ddl
from inbox.services import conversations as conversation_service
from inbox.services import view_counts
from tests import factories
from tests.conftest import ROOT
from tests.helpers import bearer, post_meta

STATUSES = ("open", "pending", "snoozed", "resolved")


def _truth(session: Any, agent: Agent, params: dict[str, Any]) -> dict[str, int]:
    """COUNT over the conversations with the listing's own filters: the reference."""
    conditions = conversation_service._filters(session, agent, params, include_assignee=False)
    row = session.execute(select(
        func.count(),
        func.count().filter(Conversation.assignee_id == agent.id),
        func.count().filter(Conversation.assignee_id.is_(None)),
    ).select_from(Conversation).where(*conditions)).one()
    return {"all": row[0], "mine": row[1], "unassigned": row[2]}


def _per_key_drift(session: Any) -> list[Any]:
    """Keys whose base + deltas differ from a GROUP BY over the conversations (empty when exact)."""
    return list(session.execute(text("""
        WITH counted AS (
            SELECT status, brand_id, channel_id, team_id, assignee_id, kind, sum(n) AS n FROM (
                SELECT status, brand_id, channel_id, team_id, assignee_id, kind, n FROM conversation_counts
                UNION ALL
                SELECT status, brand_id, channel_id, team_id, assignee_id, kind, n FROM conversation_count_deltas
            ) AS u GROUP BY 1, 2, 3, 4, 5, 6),
        truth AS (
            SELECT status, brand_id, channel_id, coalesce(team_id, 0) AS team_id,
                   coalesce(assignee_id, 0) AS assignee_id, kind, count(*) AS n
            FROM conversations GROUP BY 1, 2, 3, 4, 5, 6)
        SELECT c.status, c.brand_id, c.team_id, c.assignee_id, c.n, t.n FROM counted c LEFT JOIN truth t
            ON t.status = c.status AND t.brand_id = c.brand_id AND t.channel_id = c.channel_id
            AND t.team_id = c.team_id AND t.assignee_id = c.assignee_id AND t.kind = c.kind
        WHERE t.n IS NULL AND c.n <> 0 OR t.n <> c.n
        UNION ALL
        SELECT t.status, t.brand_id, t.team_id, t.assignee_id, NULL, t.n FROM truth t WHERE NOT EXISTS (
            SELECT 1 FROM counted c WHERE t.status = c.status AND t.brand_id = c.brand_id
            AND t.channel_id = c.channel_id AND t.team_id = c.team_id AND t.assignee_id = c.assignee_id
            AND t.kind = c.kind)""")).all())


def _views(world: factories.World, extra_team_id: int | None) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = [{}, {"brand_id": world.brand_id}, {"brand_id": world.other_brand_id},
                                   {"team_id": world.team_id}, {"team_id": world.other_team_id},
                                   {"channel_id": world.page_channel_id}, {"kind": "comment"},
                                   {"channel_kind": "facebook_page"}, {"channel_kind": "api"},
                                   {"status": "open", "brand_id": world.brand_id, "team_id": world.team_id},
                                   {"status": "open", "kind": "dm", "channel_id": world.page_channel_id},
                                   {"status": "open", "assignee": "me", "sort": "newest", "limit": 5}]
    views += [{"status": s} for s in STATUSES]
    if extra_team_id is not None:
        views.append({"team_id": extra_team_id, "status": "open"})
    return views


def _check(app: Any, world: factories.World, extra_team_id: int | None = None, step: str = "") -> None:
    with app.app_context():
        session = db.new_session()
        try:
            assert _per_key_drift(session) == [], step
            for email in (world.admin, world.supervisor, world.agent, world.agent2, world.outsider):
                agent = session.execute(select(Agent).where(Agent.email == email)).scalar_one()
                for params in _views(world, extra_team_id):
                    assert view_counts.covered(params), params
                    got = view_counts.counts_for(session, agent, params)
                    assert got == _truth(session, agent, params), (step, email, params)
        finally:
            session.close()


def test_counts_exact_after_every_change(app, client, world, token_for, jobs_done):
    """Random ingest (DMs, comments, two brands), claims, assignments, status changes, snoozes, resolves,
    handoffs, team changes, a deleted team, raw deletes and brand moves: after each step the counters equal a
    COUNT over the conversations for every view and every kind of agent, through the service and the API."""
    rng = random.Random(20261122)
    tokens = {email: token_for(email) for email in (world.admin, world.supervisor, world.agent, world.agent2)}
    with app.app_context():
        extra_team_id = factories.make_team("Temporary", (world.brand_id,)).id
        db.session.commit()
    teams = [world.team_id, world.other_team_id, extra_team_id, None]
    agent_ids = [world.agent_ids[e] for e in (world.agent, world.agent2, world.supervisor)] + [None]
    psid = 0
    done: set[str] = set()

    def ids() -> list[int]:
        with app.app_context():
            return list(db.session.execute(select(Conversation.id).order_by(Conversation.id)).scalars())

    for step in range(70):
        existing = ids()
        action = "ingest" if len(existing) < 4 else rng.choice(
            ["ingest", "ingest", "claim", "assign", "status", "status", "resolve", "handoff", "team", "delete",
             "move_brand", "reply"] + (["delete_team"] * 4 if step > 50 and extra_team_id in teams else []))
        token = tokens[rng.choice(list(tokens))]
        cid = rng.choice(existing) if existing else None
        url = f"/api/v1/conversations/{cid}"
        if action == "ingest":
            psid += 1
            page = rng.choice([factories.PAGE_ID, factories.OTHER_PAGE_ID])
            if rng.random() < 0.3:
                payload = feed_comment_payload(page, f"{page}_{psid % 3}", f"c{psid}", f"u{psid}", "Zoé", "Joli")
            else:
                payload = messenger_message_payload(page, f"psid-{psid % 9}-{rng.randrange(3)}", f"bonjour {psid}")
            assert post_meta(client, payload).status_code == 200
            jobs_done()
        elif action == "claim":
            client.post(f"{url}/claim", headers=bearer(token))
        elif action == "assign":
            client.patch(url, json={"assignee_id": rng.choice(agent_ids)}, headers=bearer(tokens[world.supervisor]))
        elif action == "status":
            status = rng.choice(STATUSES)
            body: dict[str, Any] = {"status": status}
            if status == "snoozed":
                body["snoozed_until"] = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
            client.patch(url, json=body, headers=bearer(token))
        elif action == "resolve":
            client.post(f"{url}/resolve", json={}, headers=bearer(token))
        elif action == "handoff":
            client.post(f"{url}/handoff", json={"team_id": rng.choice(teams[:3]), "note": "SAV please"},
                        headers=bearer(tokens[world.supervisor]))
        elif action == "team":
            client.patch(url, json={"team_id": rng.choice(teams)}, headers=bearer(tokens[world.admin]))
        elif action == "reply":
            client.post(f"{url}/messages", json={"text": "on regarde", "kind": "note"}, headers=bearer(token))
        elif action == "delete":  # no API deletes conversations: any other code path must be counted too
            with app.app_context():
                db.session.execute(text("DELETE FROM conversations WHERE id = :id"), {"id": cid})
                db.session.commit()
        elif action == "move_brand":  # a raw UPDATE of several conversations at once
            with app.app_context():
                db.session.execute(text(
                    "UPDATE conversations SET brand_id = :b, channel_id = :c, assignee_id = NULL WHERE id IN "
                    "(SELECT id FROM conversations ORDER BY id DESC LIMIT 2)"),
                    {"b": world.other_brand_id, "c": world.other_page_channel_id})
                db.session.commit()
        elif action == "delete_team":  # foreign key ON DELETE SET NULL
            deleted = client.delete(f"/api/v1/teams/{extra_team_id}", headers=bearer(tokens[world.admin]))
            assert deleted.status_code == 204
            teams.remove(extra_team_id)
        jobs_done()
        done.add(action)
        _check(app, world, extra_team_id, f"step {step}: {action} {cid}")
        if step % 10 == 0:  # and what the console receives
            page = client.get("/api/v1/conversations", query_string={"status": "open", "limit": 1},
                              headers=bearer(tokens[world.agent])).get_json()
            with app.app_context():
                agent = db.session.get(Agent, world.agent_ids[world.agent])
                assert page["counts"] == _truth(db.session, agent, {"status": "open"})
    assert done >= {"ingest", "claim", "assign", "status", "resolve", "handoff", "team", "delete", "move_brand",
                    "delete_team"}, done
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Conversation)).scalar() >= 3
        view_counts.compact(db.session)
        db.session.commit()
        assert db.session.execute(text("SELECT count(*) FROM conversation_count_deltas")).scalar() == 0
    _check(app, world, None, "after compaction")


def test_uncovered_filters_fall_back_to_counting(app, client, world, token_for, jobs_done):
    post_meta(client, messenger_message_payload(factories.PAGE_ID, "psid-x", "remboursement svp"))
    post_meta(client, messenger_message_payload(factories.PAGE_ID, "psid-y", "hello"))
    jobs_done()
    with app.app_context():
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        for params in ({"q": "rembourse"}, {"label": "vip"}, {"priority": "urgent"}, {"sla": "due"},
                       {"contact_id": 1}, {"team_id": 0}, {"brand_id": -1}, {"kind": ""}):
            assert not view_counts.covered(params)
            assert conversation_service.view_counts(db.session, agent, params) == _truth(db.session, agent, params)
        assert conversation_service.view_counts(db.session, agent, {"q": "rembourse"})["all"] == 1
        assert view_counts.covered({"status": "open", "q": None, "label": "", "cursor": None, "assignee": "none"})


def test_compaction_folds_deltas_and_keeps_counts(app, client, world, token_for, jobs_done):
    from inbox.background import BACKGROUND_LOCK

    token = token_for(world.supervisor)
    with BACKGROUND_LOCK:  # the reconciler would compact under our feet
        for i in range(6):
            post_meta(client, messenger_message_payload(factories.PAGE_ID, f"psid-{i}", f"message {i}"))
        jobs_done()  # BACKGROUND_LOCK is re-entrant: waiting for the jobs while holding it is fine
        with app.app_context():
            ids = list(db.session.execute(select(Conversation.id).order_by(Conversation.id)).scalars())
        for cid in ids[:3]:
            client.patch(f"/api/v1/conversations/{cid}", json={"status": "resolved"}, headers=bearer(token))
        with app.app_context():
            session = db.session
            agent = session.get(Agent, world.agent_ids[world.agent])
            deltas = session.execute(text("SELECT count(*) FROM conversation_count_deltas")).scalar()
            assert deltas >= 1 + 2 * 3  # the inserts (one row per statement on PostgreSQL) and -1/+1 per change
            before = {s: view_counts.counts_for(session, agent, {"status": s}) for s in STATUSES}
            assert before["open"]["all"] == 3 and before["resolved"]["all"] == 3
            assert view_counts.compact(session) == 2  # two keys: open and resolved
            session.commit()
            assert session.execute(text("SELECT count(*) FROM conversation_count_deltas")).scalar() == 0
            base = session.execute(text("SELECT status, n FROM conversation_counts ORDER BY status")).all()
            assert [tuple(r) for r in base] == [("open", 3), ("resolved", 3)]
            assert {s: view_counts.counts_for(session, agent, {"status": s}) for s in STATUSES} == before
            # every open conversation resolved: the open key's base row goes once it reaches 0
            session.execute(text("UPDATE conversations SET status = 'resolved' WHERE status = 'open'"))
            view_counts.compact(session)
            session.commit()
            base = session.execute(text("SELECT status, n FROM conversation_counts ORDER BY status")).all()
            assert [tuple(r) for r in base] == [("resolved", 6)]
            assert view_counts.compact(session) == 0  # nothing to fold
            # rebuild (after a bulk load that bypassed the triggers) gives the same base
            session.execute(text("DELETE FROM conversation_counts"))
            view_counts.rebuild(session)
            session.commit()
            assert [tuple(r) for r in session.execute(
                text("SELECT status, n FROM conversation_counts ORDER BY status")).all()] == [("resolved", 6)]
            assert _per_key_drift(session) == []


def _load_migration() -> Any:
    path = next((ROOT / "migrations" / "versions").glob("*_0007_view_counts.py"))
    spec = importlib.util.spec_from_file_location("migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_triggers_are_the_models_triggers(app):
    """Migration 0007 carries a frozen copy of the trigger DDL that create_all uses: they must agree (a change
    to the triggers needs a new migration), and the migrated database has them."""
    migration = _load_migration()
    assert migration.POSTGRESQL_TRIGGERS == model_ddl.POSTGRESQL_TRIGGERS
    assert migration.SQLITE_TRIGGERS == model_ddl.SQLITE_TRIGGERS
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            names = connection.execute(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'conversations'::regclass "
                                            "AND NOT tgisinternal")).scalars()
        else:
            names = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                            "AND tbl_name = 'conversations'")).scalars()
        assert {n for n in names if n.startswith("conversation_counts_")} >= {
            "conversation_counts_insert", "conversation_counts_update", "conversation_counts_delete"}


def test_create_all_gets_the_triggers(app, tmp_path):
    """Schemas built with metadata.create_all (not migrations) count too."""
    from sqlalchemy import create_engine

    from inbox.models import Base

    if db.dialect == "postgresql":
        schema = f"create_all_{int(time.time() * 1000)}"
        with db.engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        # public stays on the path for pg_trgm's operator classes; the new tables go to the first schema
        engine = create_engine(db.engine.url, connect_args={"options": f"-csearch_path={schema},public"})
    else:
        schema = None
        engine = create_engine(f"sqlite:///{tmp_path / 'create_all.db'}")
    try:
        Base.metadata.create_all(engine, checkfirst=False)
        with engine.begin() as connection:
            now = "2026-11-22 10:00:00"
            connection.execute(text("INSERT INTO brands (id, name, created_at, updated_at) VALUES (1, 'b', :t, :t)"),
                               {"t": now})
            connection.execute(text(
                "INSERT INTO channels (id, brand_id, kind, name, external_id, config, credentials_encrypted, status, "
                "created_at, updated_at) VALUES (1, 1, 'api', 'c', 'x', '{}', '', 'active', :t, :t)"), {"t": now})
            connection.execute(text("INSERT INTO contacts (id, created_at, updated_at) VALUES (1, :t, :t)"), {"t": now})
            for i in range(3):
                connection.execute(text(
                    "INSERT INTO conversations (kind, status, priority, brand_id, channel_id, contact_id, thread_key, "
                    "extra, created_at, updated_at) VALUES ('dm', 'open', 1, 1, 1, 1, :k, '{}', :t, :t)"),
                    {"k": f"t{i}", "t": now})
            connection.execute(text("UPDATE conversations SET status = 'resolved' WHERE thread_key = 't0'"))
            connection.execute(text("DELETE FROM conversations WHERE thread_key = 't1'"))
            rows = connection.execute(text(
                "SELECT status, sum(n) FROM conversation_count_deltas GROUP BY status HAVING sum(n) <> 0 "
                "ORDER BY status")).all()
        assert [tuple(r) for r in rows] == [("open", 1), ("resolved", 1)]
        Base.metadata.drop_all(engine, checkfirst=False)
    finally:
        engine.dispose()
        if schema:
            with db.engine.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def test_concurrent_changes_stay_exact_postgresql(app, client, world, token_for, jobs_done):
    """Threads claim, assign, change status and team, insert and delete conversations at once while another
    thread compacts in a loop; a reader checks in REPEATABLE READ snapshots that the counters equal COUNT(*)
    in the same snapshot, and the totals are exact at the end."""
    if db.dialect != "postgresql":
        pytest.skip("concurrency of the counters is a PostgreSQL matter (SQLite has one writer)")
    for i in range(24):
        page = factories.PAGE_ID if i % 3 else factories.OTHER_PAGE_ID
        post_meta(client, messenger_message_payload(page, f"psid-{i}", f"bonjour {i}"))
    jobs_done()
    with app.app_context():
        ids = list(db.session.execute(select(Conversation.id)).scalars())
        agents = {e: db.session.get(Agent, world.agent_ids[e]) for e in (world.agent, world.agent2, world.supervisor)}
        db.session.expunge_all()
    stop = threading.Event()
    errors: list[BaseException] = []
    mismatches: list[Any] = []
    checked = [0]

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        email = list(agents)[seed % len(agents)]
        with app.app_context():
            try:
                for _ in range(40):
                    session = db.new_session()
                    try:
                        agent = session.get(Agent, agents[email].id)
                        cid = rng.choice(ids)
                        action = rng.random()
                        try:
                            if action < 0.25:
                                conversation_service.claim(session, agent, cid)
                            elif action < 0.5:
                                conversation_service.update_conversation(
                                    session, session.get(Agent, agents[world.supervisor].id), cid,
                                    {"status": rng.choice(["open", "pending", "resolved"]),
                                     "assignee_id": rng.choice([None, agents[world.agent].id]),
                                     "team_id": rng.choice([None, world.team_id, world.other_team_id])})
                            elif action < 0.7:  # a conditional UPDATE touching several rows, as claims do
                                session.execute(text(
                                    "UPDATE conversations SET assignee_id = NULL, status = 'open' "
                                    "WHERE id IN (SELECT id FROM conversations ORDER BY random() LIMIT 3)"))
                            elif action < 0.85:  # a multi-row insert, as ingest does
                                session.execute(text(
                                    "INSERT INTO conversations (kind, status, priority, brand_id, channel_id, "
                                    "contact_id, team_id, thread_key, extra, created_at, updated_at) "
                                    "SELECT kind, 'open', 1, brand_id, channel_id, contact_id, team_id, "
                                    "thread_key || '-' || :tag || '-' || g, '{}', now(), now() "
                                    "FROM conversations, generate_series(1, 2) g WHERE id = :id "
                                    "ON CONFLICT DO NOTHING"), {"tag": f"{seed}-{rng.random()}", "id": cid})
                            else:
                                session.execute(text(
                                    "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations "
                                    "WHERE thread_key LIKE '%-%-%' ORDER BY random() LIMIT 1)"))
                            session.commit()
                        except (Conflict, NotFound, ValidationFailed):  # taken, deleted, not of that brand
                            session.rollback()
                        except DBAPIError as exc:  # two writers' multi-row updates may deadlock: one retries
                            session.rollback()
                            if "deadlock" not in str(exc):
                                raise
                    finally:
                        session.close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    def compactor() -> None:
        with app.app_context():
            while not stop.is_set():
                with db.transaction() as session:
                    view_counts.compact(session)
                time.sleep(0.005)

    def reader() -> None:
        with app.app_context():
            while not stop.is_set():
                session = db.new_session()
                try:
                    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                    admin = session.get(Agent, world.agent_ids[world.admin])
                    for params in ({}, {"status": "open"}, {"brand_id": world.brand_id, "team_id": world.team_id}):
                        got, want = view_counts.counts_for(session, admin, params), _truth(session, admin, params)
                        checked[0] += 1
                        if got != want:
                            mismatches.append((params, got, want))
                    session.rollback()
                finally:
                    session.close()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(6)]
    helpers = [threading.Thread(target=compactor), threading.Thread(target=reader)]
    for thread in threads + helpers:
        thread.start()
    for thread in threads:
        thread.join(120)
    stop.set()
    for thread in helpers:
        thread.join(30)
    assert errors == []
    assert mismatches == [] and checked[0] > 0
    _check(app, world, None, "after the concurrent run")
    with app.app_context():
        view_counts.compact(db.session)
        db.session.commit()
    _check(app, world, None, "after the last compaction")


def test_migration_backfills_existing_conversations(app, tmp_path):
    """Upgrading a database that already has conversations (0006 -> 0007) counts them."""
    import uuid

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    if db.dialect == "postgresql":
        import psycopg

        from tests.services import postgres_admin_url

        name = f"relais_backfill_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = postgres_admin_url(database=name, driver="postgresql+psycopg")
    else:
        name, url = None, f"sqlite:///{tmp_path / 'backfill.db'}"
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    engine = create_engine(url)
    try:
        command.upgrade(cfg, "0006_search_indexes")
        with engine.begin() as connection:
            t = {"t": "2026-11-22 10:00:00"}
            connection.execute(text("INSERT INTO brands (id, name, created_at, updated_at) VALUES (1, 'b', :t, :t)"), t)
            connection.execute(text(
                "INSERT INTO channels (id, brand_id, kind, name, external_id, config, credentials_encrypted, status, "
                "created_at, updated_at) VALUES (1, 1, 'api', 'c', 'x', '{}', '', 'active', :t, :t)"), t)
            connection.execute(text("INSERT INTO contacts (id, created_at, updated_at) VALUES (1, :t, :t)"), t)
            for i, status in enumerate(("open", "open", "pending", "resolved", "open")):
                connection.execute(text(
                    "INSERT INTO conversations (kind, status, priority, brand_id, channel_id, contact_id, thread_key, "
                    "extra, created_at, updated_at) VALUES ('dm', :s, 1, 1, 1, 1, :k, '{}', :t, :t)"),
                    {"s": status, "k": f"t{i}", **t})
        command.upgrade(cfg, "head")
        with engine.begin() as connection:
            rows = connection.execute(text("SELECT status, team_id, assignee_id, n FROM conversation_counts "
                                           "ORDER BY status")).all()
            assert [tuple(r) for r in rows] == [("open", 0, 0, 3), ("pending", 0, 0, 1), ("resolved", 0, 0, 1)]
            connection.execute(text("UPDATE conversations SET status = 'resolved' WHERE thread_key = 't0'"))
            assert connection.execute(text("SELECT sum(n) FROM conversation_count_deltas WHERE status = 'resolved'"
                                           )).scalar() == 1
        command.downgrade(cfg, "0006_search_indexes")  # and back down cleanly
    finally:
        engine.dispose()
        if name:
            with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
