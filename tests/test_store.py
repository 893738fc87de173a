from __future__ import annotations

from pipectl.store import Store

from .conftest import rows

SEED_TABLES = {
    "pipelines",
    "pipeline_stages",
    "pipeline_stage_actions",
    "leads",
    "lead_stages",
    "lead_stage_actions",
}


def test_init_creates_the_seed_tables_and_is_idempotent(cli, db):
    first = cli("init")
    second = cli("init")
    assert first.exit_code == second.exit_code == 0
    names = {r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names >= SEED_TABLES
    assert rows(db, "PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_due_rows_are_found_through_the_partial_index(db):
    store = Store(db)
    plan = store.conn.execute(
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


def test_no_two_store_parts_define_the_same_method():
    """Store is made of mixins: a name defined twice would silently shadow the other."""
    seen: dict[str, str] = {}
    for part in Store.__mro__[1:]:
        if part is object:
            continue
        for name, value in vars(part).items():
            if callable(value) and not name.startswith("__"):
                assert name not in seen, f"{name} is in both {seen[name]} and {part.__name__}"
                seen[name] = part.__name__
