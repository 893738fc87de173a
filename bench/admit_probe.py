"""Admission alone, in-process, repeatable: N queued leads admitted by `admit_queued` (one
batch per transaction, as the tick does), each run on a fresh copy of one database.

Usage: python bench/admit_probe.py [--leads 100000] [--runs 3] [--statements] [--tick]
                                   [--workdir DIR] [--db URL]

The base database (apply + `leads import`, through the CLI) is kept in the workdir and reused
while the schema's version is the same. `--statements` times every SQL statement of the runs
(summed by its text); `--tick` runs a whole in-process `tick()` instead of `admit_queued`.
With `--db postgresql://...` the base is copied there by `db copy` for each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from import_bench import generate  # noqa: E402
from workload import NURTURE, T0, Account, create, fresh, import_csv, pipectl, stamp  # noqa: E402

from pipectl.durations import parse_time  # noqa: E402
from pipectl.scheduler.run import tick  # noqa: E402
from pipectl.store import Store  # noqa: E402
from pipectl.store.migrations import MIGRATIONS  # noqa: E402

NOW = stamp(T0)


class TimedConnection:
    """A connection whose `execute` sums the seconds spent per statement text."""

    def __init__(self, conn: Any, spent: dict[str, list[float]]):
        self._conn = conn
        self._spent = spent

    def execute(self, sql: str, params: Any = ()) -> Any:
        start = time.perf_counter()
        cursor = self._conn.execute(sql, params)
        cell = self._spent[" ".join(sql.split())[:150]]
        cell[0] += time.perf_counter() - start
        cell[1] += 1
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def base(workdir: Path, leads: int) -> Path:
    """apply + import of `leads` generated leads, queued; built once per size and schema."""
    db = workdir / f"base-{leads}-v{len(MIGRATIONS)}.db"
    if db.exists():
        return db
    tmp = create(workdir / "building.db", workdir, [Account("acme", NURTURE)])
    csv_path = workdir / "acme.csv"
    generate(csv_path, leads)
    import_csv(tmp, csv_path, "acme")
    csv_path.unlink()
    pipectl(tmp, "status")  # checkpoints the WAL into the file
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.move(tmp, db)
    fresh(tmp)
    return db


def one_run(target: str, statements: bool, whole_tick: bool, pragma: str = "") -> dict[str, Any]:
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    wall, cpu = time.perf_counter(), time.process_time()
    if whole_tick:  # the process's own tick: the store opened, the summary recorded
        admitted = tick(target, now=parse_time(NOW), sync_seconds=0).admitted
    else:
        store = Store(target)
        for sql in filter(None, pragma.split(";")):
            store.database.conn.execute(sql)
        if statements:
            store.database.conn = TimedConnection(store.database.conn, spent)  # type: ignore[assignment]
        admitted = total = 1
        while admitted:
            admitted = store.scheduler.admit_queued(NOW)
            total += admitted
        admitted = total - 1
        store.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out: dict[str, Any] = {"admitted": admitted, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    if statements:
        top = sorted(spent.items(), key=lambda kv: -kv[1][0])[:25]
        out["statements"] = [(round(s, 3), n, sql) for sql, (s, n) in top]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--statements", action="store_true")
    ap.add_argument("--tick", action="store_true")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pipectl-admit-probe"))
    ap.add_argument("--db", default="", help="a postgresql:// URL to measure there instead")
    ap.add_argument("--before", default="", help="SQL run on each copy first (experiments)")
    ap.add_argument("--pragma", default="", help="statements run on the store's connection")
    opts = ap.parse_args()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    src = base(opts.workdir, opts.leads)
    runs = []
    for _ in range(opts.runs):
        copy = fresh(opts.workdir / "run.db")
        shutil.copyfile(src, copy)
        target = str(copy)
        if opts.db:
            pipectl(copy, "db", "copy", "--to", opts.db)
            target = opts.db
        if opts.before:  # an experiment: a change to the copy before the run, not timed
            conn = sqlite3.connect(copy)
            conn.executescript(opts.before)
            conn.close()
        run = one_run(target, opts.statements, opts.tick, opts.pragma)
        run["leads_per_s"] = round(run["admitted"] / run["wall_s"])
        runs.append(run)
        print(json.dumps(run), flush=True)
        if opts.db:
            drop(opts.db)
    fresh(opts.workdir / "run.db")
    walls = [r["wall_s"] for r in runs]
    print(
        f"median of {len(runs)}: {statistics.median(walls):.3f} s wall,"
        f" {statistics.median(r['cpu_s'] for r in runs):.3f} s CPU,"
        f" {round(opts.leads / statistics.median(walls)):,} leads/s;"
        f" load {os.getloadavg()[0]:.1f}"
    )


def drop(url: str) -> None:
    """Empty the PostgreSQL database for the next run's `db copy`."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


if __name__ == "__main__":
    main()
