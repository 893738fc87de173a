from __future__ import annotations

from pipectl.store import Store

from .conftest import rows
from .scenario import ONE_EMAIL, T0, setup

SEED_TABLES = {
    "pipelines",
    "pipeline_stages",
    "pipeline_stage_actions",
    "leads",
    "lead_stages",
    "lead_stage_actions",
}


def test_init_creates_the_seed_tables_and_is_idempotent(cli, db):
    db.unlink()  # the fixture's copy of a migrated database: init makes a new one here
    first = cli("init")
    second = cli("init")
    assert first.exit_code == second.exit_code == 0
    names = {r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names >= SEED_TABLES
    assert rows(db, "PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_due_rows_are_found_through_the_partial_index(db):
    store = Store(db)
    plan = store.database.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM lead_stage_actions "
        "WHERE status = 'pending' AND perform_at <= ? ORDER BY perform_at",
        ("2027-01-01T00:00:00Z",),
    ).fetchall()
    assert "lsa_pending" in " ".join(r["detail"] for r in plan)


def test_missing_directory_is_a_clear_error(tmp_path, cli):
    from typer.testing import CliRunner

    from pipectl.cli import app

    result = CliRunner().invoke(app, ["--db", str(tmp_path / "no" / "x.db"), "init"])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_parts_reach_each_other_only_through_public_verbs():
    """A part calling another's private helper ties them together: each may change alone."""
    import re
    from pathlib import Path

    import pipectl.store

    package = Path(pipectl.store.__file__).parent
    crossing = re.compile(r"\.store\.[a-z_]+\._[a-z]")  # part names have underscores too
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(package.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if crossing.search(line)
    ]
    assert found == []


def test_nothing_outside_the_store_touches_the_connection():
    """The seam a second backend plugs into: SQL and the connection stay in pipectl/store/."""
    import re
    from pathlib import Path

    import pipectl

    root = Path(pipectl.__file__).parent
    touching = re.compile(r"\.conn\.execute|\.database\.|store\.conn\b|\bsqlite3\.connect")
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if "store" not in path.relative_to(root).parts[:1]
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if touching.search(line)
    ]
    assert found == []


def test_a_write_from_a_worker_thread_is_refused_when_checked(db):
    """Worker threads send; the thread that opened the store is the one writer."""
    import threading

    store = Store(db)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with store.database.transaction() as conn:
                conn.execute("INSERT INTO meta (key, value) VALUES ('from', 'worker')")
        except AssertionError as e:
            errors.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert [str(e) for e in errors] == ["only the tick thread writes"]
    assert rows(db, "SELECT key FROM meta WHERE key = 'from'") == []
    store.close()


def test_the_store_takes_plain_values_from_the_scheduler():
    """Data flows one way: the claim reads a Ledger of plain values, never the tick's objects."""
    from pathlib import Path

    import pipectl.store
    from pipectl.scheduler.dispatch import Dispatch

    from .unit.sends import claimed_send

    package = Path(pipectl.store.__file__).parent
    assert [p.name for p in package.glob("*.py") if "Dispatch" in p.read_text()] == []

    dispatch = Dispatch(workers=2, ahead=3)
    dispatch.update([claimed_send(1, account=7)], [], [])
    ledger = dispatch.ledger()
    assert ledger.capacity == 2 * 3 - 1 and dict(ledger.held) == {(7, "email"): 1}
    assert [send.id for send in ledger.waiting] == [1]
    assert ledger.room(7, concurrency=1) == 1 * 3 - 1
    assert dispatch.ledger(with_waiting=False).waiting == ()


def test_the_claim_hands_back_typed_sends_read_from_the_database(cli, db, tmp_path):
    """Each claimed send is a ClaimedSend whose named fields are its action's, lead's and
    account's values, fenced by the claim's token."""
    import json

    from pipectl.scheduler.dispatch import Dispatch
    from pipectl.store.rows import ClaimedSend

    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 2})
    store = Store(db)
    try:
        assert store.scheduler.admit_queued(T0) == 2
        claim = store.scheduler.claim_due(T0, "token-1", Dispatch(workers=4).ledger())
    finally:
        store.close()
    assert len(claim.sends) == 2
    expected = rows(
        db,
        "SELECT a.id, a.lead_id, a.account_id, a.enrollment_id, a.lead_stage_id, a.params,"
        " a.attempts, a.perform_at, a.claim_token, a.status, l.email, l.first_name, l.fields"
        " FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id"
        " WHERE a.type = 'email' ORDER BY a.id",
    )
    for send, row in zip(claim.sends, expected, strict=True):
        assert isinstance(send, ClaimedSend)
        assert (send.id, send.lead_id, send.account_id) == (
            row["id"],
            row["lead_id"],
            row["account_id"],
        )
        assert (send.enrollment_id, send.lead_stage_id) == (
            row["enrollment_id"],
            row["lead_stage_id"],
        )
        assert send.params == json.loads(row["params"])
        assert (row["status"], row["claim_token"], send.claim_token) == (
            "running",
            "token-1",
            "token-1",
        )
        assert send.attempt == row["attempts"] + 1 == 1  # started later: then counted
        assert (send.email, send.first_name) == (row["email"], row["first_name"])
        assert json.loads(send.fields or "{}") == json.loads(row["fields"])
        assert (send.account_key, send.channel, send.perform_at) == (
            "acme",
            "email",
            row["perform_at"],
        )
