"""A due tick's statements stay a small fraction of its sends: claim, start and record are
set-based (on PostgreSQL every statement is a network round trip)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipectl.store import database as database_module
from pipectl.store import postgres

from .conftest import rows
from .scenario import T0, setup

ONE_SEND = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
"""
LEADS = 600
# Here (concurrency 32, 32 workers, through the CLI) about 0.5-1.2 statements a send; before
# the writes were set-based 3.7 on both backends (a delivery, an enrollment and a lead status
# per send, plus each turn's own): 2,244 and 2,211 statements for these 600 sends.
BOUND = 1.5


def count_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement any Database runs from now on, as the backend runs it: SQLite's trace
    (a trigger's start repeats its statement's text: not counted again); on PostgreSQL each
    execute, and each row of an executemany."""
    statements: list[str] = []
    opened = database_module.Database.__init__

    def trace(sql: str) -> None:
        if not statements or statements[-1] != sql:
            statements.append(sql)

    def init(db: Any, path: Any) -> None:
        opened(db, path)
        if not db.postgres:
            db.conn.set_trace_callback(trace)

    execute, executemany = postgres.PgCursor.execute, postgres.PgCursor.executemany

    def pg_execute(cursor: Any, sql: str, params: Any = None) -> Any:
        statements.append(sql)
        return execute(cursor, sql, params)

    def pg_executemany(cursor: Any, sql: str, many: Any) -> Any:
        many = list(many)
        statements.extend([sql] * len(many))
        return executemany(cursor, sql, many)

    monkeypatch.setattr(database_module.Database, "__init__", init)
    monkeypatch.setattr(postgres.PgCursor, "execute", pg_execute)
    monkeypatch.setattr(postgres.PgCursor, "executemany", pg_executemany)
    return statements


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_due_ticks_statements_stay_below_one_and_a_half_per_send(
    cli, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(
        cli,
        tmp_path,
        ONE_SEND,
        {("acme", "drip"): LEADS},
        acme_extra="    limits: {concurrency: 32}",
    )
    admitted = cli("tick", "--now", T0, "--no-sync", "--json", "--max-seconds", "0")
    assert admitted.exit_code == 0, admitted.output
    statements = count_statements(monkeypatch)
    result = cli("tick", "--now", T0, "--no-sync", "--json", "--workers", "32")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sent = rows(db, "SELECT count(*) AS n FROM deliveries")[0]["n"]
    assert summary["done"] == sent == LEADS
    assert rows(db, "SELECT count(*) AS n FROM enrollments WHERE status = 'idle'")[0]["n"] == LEADS
    assert rows(db, "SELECT count(*) AS n FROM leads WHERE status = 'idle'")[0]["n"] == LEADS
    print(f"{len(statements)} statements, {sent} sends")
    assert len(statements) / sent < BOUND, (len(statements), sent)
