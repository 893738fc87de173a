"""The database busy or out of reach: the tick waits within its busy timeout or stops with a
clear message naming the database, never a traceback, and loses nothing."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipectl.cli import app

from .conftest import dump
from .scenario import (
    ONE_EMAIL,
    T0,
    outbox,
    pipectl,
    setup,
    smtp_channel,
    spawn,
    start_smtp,
    statuses,
    write_csv,
    write_yaml,
)

pytestmark = pytest.mark.slow  # waits out busy timeouts on a locked database

HOLD_WRITE = """\
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    """Another process in a write transaction for `seconds` (a backup, a sqlite3 shell...)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_tick_waits_for_a_short_write_transaction_and_completes(cli, db, tmp_path):
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 5})
    holder = hold_write_lock(db, 3)
    started = time.monotonic()
    result = pipectl(db, "tick", "--now", T0)
    elapsed = time.monotonic() - started
    assert holder.wait(timeout=10) == 0
    assert result.returncode == 0, result.stderr
    assert elapsed > 2  # it waited for the other writer instead of failing at once
    assert statuses(db) == {"done": 10} and len(outbox(tmp_path)) == 5


def test_tick_stops_with_a_clear_message_when_the_database_stays_locked(
    cli, db, tmp_path, monkeypatch
):
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 5})
    before = dump(db)
    monkeypatch.setenv("PIPECTL_BUSY_TIMEOUT_MS", "1000")
    holder = hold_write_lock(db, 4)
    started = time.monotonic()
    result = pipectl(db, "tick", "--now", T0)
    elapsed = time.monotonic() - started
    assert holder.wait(timeout=10) == 0
    assert result.returncode == 1
    assert str(db) in result.stderr and "locked" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert elapsed < 4  # gave up after its busy timeout, not when the other writer finished
    assert dump(db) == before and outbox(tmp_path) == []  # nothing half-done
    # The next tick, with the database free again, does everything.
    assert cli("tick", "--now", "2027-03-01T14:01:00Z").exit_code == 0
    assert statuses(db) == {"done": 10} and len(outbox(tmp_path)) == 5


def _without_root_override() -> None:
    """In the child: root loses the capability to ignore file modes, so 0444 means read-only."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: PR_CAPBSET_DROP
        libc.prctl(24, cap, 0, 0, 0)


def as_plain_user(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipectl", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=_without_root_override,
    )


@pytest.fixture
def read_only(tmp_path):
    """Paths made read-only for the test, writable again afterwards so tmp_path can go."""
    changed: list[Path] = []

    def make(path: Path) -> None:
        path.chmod(0o555 if path.is_dir() else 0o444)
        changed.append(path)

    yield make
    for path in changed:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_read_only_database_file_gives_a_clear_error(cli, db, tmp_path, read_only):
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 2})
    before = dump(db)
    read_only(db)
    more = write_csv(tmp_path, "more.csv", 2, domain="more.example")
    for args in (["tick", "--now", T0], ["leads", "import", str(more), "--account", "acme"]):
        result = as_plain_user(db, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert str(db) in result.stderr and "readonly" in result.stderr.replace("-", "")
        assert "Traceback" not in result.stderr
    assert as_plain_user(db, "status").returncode == 0  # reading still works
    assert dump(db) == before


def test_read_only_directory_gives_a_clear_error(cli, db, tmp_path, read_only):
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 2})
    before = dump(db)
    read_only(tmp_path)
    result = as_plain_user(db, "tick", "--now", T0)
    assert result.returncode == 1
    assert f"{db}.lock" in result.stderr and "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    assert dump(db) == before


def test_missing_directory_gives_a_clear_error(tmp_path):
    db = tmp_path / "no" / "such" / "pipectl.db"
    result = pipectl(db, "tick")
    assert result.returncode == 1
    assert f"directory {db.parent} does not exist" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    yaml = write_yaml(tmp_path, ONE_EMAIL)
    for args in (["status"], ["init"], ["apply", str(yaml)]):
        result = CliRunner().invoke(app, ["--db", str(db), *args])
        assert result.exit_code == 1, (args, result.output)
        assert f"directory {db.parent} does not exist" in result.stderr, result.stderr
    assert not (tmp_path / "no").exists()


def test_results_of_sends_survive_a_writer_holding_the_database_past_the_busy_timeout(
    cli, db, tmp_path, monkeypatch
):
    """Sends went out while another process took the write lock: their results are still
    written when it lets go, so the next tick sends nothing twice."""
    server, recorder = start_smtp(delay=1.0)
    try:
        setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 2}, acme_extra=smtp_channel(server.port))
        monkeypatch.setenv("PIPECTL_BUSY_TIMEOUT_MS", "1000")
        ticking = spawn(db, "tick", "--now", T0, "--workers", "2")
        deadline = time.monotonic() + 20
        while recorder.connections < 2:  # both sends are on the wire: the claim is committed
            assert time.monotonic() < deadline and ticking.poll() is None
            time.sleep(0.02)
        holder = hold_write_lock(db, 3)
        code = ticking.wait(timeout=30)
        stderr = ticking.stderr.read()
        assert holder.wait(timeout=10) == 0
        assert "Traceback" not in stderr
        assert code == 0, stderr
        assert cli("tick", "--now", "2027-03-01T14:01:00Z").exit_code == 0
        assert statuses(db) == {"done": 4}
        assert sorted(r.rcpt_tos[0] for r in recorder.received) == [
            "lead0@acme.example",
            "lead1@acme.example",
        ]
    finally:
        server.stop()
