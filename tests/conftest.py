"""Shared fixtures: a database file in tmp_path and the CLI as a user runs it."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import typer.testing
from typer.testing import CliRunner

from pipectl.cli import app
from pipectl.store import Database, Store
from tests.backends import is_url, new_schema, pg_dump, pg_rows

# typer builds the click command from the app's annotations on every `CliRunner.invoke`
# (tens of milliseconds for pipectl's commands, more than most commands take to run); the app
# never changes during a test run, so each app is built once.
_COMMANDS: dict[typer.Typer, Any] = {}  # holds each app, so no other takes its place


def _command_once(typer_instance: typer.Typer) -> Any:
    if typer_instance not in _COMMANDS:
        _COMMANDS[typer_instance] = typer.main.get_command(typer_instance)
    return _COMMANDS[typer_instance]


typer.testing._get_command = _command_once  # type: ignore[attr-defined]


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
    "test_import_queue",
    "test_claim_ahead",
    "test_limits",
    "test_channel_health",
    "test_probe_backoff",
    "test_faults",
    "test_senders",
    "test_hooks",
    "test_admission",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "backend" in metafunc.fixturenames and module in BOTH_BACKENDS:
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def migrated_empty_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with every migration applied and no rows, made once per test process:
    migrating a new file takes longer than most tests (tests/test_migrations.py and
    `test_init_creates_...` cover a new file's migrations)."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    Store(path).close()  # closing the last connection folds the WAL into the file
    return path


@pytest.fixture
def db(tmp_path: Path, backend: str, request: pytest.FixtureRequest):
    """The database a test works on: `pipectl.db` in tmp_path, or a fresh PostgreSQL schema
    (a URL). The file is a copy of the migrated empty database, with its own instance id
    (Message-IDs carry it: two test databases must not share one)."""
    if backend == "postgresql":
        yield from new_schema()
        return
    migrated_empty_database = request.getfixturevalue("migrated_empty_database")
    path = tmp_path / "pipectl.db"
    shutil.copyfile(migrated_empty_database, path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = lower(hex(randomblob(6))) WHERE key = 'instance'")
    conn.close()
    yield path


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
