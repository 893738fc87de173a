"""Migrations bring an existing database along without losing a row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pipectl.statuses import HookEvent
from pipectl.store import Store
from pipectl.store.migrations import MIGRATIONS, RETIRED_INDEXES

from .backends import new_schema
from .conftest import rows


def _database_at_version_1(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    t = "2027-03-01T14:00:00Z"
    conn.executescript(
        f"""
        INSERT INTO accounts (id, key, name, created_at, updated_at) VALUES (1, 'acme', 'Acme', '{t}', '{t}');
        INSERT INTO leads (id, account_id, email, phone, created_at, updated_at)
            VALUES (7, 1, 'ann@example.com', '+12125550100', '{t}', '{t}');
        INSERT INTO replies (id, account_id, lead_id, channel, body, received_at, opt_out, effect, created_at)
            VALUES (3, 1, 7, 'email', 'Sounds good', '{t}', 0, 'recorded', '{t}'),
                   (4, 1, 7, 'sms', 'STOP', '{t}', 1, 'opt-out', '{t}');
        """  # noqa: E501
    )
    conn.close()


def test_inbound_migration_keeps_every_reply_and_fills_kind_and_sender(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _database_at_version_1(db)
    Store(db).close()
    got = rows(
        db, "SELECT id, lead_id, channel, sender, kind, source, body FROM replies ORDER BY id"
    )
    assert got == [
        {"id": 3, "lead_id": 7, "channel": "email", "sender": "ann@example.com", "kind": "reply",
         "source": "manual", "body": "Sounds good"},
        {"id": 4, "lead_id": 7, "channel": "sms", "sender": "+12125550100", "kind": "opt_out",
         "source": "manual", "body": "STOP"},
    ]  # fmt: skip
    assert rows(db, "PRAGMA user_version") == [{"user_version": len(MIGRATIONS)}]
    tables = {r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"suppressions", "sync_sources", "sync_cursors"} <= tables


def _database_before_statuses(path: Path) -> list[str]:
    """A database at the version before m010_statuses, with a lead mid-pipeline; its indexes."""
    before = next(i for i, fn in enumerate(MIGRATIONS) if fn.__name__ == "m010_statuses")
    conn = sqlite3.connect(path, isolation_level=None)
    for number, fn in enumerate(MIGRATIONS[:before], start=1):
        conn.execute("BEGIN")
        fn(conn)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    t = "2027-03-01T14:00:00Z"
    conn.executescript(
        f"""
        INSERT INTO accounts (id, key, name, created_at, updated_at) VALUES (1, 'acme', 'Acme', '{t}', '{t}');
        INSERT INTO pipelines (id, account_id, key, name, created_at, updated_at) VALUES (1, 1, 'p', 'P', '{t}', '{t}');
        INSERT INTO pipeline_stages (id, pipeline_id, key, name, position) VALUES (1, 1, 's', 'S', 0);
        INSERT INTO leads (id, account_id, email, status, created_at, updated_at)
            VALUES (7, 1, 'ann@example.com', 'active', '{t}', '{t}'),
                   (8, 1, 'bob@example.com', NULL, '{t}', '{t}');
        INSERT INTO enrollments (id, lead_id, pipeline_id, account_id, status, queued_at)
            VALUES (5, 7, 1, 1, 'active', '{t}');
        INSERT INTO lead_stages (id, lead_id, enrollment_id, pipeline_stage_id, entered_at)
            VALUES (9, 7, 5, 1, '{t}');
        INSERT INTO lead_stage_actions (id, lead_stage_id, lead_id, account_id, enrollment_id,
                sequence_number, type, channel, status, perform_at)
            VALUES (11, 9, 7, 1, 5, 0, 'send_email', 'email', 'pending', '{t}'),
                   (12, 9, 7, 1, 5, 1, 'wait', 'internal', 'waiting', NULL);
        INSERT INTO deliveries (id, account_id, lead_id, lead_stage_action_id, channel, recipient, sent_at)
            VALUES (3, 1, 7, 11, 'email', 'ann@example.com', '{t}');
        """  # noqa: E501
    )
    indexes = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    conn.close()
    return sorted(indexes)


def test_statuses_migration_keeps_triggers_and_views_that_name_the_rebuilt_tables(
    tmp_path: Path,
) -> None:
    """Counters kept by triggers (`pipectl report`) must survive the rebuild, and work."""
    db = tmp_path / "old.db"
    _database_before_statuses(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE done_count (n INTEGER NOT NULL);
        INSERT INTO done_count VALUES (0);
        CREATE TRIGGER count_done AFTER UPDATE OF status ON lead_stage_actions
            WHEN NEW.status = 'done' BEGIN UPDATE done_count SET n = n + 1; END;
        CREATE TRIGGER count_sent AFTER INSERT ON deliveries
            WHEN (SELECT status FROM lead_stage_actions WHERE id = NEW.lead_stage_action_id)
                 = 'done'
            BEGIN UPDATE done_count SET n = n + 10; END;
        CREATE VIEW pending_actions AS
            SELECT id FROM lead_stage_actions WHERE status = 'pending';
        """
    )
    conn.close()
    kinds = "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')"
    report_triggers = [r for r in rows(db, kinds) if r["name"].startswith("report_")]
    assert report_triggers  # m008_report's counters, on the tables m010 rebuilds
    Store(db).close()
    names = rows(db, kinds)
    # m013: admission counts them; m015: the store counts sends
    dropped_later = {"report_enrolled", "report_entered", "report_sent"}
    assert sorted((r["type"], r["name"]) for r in names) == sorted(
        [("trigger", "count_done"), ("trigger", "count_sent"), ("view", "pending_actions")]
        + [(r["type"], r["name"]) for r in report_triggers if r["name"] not in dropped_later]
    )
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE lead_stage_actions SET status = 'done' WHERE id = 11")
    conn.execute(
        "INSERT INTO deliveries (account_id, lead_id, lead_stage_action_id, channel, recipient,"
        " sent_at) VALUES (1, 7, 11, 'email', 'ann@example.com', '2027-03-01T14:01:00Z')"
    )
    assert conn.execute("SELECT n FROM done_count").fetchone()[0] == 11
    assert conn.execute("SELECT count(*) FROM pending_actions").fetchone()[0] == 0
    conn.close()


def test_statuses_migration_keeps_rows_and_indexes_and_refuses_unknown_statuses(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    indexes = _database_before_statuses(db)
    Store(db).close()
    assert rows(db, "SELECT id, status FROM leads ORDER BY id") == [
        {"id": 7, "status": "active"},
        {"id": 8, "status": None},
    ]
    assert rows(db, "SELECT id, lead_id, status FROM enrollments") == [
        {"id": 5, "lead_id": 7, "status": "active"}
    ]
    assert rows(db, "SELECT id, status, perform_at FROM lead_stage_actions ORDER BY id") == [
        {"id": 11, "status": "pending", "perform_at": "2027-03-01T14:00:00Z"},
        {"id": 12, "status": "waiting", "perform_at": None},
    ]
    assert rows(db, "SELECT id, lead_stage_action_id FROM deliveries") == [
        {"id": 3, "lead_stage_action_id": 11}
    ]
    after = rows(db, "SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
    retired = set(RETIRED_INDEXES)  # m016 drops them; later migrations may add more
    assert set(indexes) - retired <= {r["name"] for r in after}
    assert rows(db, "PRAGMA foreign_key_check") == []
    conn = sqlite3.connect(db)
    for statement in (
        "UPDATE lead_stage_actions SET status = 'pendng' WHERE id = 11",
        "UPDATE enrollments SET status = 'done' WHERE id = 5",
        "UPDATE leads SET status = 'running' WHERE id = 8",
    ):
        try:
            conn.execute(statement)
        except sqlite3.IntegrityError as e:
            assert "CHECK constraint failed" in str(e)
        else:
            raise AssertionError(f"accepted: {statement}")
    conn.close()
    store = Store(db)  # foreign keys are on again once the migration is done
    assert store.database.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()


def test_senders_migration_keeps_leads_and_deliveries_and_adds_the_sender_columns(
    tmp_path: Path,
) -> None:
    """A database made before m011_senders, with a lead and a delivery, opened by this code."""
    db = tmp_path / "old.db"
    before = next(i for i, fn in enumerate(MIGRATIONS) if fn.__name__ == "m011_senders")
    _database_at_version_1(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    for number, fn in enumerate(MIGRATIONS[1:before], start=2):
        conn.execute("BEGIN")
        fn(conn)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    conn.close()
    Store(db).close()
    assert rows(db, "SELECT id, email, sender_id FROM leads") == [
        {"id": 7, "email": "ann@example.com", "sender_id": None}
    ]
    columns = {r["name"] for r in rows(db, "PRAGMA table_info(deliveries)")}
    assert {"sender_id", "subject", "thread_references"} <= columns
    tables = {r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"senders", "sender_days"} <= tables
    assert rows(db, "PRAGMA user_version") == [{"user_version": len(MIGRATIONS)}]


def test_admit_counters_migration_drops_two_triggers_and_admission_counts_instead(
    tmp_path: Path,
) -> None:
    """m013: a database from before it, with a lead queued; after it, admitting the lead
    counts it once as enrolled and once as entered (no trigger counts it a second time)."""
    db = tmp_path / "old.db"
    before = next(i for i, fn in enumerate(MIGRATIONS) if fn.__name__ == "m013_admit_counters")
    conn = sqlite3.connect(db, isolation_level=None)
    for number, fn in enumerate(MIGRATIONS[:before], start=1):
        conn.execute("BEGIN")
        fn(conn)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    t = "2027-03-01T14:00:00Z"
    conn.executescript(
        f"""
        INSERT INTO accounts (id, key, name, created_at, updated_at) VALUES (1, 'acme', 'Acme', '{t}', '{t}');
        INSERT INTO pipelines (id, account_id, key, name, created_at, updated_at) VALUES (1, 1, 'p', 'P', '{t}', '{t}');
        INSERT INTO pipeline_stages (id, pipeline_id, key, name, position) VALUES (1, 1, 's', 'S', 0);
        INSERT INTO pipeline_stage_actions (pipeline_stage_id, sequence_number, type, params)
            VALUES (1, 0, 'wait', '{{"seconds": 60}}');
        INSERT INTO leads (id, account_id, email, status, created_at, updated_at)
            VALUES (7, 1, 'ann@example.com', 'queued', '{t}', '{t}');
        INSERT INTO enrollments (id, lead_id, pipeline_id, account_id, status, queued_at)
            VALUES (5, 7, 1, 1, 'queued', '{t}');
        """  # noqa: E501
    )
    conn.close()
    triggers = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'report_%'"
    names = {r["name"] for r in rows(db, triggers)}
    assert {"report_enrolled", "report_entered"} <= names
    store = Store(db)
    try:
        assert store.scheduler.admit_queued("2027-03-01T14:20:00Z") == 1
    finally:
        store.close()
    # m015 (after it) drops the sends' trigger too: the store counts them.
    dropped = {"report_enrolled", "report_entered", "report_sent"}
    assert {r["name"] for r in rows(db, triggers)} == names - dropped
    counts = rows(db, "SELECT metric, slot, stage_id, n FROM report_counts ORDER BY metric")
    assert counts == [
        {"metric": "enrolled", "slot": "2027-03-01T14:15", "stage_id": 0, "n": 1},
        {"metric": "entered", "slot": "2027-03-01T14:15", "stage_id": 1, "n": 1},
    ]
    assert rows(db, "SELECT status FROM leads") == [{"status": "active"}]


def test_hooks_migration_upgrades_a_database_with_leads_and_events_then_flow(
    tmp_path: Path,
) -> None:
    """m012_hooks on a database that holds a lead mid-pipeline: its rows stay, the outbox is
    empty and takes events at once."""
    db = tmp_path / "old.db"
    _database_before_statuses(db)
    before = next(i for i, fn in enumerate(MIGRATIONS) if fn.__name__ == "m012_hooks")
    conn = sqlite3.connect(db, isolation_level=None)
    for number, fn in enumerate(MIGRATIONS[:before], start=1):
        if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
            continue
        conn.execute("BEGIN")
        fn(conn)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    conn.close()
    store = Store(db)
    try:
        assert rows(db, "PRAGMA user_version")[0]["user_version"] == len(MIGRATIONS)
        assert rows(db, "SELECT count(*) AS n FROM hooks")[0]["n"] == 0
        assert rows(db, "SELECT id, status FROM lead_stage_actions ORDER BY id") == [
            {"id": 11, "status": "pending"},
            {"id": 12, "status": "waiting"},
        ]
        with store.database.transaction() as c:
            c.execute(
                "INSERT INTO hooks (url, events, timeout, retry, created_at, updated_at)"
                " VALUES ('http://127.0.0.1:9/in', '[\"failed\"]', 10, '{}', 'x', 'x')"
            )
        store.hooks.forget()
        with store.database.transaction():
            store.hooks.emit(HookEvent.FAILED, 7, "2027-03-01T14:05:00Z", lead_stage_id=9)
        (event,) = rows(db, "SELECT type, status, lead_id, payload FROM hook_events")
        assert (event["type"], event["status"], event["lead_id"]) == ("failed", "pending", 7)
        payload = json.loads(event["payload"])
        assert (payload["account"], payload["pipeline"], payload["stage"]) == ("acme", "p", "s")
        assert payload["lead"]["email"] == "ann@example.com"
    finally:
        store.close()


def test_an_older_postgresql_database_loses_the_indexes_m016_dropped() -> None:
    """PostgreSQL's upgrade is additive except for `RETIRED_INDEXES`: a database made before
    m016 drops them, gains the partial `lsa_performed_at`, and keeps every row."""
    for url in new_schema():
        Store(url).close()
        for sql in (  # as pipectl made it before m016
            "DROP INDEX lsa_performed_at",
            "CREATE INDEX enrollments_queued ON enrollments (account_id, id)"
            " WHERE status = 'queued'",
            "CREATE INDEX lsa_lead ON lead_stage_actions (lead_id)",
            "CREATE INDEX lsa_performed ON lead_stage_actions (performed_at)",
            f"UPDATE meta SET value = '{len(MIGRATIONS) - 1}' WHERE key = 'schema_version'",
        ):
            rows(url, sql)
        Store(url).close()
        indexes = {
            r["indexname"]
            for r in rows(
                url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            )
        }
        assert "lsa_performed_at" in indexes
        assert not indexes & set(RETIRED_INDEXES)
        version = rows(url, "SELECT value FROM meta WHERE key = 'schema_version'")
        assert version == [{"value": str(len(MIGRATIONS))}]
