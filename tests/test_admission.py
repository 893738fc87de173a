"""Admission in batches: FIFO by queued_at, each account's active_leads, the leads' status and
the report's counters, across batch boundaries (the batch lowered by PIPECTL_ADMIT_BATCH)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipectl.store import Store

from .conftest import rows
from .scenario import T0, outbox, setup, write_csv
from .test_report import test_counters_kept_by_triggers_equal_a_recount_from_the_rows as recount

DRIP = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - wait: 1d
          - move: won
      - {key: won, outcome: won}
  - key: beta-drip
    account: beta
    name: Beta drip
    stages:
      - key: intro
        actions:
          - wait: 1h
          - email: {subject: "Hi", body: "Hello"}
"""
DAY_LATER = "2027-03-02T14:00:00Z"


def tick(cli, now: str) -> dict:
    result = cli("tick", "--now", now, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def admitted_order(db: Path, account: str) -> list[int]:
    """Enrollment ids in the order they entered their first stage (lead_stages ids)."""
    return [
        r["enrollment_id"]
        for r in rows(
            db,
            "SELECT ls.enrollment_id FROM lead_stages ls JOIN enrollments e"
            " ON e.id = ls.enrollment_id JOIN accounts a ON a.id = e.account_id"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " WHERE a.key = ? AND s.key = 'intro' ORDER BY ls.id",
            account,
        )
    ]


def by_status(db: Path, table: str, account: str) -> dict[str, int]:
    return {
        r["status"]: r["n"]
        for r in rows(
            db,
            f"SELECT t.status, count(*) AS n FROM {table} t JOIN accounts a"
            " ON a.id = t.account_id WHERE a.key = ? GROUP BY t.status",
            account,
        )
    }


def test_batches_admit_oldest_first_within_each_accounts_active_leads(
    cli, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPECTL_ADMIT_BATCH", "4")
    setup(
        cli,
        tmp_path,
        DRIP,
        {("acme", "drip"): 23, ("beta", "beta-drip"): 9},
        acme_extra="    limits: {active_leads: 10}",
    )
    ids = [
        r["id"]
        for r in rows(
            db,
            "SELECT e.id FROM enrollments e JOIN accounts a ON a.id = e.account_id"
            " WHERE a.key = 'acme' ORDER BY e.id",
        )
    ]
    # The last three were queued first (as a re-enrolled lead is queued by its own time).
    early = ids[-3:]
    store = Store(db)
    with store.database.transaction() as conn:
        conn.execute(
            f"UPDATE enrollments SET queued_at = '2000-01-01T00:00:00Z'"
            f" WHERE id IN ({', '.join(map(str, early))})"
        )
    store.close()
    fifo = early + ids[:-3]

    first = tick(cli, T0)
    assert first["admitted"] == 10 + 9
    assert admitted_order(db, "acme") == fifo[:10]  # across batches of 4, 4 and 2
    assert by_status(db, "enrollments", "acme") == {"active": 10, "queued": 13}
    assert by_status(db, "leads", "acme") == {"active": 10, "queued": 13}
    assert by_status(db, "enrollments", "beta") == {"active": 9}
    assert by_status(db, "leads", "beta") == {"active": 9}
    assert len(outbox(tmp_path)) == 10  # acme's first emails; beta's leads wait an hour first
    actions = rows(
        db,
        "SELECT enrollment_id, sequence_number, status, perform_at FROM lead_stage_actions"
        " WHERE account_id = (SELECT id FROM accounts WHERE key = 'beta')"
        " ORDER BY enrollment_id, sequence_number",
    )
    assert len(actions) == 2 * 9
    assert {(a["status"], a["perform_at"]) for a in actions[0::2]} == {
        ("pending", "2027-03-01T15:00:00Z")
    }
    assert {(a["status"], a["perform_at"]) for a in actions[1::2]} == {("waiting", None)}

    later = tick(cli, DAY_LATER)  # the first ten are won: the next ten take their places
    assert later["admitted"] == 10
    assert admitted_order(db, "acme") == fifo[:20]
    assert by_status(db, "enrollments", "acme") == {"won": 10, "active": 10, "queued": 3}
    assert by_status(db, "leads", "acme") == {"won": 10, "active": 10, "queued": 3}


def test_report_after_a_batched_admission_equals_a_recount_from_the_rows(
    cli, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("PIPECTL_ADMIT_BATCH", "7")
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 40, ("beta", "beta-drip"): 12})
    assert tick(cli, T0)["admitted"] == 52
    assert tick(cli, DAY_LATER)["done"] > 0  # acme's leads move to won: entered, exited
    report = json.loads(cli("report", "--json").stdout)
    figures = {p["pipeline"]: p for p in report["pipelines"]}
    assert figures["drip"]["enrolled"] == 40 and figures["beta-drip"]["enrolled"] == 12
    stages = {s["stage"]: s for s in figures["drip"]["stages"]}
    assert (stages["intro"]["entered"], stages["won"]["entered"]) == (40, 40)
    if backend == "sqlite":  # the recount is the SQLite migration's backfill
        recount(None, db)  # every counter equals the migration's recount from the rows


def test_admission_is_set_based_its_statements_do_not_grow_with_the_leads(
    cli, db: Path, tmp_path: Path, backend: str
) -> None:
    """A batch of a thousand leads takes a handful of statements, not a few per lead."""
    if backend != "sqlite":
        pytest.skip("counts SQLite's statements (its trace callback)")
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1000})
    store = Store(db)
    statements: list[str] = []
    store.database.conn.set_trace_callback(statements.append)
    try:
        assert store.scheduler.admit_queued(T0) == 1000
    finally:
        store.close()
    assert len(statements) < 40, len(statements)
    assert rows(db, "SELECT count(*) AS n FROM lead_stage_actions")[0]["n"] == 3000


def test_a_new_lead_stage_of_a_batch_belongs_to_its_own_lead(cli, db: Path, tmp_path: Path) -> None:
    """Every admitted enrollment has one stage row, of its own lead, and its actions point at
    that row (the batch joins them by enrollment)."""
    csv = write_csv(tmp_path, "more.csv", 30, domain="acme.example")
    setup(cli, tmp_path, DRIP, {})
    assert cli("leads", "import", csv, "--account", "acme", "--pipeline", "drip").exit_code == 0
    tick(cli, T0)
    mismatched = rows(
        db,
        "SELECT a.id FROM lead_stage_actions a JOIN lead_stages ls ON ls.id = a.lead_stage_id"
        " JOIN enrollments e ON e.id = ls.enrollment_id"
        " WHERE ls.lead_id != e.lead_id OR a.lead_id != e.lead_id"
        " OR a.enrollment_id != e.id",
    )
    assert mismatched == []
    assert rows(db, "SELECT count(*) AS n FROM lead_stages")[0]["n"] == 30


def test_with_nothing_queued_admission_probes_an_index_and_scans_no_enrollments(
    cli, db: Path, tmp_path: Path, backend: str
) -> None:
    """An idle tick stays flat with a million active leads: its queue check seeks per account."""
    if backend != "sqlite":
        pytest.skip("counts SQLite's statements (its trace callback)")
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 30, ("beta", "beta-drip"): 5})
    tick(cli, T0)
    store = Store(db)
    statements: list[str] = []
    store.database.conn.set_trace_callback(statements.append)
    try:
        assert store.scheduler.admit_queued(T0) == 0
        store.database.conn.set_trace_callback(None)
        plans = [
            row["detail"]
            for sql in statements
            if "enrollments" in sql
            for row in store.database.conn.execute(f"EXPLAIN QUERY PLAN {sql}")
        ]
    finally:
        store.close()
    partial = ("enrollments_queued", "enrollments_fifo")  # indexes of queued rows only
    scans = [p for p in plans if p.startswith("SCAN e") and not any(i in p for i in partial)]
    assert plans and scans == [], plans
