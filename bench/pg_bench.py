"""PostgreSQL beside SQLite, and Huey beside the due tick: the rows of issue 15.

Every PostgreSQL database is built the way a team moves: the workload is imported into a
SQLite file with the product's own commands (bench/workload.py), then `pipectl db copy --to`
a fresh database on the server; each measurement then runs on both, in the same run.

- idle tick at 1,000 and 1,000,000 leads: in-process (`tick()`, best round, as row 2) and
  as whole processes (`pipectl tick -q --no-sync`, median of 5 after one warm-up);
- `db copy` of the 1,000,000 leads with their enrollments, stages and actions;
- due tick, one runner, no-op channel, 10,000 sends (median of 3, each on a fresh copy);
- 1 runner against 4 at once, 16 workers each, sends that sleep 50 ms;
- Huey (SqliteHuey, 16 threads) on 10,000 no-op tasks, beside SQLite's due tick.

The server: PIPECTL_BENCH_POSTGRES, else PIPECTL_TEST_POSTGRES, else
postgresql://postgres@127.0.0.1:5432/test. Each database is created for its measurement
(`bench_...`) and dropped after it. Where no server answers, the PostgreSQL rows are
skipped with the reason. Run alone: `python bench/run.py --only postgres` (or `huey`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from startup import _command
from startup import measure as measure_processes
from workload import (
    BENCH,
    DUE_AT,
    HOT_ADMIT_AT,
    IDLE_AT,
    NURTURE,
    ROOT,
    SEND,
    T0,
    Account,
    ChildRun,
    create,
    load,
    pipectl,
    probe,
    release,
    run_child,
    stamp,
)

SERVER = os.environ.get(
    "PIPECTL_BENCH_POSTGRES",
    os.environ.get("PIPECTL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
)
Log = Callable[[str], None]


@dataclass(frozen=True)
class PgPlan:
    idle_sizes: tuple[int, ...] = (1_000, 1_000_000)
    idle_runs: int = 10  # in-process ticks per round (five rounds)
    process_runs: int = 5  # whole processes, after one warm-up
    due_sends: int = 10_000
    due_runs: int = 3
    due_workers: int = 16
    runner_sends: int = 8_000
    runners: int = 4
    runner_workers: int = 16
    runner_latency: float = 0.05
    huey_tasks: int = 10_000
    huey_workers: int = 16
    huey_runs: int = 3


QUICK_PG = PgPlan(
    idle_sizes=(200,),
    idle_runs=3,
    process_runs=1,
    due_sends=200,
    due_runs=1,
    runner_sends=400,
    runner_latency=0.01,
    huey_tasks=200,
    huey_runs=1,
)


def server_error() -> str | None:
    """Why the server cannot be used, or None when it answers."""
    try:
        import psycopg

        psycopg.connect(SERVER, autocommit=True, connect_timeout=5).close()
    except Exception as e:  # no server, no driver
        return f"no PostgreSQL at {redacted(SERVER)}: {type(e).__name__}: {e}".splitlines()[0]
    return None


def redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=host))


@contextlib.contextmanager
def scratch_database(tag: str) -> Iterator[str]:
    """A new database on the server, as a URL; dropped afterwards, whatever happened."""
    import psycopg

    name = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_to(db: Path, url: str) -> tuple[ChildRun, dict[str, int]]:
    """`pipectl db copy --to url` as a child process: its run and the rows per table."""
    run = pipectl(db, "db", "copy", "--to", url, "--json")
    return run, json.loads(run.stdout)


def remove(db: Path) -> None:
    for p in db.parent.glob(f"{db.name}*"):
        p.unlink()


def idle_pair(db: str, runs: int, process_runs: int) -> dict[str, Any]:
    """One database's idle tick: in-process (as row 2) and as whole processes."""
    inner, run = probe("idle", db=db, now=stamp(IDLE_AT), runs=runs)
    argv = [*_command("pipectl"), "--db", db, "tick", "-q", "--no-sync", "--now", stamp(IDLE_AT)]
    return {**inner, "process": run.figures(), "cli": measure_processes(argv, process_runs)}


def idle_and_copy(plan: PgPlan, workdir: Path, log: Log) -> dict[str, Any]:
    """Per size: build in SQLite, `db copy` to PostgreSQL (timed), idle ticks on both."""
    out: dict[str, Any] = {"idle": [], "copy": []}
    for size in plan.idle_sizes:
        log(f"postgres: {size:,} leads, built in SQLite")
        db = create(workdir / f"pg-idle-{size}.db", workdir, [Account("acme", NURTURE)])
        load(db, workdir, {"acme": size}, T0)
        with scratch_database(f"idle{size}") as url:
            log(f"  db copy of {size:,} leads")
            run, rows = copy_to(db, url)
            out["copy"].append(
                {
                    "leads": size,
                    **run.figures(),
                    "rows": rows,
                    "rows_per_s": round(sum(rows.values()) / run.seconds),
                }
            )
            log(f"  copied in {run.seconds:.1f} s; idle ticks, SQLite and PostgreSQL")
            out["idle"].append(
                {
                    "leads": size,
                    "sqlite": idle_pair(str(db), plan.idle_runs, plan.process_runs),
                    "postgres": idle_pair(url, plan.idle_runs, plan.process_runs),
                }
            )
        remove(db)
    return out


def due_database(workdir: Path, sends: int, concurrency: int, name: str) -> Path:
    """A SQLite file holding `sends` email sends of one account, all due at DUE_AT."""
    accounts = [Account("hot", SEND, concurrency=concurrency, held=True)]
    db = create(workdir / f"{name}.db", workdir, accounts)
    load(db, workdir, {"hot": sends + 1}, HOT_ADMIT_AT)  # the one more is the one a day
    release(db, workdir, accounts, ["hot"])
    return db


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: r[key])
    return {**runs[len(runs) // 2], "runs": [r[key] for r in runs]}


def due_sqlite(db: Path, plan: PgPlan) -> dict[str, Any]:
    """SQLite's due tick, `due_runs` times, each on a fresh copy of the file."""
    runs = []
    copy = db.with_name(f"run-{db.name}")
    for _ in range(plan.due_runs):
        remove(copy)
        shutil.copyfile(db, copy)
        due, run = probe("due", db=str(copy), now=stamp(DUE_AT), workers=plan.due_workers)
        runs.append({**due, "process": run.figures()})
    remove(copy)
    return median_run(runs, "sends_per_s")


def due_postgres(db: Path, plan: PgPlan) -> dict[str, Any]:
    """PostgreSQL's due tick, `due_runs` times, each on a fresh `db copy` of the file."""
    runs = []
    for _ in range(plan.due_runs):
        with scratch_database("due") as url:
            copy_to(db, url)
            due, run = probe("due", db=url, now=stamp(DUE_AT), workers=plan.due_workers)
            runs.append({**due, "process": run.figures()})
    return median_run(runs, "sends_per_s")


def huey(plan: PgPlan, workdir: Path) -> dict[str, Any]:
    """Huey's consumer on `huey_tasks` no-op tasks, `huey_runs` child processes."""
    runs = []
    for _ in range(plan.huey_runs):
        argv = [sys.executable, str(BENCH / "huey_bench.py"), str(workdir / "huey.db")]
        argv += ["--tasks", str(plan.huey_tasks), "--workers", str(plan.huey_workers)]
        run = run_child(argv)
        runs.append({**json.loads(run.stdout.strip().splitlines()[-1]), "process": run.figures()})
    remove(workdir / "huey.db")
    return median_run(runs, "tasks_per_s")


def due_side_by_side(
    plan: PgPlan, workdir: Path, log: Log, postgres: bool, with_huey: bool
) -> dict[str, Any]:
    """The due tick of `due_sends` no-op sends on SQLite (and PostgreSQL), and Huey's
    consumer on as many no-op tasks, in the same run."""
    log(f"due tick: {plan.due_sends:,} sends due, built in SQLite")
    db = due_database(workdir, plan.due_sends, plan.due_workers, "pg-due")
    out: dict[str, Any] = {"sends": plan.due_sends, "workers": plan.due_workers}
    log("  due tick, SQLite")
    out["sqlite"] = due_sqlite(db, plan)
    if postgres:
        log("  due tick, PostgreSQL")
        out["postgres"] = due_postgres(db, plan)
    remove(db)
    if with_huey:
        log(f"huey: {plan.huey_tasks:,} no-op tasks, {plan.huey_workers} threads")
        out["huey"] = huey(plan, workdir)
        h = out["huey"]["tasks_per_s"]
        out["sqlite_vs_huey"] = round(out["sqlite"]["sends_per_s"] / h, 2)
    return out


def runners(plan: PgPlan, workdir: Path, log: Log) -> dict[str, Any]:
    """1 runner, then `runners` at once, each with `runner_workers` workers, on the same
    sends that each sleep `runner_latency`: deliveries/s from the first runner's start to
    the last one's end (the processes start first and wait for a common moment)."""
    concurrency = plan.runners * plan.runner_workers * 2  # not the limit
    log(f"runners: {plan.runner_sends:,} sends of {plan.runner_latency * 1000:.0f} ms")
    db = due_database(workdir, plan.runner_sends, concurrency, "pg-runners")
    out: dict[str, Any] = {
        "sends": plan.runner_sends,
        "workers": plan.runner_workers,
        "latency_s": plan.runner_latency,
        "account_concurrency": concurrency,
    }
    for count in (1, plan.runners):
        with scratch_database(f"runners{count}") as url:
            copy_to(db, url)
            log(f"  {count} runner(s) at once")
            out[str(count)] = run_together(url, count, plan)
    remove(db)
    one, many = out["1"]["deliveries_per_s"], out[str(plan.runners)]["deliveries_per_s"]
    out["ratio"] = round(many / one, 2)
    return out


def run_together(url: str, count: int, plan: PgPlan) -> dict[str, Any]:
    kwargs = {
        "db": url,
        "now": stamp(DUE_AT),
        "workers": plan.runner_workers,
        "latency": plan.runner_latency,
        "start_at": time.time() + 3,  # every child has imported pipectl by then
    }
    argv = [sys.executable, str(BENCH / "probes.py"), "runner", json.dumps(kwargs)]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"runner exited {p.returncode}:\n{stderr[-2000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    from probes import scalar, sends_done

    sent = sends_done(url, stamp(DUE_AT))
    return {
        "runners": count,
        "seconds": round(seconds, 3),
        "sent": sent,
        "done_per_runner": [r["done"] for r in results],
        "cpu_s_per_runner": [r["cpu_s"] for r in results],
        # each runner's time in its claims and in recording results (both take the write lock)
        "claim_ms_per_runner": [r["store"]["_claim"]["ms"] for r in results],
        "record_ms_per_runner": [r["store"]["_record_results"]["ms"] for r in results],
        "record_calls_per_runner": [r["store"]["_record_results"]["calls"] for r in results],
        "write_lock_wait_ms_per_runner": [r["write_lock_wait_ms"] for r in results],
        "load_average": os.getloadavg()[0],
        "most_attempts": scalar(url, "SELECT max(attempts) FROM lead_stage_actions"),
        "deliveries_per_s": round(sent / seconds),
        "ideal_per_s": round(count * plan.runner_workers / plan.runner_latency),
    }


def measure(
    plan: PgPlan, workdir: Path, log: Log, postgres: bool = True, with_huey: bool = True
) -> dict[str, Any]:
    """The PostgreSQL rows (skipped with the reason when no server answers) and the Huey
    reference, each beside SQLite's figure measured in the same run."""
    out: dict[str, Any] = {"server": redacted(SERVER)}
    skipped = server_error() if postgres else None
    if skipped:
        out["skipped"] = skipped
        log(f"postgres: skipped: {skipped}")
    elif postgres:
        out.update(idle_and_copy(plan, workdir, log))
        out["runners"] = runners(plan, workdir, log)
    out["due"] = due_side_by_side(plan, workdir, log, postgres and not skipped, with_huey)
    return out
