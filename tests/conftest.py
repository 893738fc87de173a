"""Shared fixtures: a database file in tmp_path and the CLI as a user runs it."""

from __future__ import annotations

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
from pipectl.store import Database

# typer builds the click command from the app's annotations on every `CliRunner.invoke`
# (tens of milliseconds for pipectl's commands, more than most commands take to run); the app
# never changes during a test run, so each app is built once.
_COMMANDS: dict[int, Any] = {}


def _command_once(typer_instance: typer.Typer) -> Any:
    key = id(typer_instance)
    if key not in _COMMANDS:
        _COMMANDS[key] = typer.main.get_command(typer_instance)
    return _COMMANDS[key]


typer.testing._get_command = _command_once  # type: ignore[attr-defined]


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pipectl.db"


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


def rows(db: Path, sql: str, *params) -> list[dict]:
    """Query the database file directly, as a user with sqlite3 would."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def dump(db: Path) -> str:
    """The whole database as SQL text, to show that a failed command changed nothing."""
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
