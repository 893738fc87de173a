"""Shared fixtures: a database file in tmp_path and the CLI as a user runs it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipectl.cli import app
from pipectl.store import Database
from tests.backends import is_url, new_schema, pg_dump, pg_rows


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# Modules whose tests run against both backends: the scheduler, flows, limits, replies,
# crashes and inbound sync.
BOTH_BACKENDS = {
    "test_tick",
    "test_crash",
    "test_replies",
    "test_retries",
    "test_send_windows",
    "test_operator",
    "test_suppressions",
    "test_sync_e2e",
    "test_inbound_store",
    "test_status",
    "test_loops",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "backend" in metafunc.fixturenames and module in BOTH_BACKENDS:
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db(tmp_path: Path, backend: str):
    """The database a test works on: a file in tmp_path, or a fresh PostgreSQL schema (a URL)."""
    if backend == "sqlite":
        yield tmp_path / "pipectl.db"
    else:
        yield from new_schema()


@pytest.fixture
def cli(db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run `pipectl --db <tmp db> ARGS...` in-process; returns exit code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, input: str | None = None) -> Run:
        result = CliRunner().invoke(app, ["--db", str(db), *map(str, args)], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


def rows(db: Path | str, sql: str, *params) -> list[dict]:
    """Query the database directly, as a user with sqlite3 (or psql) would."""
    if is_url(db):
        return pg_rows(str(db), sql, params)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def dump(db: Path | str) -> str:
    """The whole database as SQL text, to show that a failed command changed nothing."""
    if is_url(db):
        return pg_dump(str(db))
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


# A real Dovecot for the inbound tests: one server per session, a fresh mailbox per test.
@pytest.fixture(autouse=True)
def one_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every in-process test enforces the one-writer rule: a write from another thread fails."""
    monkeypatch.setattr(Database, "check_writer", True)


from tests.imap_server import dovecot, mailbox  # noqa: E402, F401
