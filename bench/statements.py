"""Statements per send, and sends per second, of a due tick on SQLite and PostgreSQL.

Usage: python bench/statements.py [--leads N] [--backend sqlite|postgresql|both]
                                  [--then nothing|wait|move] [--profile DIR] [--no-count]

Each measurement builds its own database through the product's commands (apply, leads import,
admission), then runs one due tick in-process with the no-op channel: N one-email leads, one
account of concurrency 16, 16 workers. Statements are counted as each backend runs them
(SQLite's trace callback, a trigger's repeat of its statement left out: every row of
an executemany counts; PostgreSQL: every execute, and
every row of an executemany), in a tick of its own, apart from the timed one. With --profile,
the timed tick runs under cProfile and its stats go to DIR/<backend>.prof.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probes import NoopSender  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from pipectl.cli import app  # noqa: E402
from pipectl.durations import parse_time  # noqa: E402
from pipectl.scheduler.run import tick  # noqa: E402
from pipectl.store import Store, postgres  # noqa: E402
from pipectl.store import database as database_module  # noqa: E402

SERVER = os.environ.get("PIPECTL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
T0 = "2027-03-01T14:00:00Z"
YAML = """\
version: 1
accounts:
  - {key: acme, name: Acme, timezone: UTC, country: US, limits: {concurrency: 16}}
channels:
  email: {transport: outbox, from: "Acme Sales <sales@acme.example>"}
pipelines:
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello {{ lead.company_name }}"}
"""
# What follows the email in the stage (--then): nothing (the lead goes idle), a wait (the
# next action becomes pending), or a move to a won stage (done in the claim, per lead).
THEN = {
    "nothing": "",
    "wait": "          - wait: 1d\n",
    "move": "          - move: won\n      - {key: won, outcome: won}\n",
}


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A new SQLite file, or a new PostgreSQL schema (dropped afterwards), as `--db`."""
    if backend == "sqlite":
        yield str(workdir / f"{uuid.uuid4().hex[:8]}.db")
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in SERVER else "?"
        yield f"{SERVER}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def build(db: str, workdir: Path, leads: int, then: str = "nothing") -> None:
    """N leads enrolled and admitted: each one's email is due at T0."""
    yaml = workdir / "pipelines.yaml"
    yaml.write_text(YAML + THEN[then], encoding="utf-8")
    csv = workdir / "leads.csv"
    lines = ["Email,First Name,Company Name"]
    lines += [f"lead{i}@acme.example,Lead{i},Company {i}" for i in range(leads)]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    imports = ["leads", "import", str(csv), "--account", "acme", "--pipeline", "drip"]
    for args in (["apply", str(yaml)], imports):
        result = runner.invoke(app, ["--db", db, *args])
        assert result.exit_code == 0, result.output
    store = Store(db)
    try:
        store.scheduler.admit_queued(T0)
        due = store.scheduler.count_due(T0)
    finally:
        store.close()
    assert due == leads, due


class Counter:
    """Statements run by every Database opened while it counts."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    @contextmanager
    def counting(self) -> Iterator[None]:
        opened = database_module.Database.__init__
        execute, executemany = postgres.PgCursor.execute, postgres.PgCursor.executemany
        statements = self.statements

        def trace(sql: str) -> None:
            # A trigger's start is traced with its statement's text again: not a statement.
            if not statements or statements[-1] != sql:
                statements.append(sql)

        def init(db: Any, path: Any) -> None:
            opened(db, path)
            if not db.postgres:
                db.conn.set_trace_callback(trace)

        def pg_execute(cursor: Any, sql: str, params: Any = None) -> Any:
            statements.append(sql)
            return execute(cursor, sql, params)

        def pg_executemany(cursor: Any, sql: str, rows: Any) -> Any:
            rows = list(rows)
            statements.extend([sql] * len(rows))
            return executemany(cursor, sql, rows)

        database_module.Database.__init__ = init  # type: ignore[method-assign]
        postgres.PgCursor.execute = pg_execute  # type: ignore[method-assign]
        postgres.PgCursor.executemany = pg_executemany  # type: ignore[method-assign]
        try:
            yield
        finally:
            database_module.Database.__init__ = opened  # type: ignore[method-assign]
            postgres.PgCursor.execute = execute  # type: ignore[method-assign]
            postgres.PgCursor.executemany = executemany  # type: ignore[method-assign]


def due_tick(db: str, workdir: Path, profile: Path | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "now": parse_time(T0),
        "workers": 16,
        "senders": NoopSender(),
        "sync_seconds": 0,
        "outbox_dir": workdir / "outbox",
    }
    profiler = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    summary = tick(db, **kwargs)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "done": summary.done,
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),  # every thread of the process: the tick's and its workers'
        "summary": summary.line(),
    }


def measure(
    backend: str, leads: int, count: bool, profile_dir: Path | None, then: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "leads": leads, "then": then}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if count:
            with database(backend, workdir) as db:
                build(db, workdir, leads, then)
                counter = Counter()
                with counter.counting():
                    run = due_tick(db, workdir)
                kinds: dict[str, int] = {}
                for sql in counter.statements:
                    key = " ".join(sql.split()[:3])[:40]
                    kinds[key] = kinds.get(key, 0) + 1
                out["statements"] = len(counter.statements)
                out["statements_per_send"] = round(len(counter.statements) / run["done"], 2)
                out["top"] = sorted(kinds.items(), key=lambda kv: -kv[1])[:12]
        with database(backend, workdir) as db:
            build(db, workdir, leads, then)
            profile = profile_dir / f"{backend}.prof" if profile_dir else None
            run = due_tick(db, workdir, profile)
            out["sends_per_s"] = round(run["done"] / run["seconds"])
            out["cpu_ms_per_send"] = round(run["cpu_s"] * 1000 / run["done"], 3)
            out["tick"] = run["summary"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the timed tick here")
    parser.add_argument("--no-count", action="store_true", help="only the timed tick")
    parser.add_argument("--then", default="nothing", choices=list(THEN), help="after the email")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for backend in backends:
        print(json.dumps(measure(backend, args.leads, not args.no_count, args.profile, args.then)))


if __name__ == "__main__":
    main()
