"""Migrations bring an existing database along without losing a row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipectl.store import Store
from pipectl.store.migrations import MIGRATIONS

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
