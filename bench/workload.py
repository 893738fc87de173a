"""Benchmark data, built through the product's own commands (apply, leads import, tick).

Every step runs as a child process so its wall time and peak RSS belong to it alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from import_bench import generate

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PIPECTL = [sys.executable, "-m", "pipectl"]

# Simulated times. Bulk leads are admitted at T0 and wait 30 days, so at IDLE_AT nothing is
# due. Sends that must be due at once are held back while they load by a rate limit of one
# email a day (that one email goes to the outbox); `apply` then lifts the limit, through the
# product's own path, and they are all due, sends only, at DUE_AT.
T0 = datetime(2027, 3, 1, 14, 0, tzinfo=UTC)
IDLE_AT = T0 + timedelta(minutes=10)
HOT_ADMIT_AT = T0 + timedelta(minutes=20)
DUE_AT = T0 + timedelta(minutes=30)

EMAIL = '{subject: "Hi {{ lead.first_name }}", body: "Thanks for asking, {{ lead.first_name }}."}'
NURTURE = ("wait: 30d", f"email: {EMAIL}")
SEND = (f"email: {EMAIL}",)
WAIT_THEN_SEND = ("wait: 1m", f"email: {EMAIL}")


@dataclass(frozen=True)
class Account:
    """An account with one pipeline `<key>-p` of one stage holding `actions`."""

    key: str
    actions: tuple[str, ...]
    concurrency: int = 16
    held: bool = False  # one email a day until released: its sends stay due
    senders: int = 0  # sender mailboxes, each with room for `sender_limit` emails a day
    sender_limit: int = 2000

    def yaml(self, released: bool) -> tuple[list[str], list[str]]:
        rates = "" if released or not self.held else ", rates: {email: 1/day}"
        account = [
            f"  - key: {self.key}",
            f"    name: {self.key}",
            "    country: US",
            f"    limits: {{concurrency: {self.concurrency}{rates}}}",
        ]
        if self.senders:
            account += ["    channels:", "      email:", "        senders:"]
            account += [
                f'          - {{from: "s{n}@{self.key}.example", daily_limit: {self.sender_limit}}}'
                for n in range(self.senders)
            ]
        pipeline = [
            f"  - key: {self.key}-p",
            f"    account: {self.key}",
            f"    name: {self.key} pipeline",
            "    stages:",
            "      - key: new",
            "        actions:",
            *(f"          - {a}" for a in self.actions),
        ]
        return account, pipeline


def write_yaml(path: Path, accounts: list[Account], released: Iterable[str] = ()) -> Path:
    parts = [a.yaml(a.key in set(released)) for a in accounts]
    lines = ["version: 1", "accounts:", *(x for a, _ in parts for x in a), "pipelines:"]
    path.write_text("\n".join([*lines, *(x for _, p in parts for x in p)]) + "\n")
    return path


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ChildRun:
    """One child process: its wall time, peak RSS and output."""

    seconds: float
    peak_rss_mib: float
    stdout: str

    def figures(self) -> dict[str, float]:
        return {"wall_s": round(self.seconds, 3), "peak_rss_mib": round(self.peak_rss_mib, 1)}


def run_child(argv: list[str]) -> ChildRun:
    """Run argv to completion; its peak RSS comes from wait4, so it is this child's alone."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            message = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{message}")
        return ChildRun(seconds, usage.ru_maxrss / 1024, out.read().decode())


def pipectl(db: Path, *args: str) -> ChildRun:
    return run_child([*PIPECTL, "--db", str(db), *args])


def probe(name: str, **kwargs: Any) -> tuple[dict[str, Any], ChildRun]:
    """Run one in-process measurement of bench/probes.py in a child; returns its JSON."""
    run = run_child([sys.executable, str(BENCH / "probes.py"), name, json.dumps(kwargs)])
    return json.loads(run.stdout.strip().splitlines()[-1]), run


def fresh(db: Path) -> Path:
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")):
        p.unlink(missing_ok=True)
    return db


def import_csv(db: Path, csv_path: Path, account: str) -> ChildRun:
    return pipectl(
        db, "leads", "import", str(csv_path), "--account", account, "--pipeline", f"{account}-p"
    )


def admit(db: Path, at: datetime) -> ChildRun:
    """The first tick after an import admits every queued enrollment, within the tick's
    default budget; its JSON summary (`admitted`, `seconds`) is the run's stdout. Should it
    run out of time, later ticks admit the rest (the measurement counts the first only)."""
    run = later = pipectl(db, "tick", "--now", stamp(at), "--json")
    while json.loads(later.stdout)["admitted"] and queued(db):
        later = pipectl(db, "tick", "--now", stamp(at), "--json")
    return run


def queued(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        sql = "SELECT count(*) FROM enrollments WHERE status = 'queued'"
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def load(
    db: Path, workdir: Path, leads: dict[str, int], at: datetime
) -> tuple[list[ChildRun], ChildRun]:
    """Import generated leads into each account's pipeline, then admit them at `at`.
    Returns each import's run and the admission's."""
    imports = []
    for key, count in leads.items():
        csv_path = workdir / f"{key}.csv"
        generate(csv_path, count)
        imports.append(import_csv(db, csv_path, key))
        csv_path.unlink()
    return imports, admit(db, at)


def release(db: Path, workdir: Path, accounts: list[Account], released: Iterable[str]) -> None:
    """Lift the rate limit of held accounts: their waiting sends are all due."""
    pipectl(db, "apply", str(write_yaml(workdir / "released.yaml", accounts, released)))


def create(db: Path, workdir: Path, accounts: list[Account]) -> Path:
    fresh(db)
    pipectl(db, "apply", str(write_yaml(workdir / "held.yaml", accounts)))
    return db
