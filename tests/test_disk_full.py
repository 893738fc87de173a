"""A full disk, for real: the database on a small tmpfs filled to the brim. Every command says
"disk full" naming the file, exits 1 without a traceback, and the database stays intact."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import dump, rows
from .scenario import ONE_EMAIL, T0, outbox, pipectl, write_csv, write_yaml

pytestmark = pytest.mark.slow  # fills a real (small) filesystem

DISK_KB = 16384  # room for a tick's WAL once the filler is gone, however the tick batches


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted in tmp_path (needs root, as a full disk is not faked)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_KB}k", "tmpfs", str(mount)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave_kb: int = 0) -> Path:
    """Fill the disk but `leave_kb`; removing the returned file frees it again."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        left = max(0, free - leave_kb * 1024)
        while left > 0 or leave_kb == 0:
            left -= os.write(fd, b"\0" * min(max(left, 4096), 1 << 20))
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


def prepared(disk: Path, tmp_path: Path, leads: int = 200) -> Path:
    """A database on the small disk with `leads` leads queued for one email each."""
    db = disk / "pipectl.db"
    assert pipectl(db, "apply", str(write_yaml(tmp_path, ONE_EMAIL))).returncode == 0
    csv = write_csv(tmp_path, "leads.csv", leads)
    imported = pipectl(db, "leads", "import", str(csv), "--account", "acme", "--pipeline", "drip")
    assert imported.returncode == 0, imported.stderr
    return db


def refused_for_disk_full(result: subprocess.CompletedProcess, path: Path) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"disk full: cannot write {path}" in result.stderr or (
        f"disk full: cannot write the database {path}" in result.stderr
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert "no transaction is active" not in result.stderr


def test_tick_on_a_full_disk_says_disk_full_naming_the_lock_file(disk, tmp_path):
    db = prepared(disk, tmp_path)
    before = dump(db)
    filler = fill(disk)

    result = pipectl(db, "tick", "--now", T0)
    refused_for_disk_full(result, Path(f"{db}.lock"))

    filler.unlink()
    assert dump(db) == before


def test_tick_when_the_disk_fills_up_says_so_and_the_next_tick_finishes_the_work(disk, tmp_path):
    db = prepared(disk, tmp_path)
    (disk / "pipectl.db.lock").write_text("1 2027-03-01T13:59:00Z\n")  # from an earlier tick
    filler = fill(disk, leave_kb=256)

    result = pipectl(db, "tick", "--now", T0, "--workers", "4")
    refused_for_disk_full(result, db)

    filler.unlink()
    assert rows(db, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    again = pipectl(db, "tick", "--now", "2027-03-01T14:01:00Z")
    assert again.returncode == 0, again.stderr
    assert rows(db, "SELECT status, count(*) AS n FROM lead_stage_actions GROUP BY status") == [
        {"status": "done", "n": 400}
    ]
    # Each lead got its email; one written before the disk filled up was written again, with
    # the same Message-ID, to the same outbox file.
    assert len(outbox(disk)) == 200


@pytest.mark.parametrize("leave_kb", [0, 64])
def test_import_and_apply_on_a_full_disk_say_disk_full_and_change_nothing(disk, tmp_path, leave_kb):
    db = prepared(disk, tmp_path, leads=10)
    before = dump(db)
    big = write_csv(tmp_path, "big.csv", 3000, domain="big.example")
    yaml = write_yaml(tmp_path, ONE_EMAIL + ONE_EMAIL.replace("key: drip", "key: other"))
    filler = fill(disk, leave_kb)

    imported = pipectl(db, "leads", "import", str(big), "--account", "acme", "--pipeline", "drip")
    refused_for_disk_full(imported, db)
    if leave_kb == 0:  # a small apply fits in what is left otherwise
        refused_for_disk_full(pipectl(db, "apply", str(yaml)), db)

    filler.unlink()
    assert dump(db) == before


def test_a_full_outbox_disk_holds_the_sends_saying_disk_full(disk, tmp_path):
    db = tmp_path / "pipectl.db"  # the database has room; the outbox is on the full disk
    (tmp_path / "outbox").symlink_to(disk)
    assert pipectl(db, "apply", str(write_yaml(tmp_path, ONE_EMAIL))).returncode == 0
    csv = write_csv(tmp_path, "leads.csv", 3)
    imported = pipectl(db, "leads", "import", str(csv), "--account", "acme", "--pipeline", "drip")
    assert imported.returncode == 0, imported.stderr
    filler = fill(disk)

    result = pipectl(db, "tick", "--now", T0)
    assert result.returncode == 0, result.stderr  # the tick ran: the channel's sends are held
    errors = rows(db, "SELECT status, attempts, last_error FROM lead_stage_actions"
                      " WHERE type = 'email'")  # fmt: skip
    # A full outbox is the channel's fault, not the leads': held, no attempt used up.
    assert {(r["status"], r["attempts"]) for r in errors} == {("pending", 0)}
    assert {r["last_error"] for r in errors} == {
        f"channel email: outbox: disk full: cannot write {tmp_path / 'outbox'}"
    }
    assert [p.name for p in disk.iterdir()] == ["filler"]  # no half-written files left

    filler.unlink()
    assert pipectl(db, "tick", "--now", "2027-03-01T15:00:00Z").returncode == 0
    assert rows(db, "SELECT DISTINCT status FROM lead_stage_actions") == [{"status": "done"}]
    assert len(outbox(tmp_path)) == 3
