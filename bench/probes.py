"""In-process measurements, each run in its own child by bench/run.py; prints one JSON line.

Usage: python bench/probes.py NAME '{"db": ..., ...}' [--profile FILE]

With --profile, the main thread (the tick's one writer) runs under cProfile and its stats
are written to FILE (read them with `python -m pstats FILE`).
"""

from __future__ import annotations

import cProfile
import json
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipectl.durations import parse_time  # noqa: E402
from pipectl.scheduler.run import tick  # noqa: E402
from pipectl.store import Store  # noqa: E402
from pipectl.store.scheduler_sql import SchedulerSQL  # noqa: E402


class NoopSender:
    """The no-op channel: messages are rendered by the tick, then dropped."""

    def send(self, message: Any) -> str | None:
        return None

    def close(self) -> None:
        pass


class SleepSender(NoopSender):
    """A channel that takes `latency` seconds per message, like a remote SMTP server."""

    def __init__(self, latency: float):
        self.latency = latency

    def send(self, message: Any) -> str | None:
        time.sleep(self.latency)
        return None


class StoreTimer:
    """Seconds spent in chosen Store methods during a tick (find-and-claim, record, admit)."""

    def __init__(self, *names: str):
        self.spent = dict.fromkeys(names, 0.0)
        self.calls = dict.fromkeys(names, 0)
        for name in names:  # on the facade, or on the store part that holds the method
            owner = next(c for c in (Store, SchedulerSQL) if name in vars(c))
            setattr(owner, name, self._timed(name, getattr(owner, name)))

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(store: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(store, *args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed

    def report(self) -> dict[str, Any]:
        return {
            name: {"ms": round(self.spent[name] * 1000, 2), "calls": self.calls[name]}
            for name in self.spent
        }


def settle() -> None:
    """Flush the build's writes first: while the kernel writes back a gigabyte of dirty pages,
    every write and fsync of this measurement would be throttled."""
    os.sync()
    time.sleep(1)


def scalar(db: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """One value read from the bench's database: a SQLite file or a postgresql:// URL."""
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(db, autocommit=True) as pg:
            row = pg.execute(sql.replace("?", "%s"), params).fetchone()
            return row[0] if row else None
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def count_due(db: str, now: str) -> int:
    return scalar(
        db,
        "SELECT count(*) FROM lead_stage_actions WHERE status = 'pending' AND perform_at <= ?",
        (now,),
    )


def sends_done(db: str, since: str) -> int:
    """Email actions done by a claim taken at or after `since`."""
    return scalar(
        db,
        "SELECT count(*) FROM lead_stage_actions WHERE type = 'email' AND status = 'done' "
        "AND claimed_at >= ?",
        (since,),
    )


def idle(db: str, now: str, runs: int, rounds: int = 5) -> dict[str, Any]:
    """tick() with nothing due, after warm-up: the cost of finding that there is no work.

    In rounds, because the machine is shared: while another process keeps the disk busy,
    each tick's fsyncs (its WAL checkpoint on close) wait, and a whole round is slower.
    `best_round_ms` is the lowest round median, as timeit reports its best repeat; `cpu_ms`
    is the median CPU time of one tick, which other processes do not change."""
    at = parse_time(now)
    settle()
    for _ in range(3):
        tick(db, now=at, senders=NoopSender())
    times, cpu, medians = [], [], []
    for _ in range(rounds):
        batch = []
        for _ in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            summary = tick(db, now=at, senders=NoopSender())
            batch.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            assert summary.claimed == 0 and summary.admitted == 0, summary
        medians.append(statistics.median(batch))
        times += batch
        time.sleep(0.5)
    times.sort()
    return {
        "runs": len(times),
        "best_round_ms": round(min(medians) * 1000, 2),
        "median_ms": round(statistics.median(times) * 1000, 2),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 2),
        "max_ms": round(times[-1] * 1000, 2),
        "cpu_ms": round(statistics.median(cpu) * 1000, 2),
    }


def due(db: str, now: str, workers: int) -> dict[str, Any]:
    """One tick with work due and the no-op channel: actions/s through claim, perform, record."""
    due_before = count_due(db, now)
    settle()
    timer = StoreTimer(
        "recover_running", "_admit", "_claim", "_record_results", "count_due", "close"
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    summary = tick(db, now=parse_time(now), workers=workers, senders=NoopSender())
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    sends = sends_done(db, now)
    return {
        "due": due_before,
        "claimed": summary.claimed,
        "done": summary.done,
        "failed": summary.failed,
        "sends": sends,
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "actions_per_s": round(summary.done / seconds),
        "sends_per_s": round(sends / seconds),
        "store": timer.report(),
    }


def pool(db: str, now: str, workers: int, latency: float) -> dict[str, Any]:
    """One tick of sends that each sleep `latency`: wall time against n * latency / workers."""
    timer = StoreTimer("_claim", "_record_results")
    settle()
    start = time.perf_counter()
    summary = tick(
        db, now=parse_time(now), workers=workers, max_seconds=3600, senders=SleepSender(latency)
    )
    seconds = time.perf_counter() - start
    sends = sends_done(db, now)
    ideal = sends * latency / workers
    return {
        "sends": sends,
        "workers": workers,
        "latency_s": latency,
        "seconds": round(seconds, 3),
        "ideal_s": round(ideal, 3),
        "efficiency": round(ideal / seconds, 3),
        "held_back": summary.held_back,
        "store": timer.report(),
    }


def runner(db: str, now: str, workers: int, latency: float, start_at: float) -> dict[str, Any]:
    """One of several runners against one PostgreSQL database: waits for the common start
    (a wall-clock time, so process start-up is not in the figure), then one tick of sends
    that each sleep `latency`. Returns its wall-clock start and end and its counts."""
    import psycopg  # noqa: F401  (the driver's import is start-up, not the tick)

    while (wait := start_at - time.time()) > 0:
        time.sleep(min(wait, 0.05))
    timer = StoreTimer("_claim", "_record_results")
    waited = write_lock_wait()
    start, cpu = time.time(), time.process_time()
    summary = tick(
        db, now=parse_time(now), workers=workers, max_seconds=3600, senders=SleepSender(latency)
    )
    return {
        "start": start,
        "end": time.time(),
        "cpu_s": round(time.process_time() - cpu, 3),
        "store": timer.report(),
        "write_lock_wait_ms": round(waited[0] * 1000, 1),
        "claimed": summary.claimed,
        "done": summary.done,
        "failed": summary.failed,
        "held_back": summary.held_back,
        "recovered": summary.recovered,
    }


def write_lock_wait() -> list[float]:
    """Seconds this process waits to take PostgreSQL's write lock (the `BEGIN` of every write
    transaction: one at a time across all runners), summed into the returned list's item."""
    from pipectl.store import postgres

    waited = [0.0]
    execute = postgres.PgCursor.execute

    def timed(cursor: Any, sql: str, params: Any = None) -> Any:
        if not sql.startswith("BEGIN; SELECT pg_advisory_xact_lock"):
            return execute(cursor, sql, params)
        start = time.perf_counter()
        try:
            return execute(cursor, sql, params)
        finally:
            waited[0] += time.perf_counter() - start

    postgres.PgCursor.execute = timed  # type: ignore[method-assign]
    return waited


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def noisy(db: str, big: str, workers: int, latency: float, max_ticks: int) -> dict[str, Any]:
    """Ticks every simulated minute until nothing is left; lateness per account from the rows.

    A lead's send is late by (email performed_at) - (due_at of the wait before it): from the
    moment the lead was due for its email until the email went out, whoever noticed when."""
    conn = sqlite3.connect(db)
    first = conn.execute(
        "SELECT max(perform_at) FROM lead_stage_actions WHERE status = 'pending'"
    ).fetchone()[0]
    at = parse_time(first)  # the first cron minute after every wait has ended
    ticks = []
    for _ in range(max_ticks):
        summary = tick(db, now=at, workers=workers, senders=SleepSender(latency))
        ticks.append({"now": summary.now, "claimed": summary.claimed, "s": summary.seconds})
        left = conn.execute(
            "SELECT count(*) FROM lead_stage_actions "
            "WHERE status IN ('pending', 'waiting', 'running')"
        ).fetchone()[0]
        if not left:
            break
        at += timedelta(minutes=1)
    rows = conn.execute(
        "SELECT acc.key, e.performed_at, w.due_at, e.due_at FROM lead_stage_actions e "
        "JOIN lead_stage_actions w ON w.lead_stage_id = e.lead_stage_id AND w.type = 'wait' "
        "JOIN accounts acc ON acc.id = e.account_id WHERE e.type = 'email'"
    ).fetchall()
    conn.close()
    groups: dict[str, dict[str, list[float]]] = {"big": {}, "small": {}}
    for key, performed, wait_due, email_due in rows:
        group = groups["big" if key == big else "small"]
        if performed is None:
            group.setdefault("unsent", []).append(0)
            continue
        done = parse_time(performed)
        group.setdefault("lead", []).append((done - parse_time(wait_due)).total_seconds())
        group.setdefault("action", []).append((done - parse_time(email_due)).total_seconds())
    out: dict[str, Any] = {"ticks": ticks, "left": left}
    for name, group in groups.items():
        lead, action = group.get("lead", []), group.get("action", [])
        out[name] = {
            "sends": len(lead),
            "unsent": len(group.get("unsent", [])),
            "p50_s": percentile(lead, 50),
            "p99_s": percentile(lead, 99),
            "max_s": max(lead, default=float("nan")),
            "action_p99_s": percentile(action, 99),
        }
    return out


def naive(db: str, now: str) -> dict[str, Any]:
    """The loop pipectl replaces: for each lead, for each of its lead stages, the last performed
    action and the stage's next one; due when that next one's time has come. Read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    start = time.perf_counter()
    due_ids, leads, queries = [], 0, 0
    for (lead_id,) in conn.execute("SELECT id FROM leads ORDER BY id").fetchall():
        leads += 1
        stages = conn.execute(
            "SELECT id FROM lead_stages WHERE lead_id = ? AND exited_at IS NULL", (lead_id,)
        ).fetchall()
        queries += 1
        for (lead_stage_id,) in stages:
            last = conn.execute(
                "SELECT sequence_number FROM lead_stage_actions WHERE lead_stage_id = ? "
                "AND performed_at IS NOT NULL ORDER BY sequence_number DESC LIMIT 1",
                (lead_stage_id,),
            ).fetchone()
            nxt = conn.execute(
                "SELECT id, perform_at FROM lead_stage_actions WHERE lead_stage_id = ? "
                "AND sequence_number > ? ORDER BY sequence_number LIMIT 1",
                (lead_stage_id, last[0] if last else 0),
            ).fetchone()
            queries += 2
            if nxt is not None and nxt[1] is not None and nxt[1] <= now:
                due_ids.append(nxt[0])
    seconds = time.perf_counter() - start
    conn.close()
    return {
        "leads_scanned": leads,
        "queries": queries,
        "due": len(due_ids),
        "seconds": round(seconds, 3),
    }


PROBES: dict[str, Callable[..., dict[str, Any]]] = {
    "idle": idle,
    "due": due,
    "pool": pool,
    "noisy": noisy,
    "naive": naive,
    "runner": runner,
}

if __name__ == "__main__":
    name, kwargs = sys.argv[1], json.loads(sys.argv[2])
    if sys.argv[3:4] == ["--profile"]:
        profiler = cProfile.Profile()
        result = profiler.runcall(PROBES[name], **kwargs)
        profiler.dump_stats(sys.argv[4])
    else:
        result = PROBES[name](**kwargs)
    print(json.dumps(result))
