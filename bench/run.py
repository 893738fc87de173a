"""`make bench`: import, idle and due ticks, pool, noisy neighbour, the naive loop, sync,
PostgreSQL beside SQLite, and Huey beside the due tick.

Prints a table and writes bench/results.json. Every measurement runs in its own child
process (wall time, and peak RSS from wait4). Sizes: the issue's by default (under ten
minutes on two cores), tiny with --quick. Method and figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from import_bench import side_by_side
from pg_bench import QUICK_PG, PgPlan
from pg_bench import measure as pg_measurements
from pg_rows import rows as pg_rows
from startup import lines as startup_lines
from startup import startup_measurement
from sync_bench import measure as sync_measurements
from workload import (
    BENCH,
    DUE_AT,
    HOT_ADMIT_AT,
    IDLE_AT,
    NURTURE,
    SEND,
    T0,
    WAIT_THEN_SEND,
    Account,
    create,
    load,
    pipectl,
    probe,
    release,
    run_child,
    stamp,
)


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    import_size: int = 100_000  # the size whose import is the import measurement
    side_by_side: int = 1_000_000  # pipectl import and sqlite-utils insert of one such file
    due: tuple[int, int] = (1_000, 10_000)  # campaign A and B, due at the largest size
    naive_sizes: tuple[int, ...] = (100_000, 1_000_000)  # campaign A is due here too
    due_workers: int = 16
    pool_sends: int = 10_000
    pool_latency: float = 0.05
    pool_workers: int = 32
    noisy_big: int = 16_000
    noisy_small_accounts: int = 20
    noisy_small: int = 10
    noisy_latency: float = 0.02
    noisy_workers: int = 16
    noisy_concurrency: int = 8
    idle_runs: int = 10
    cli_runs: int = 3
    due_runs: int = 3  # each from a copy of the same database; the median is reported
    startup_runs: int = 5  # whole processes per command; the median CPU is reported
    sync_sizes: tuple[int, ...] = (100, 10_000)  # messages in the mailbox (Dovecot, loopback)
    sync_runs: int = 10
    report_leads: int = 1_000_000  # a pipeline with this many leads and their history
    report_runs: int = 5
    sender_sends: int = 10_000  # a due tick of this many sends, from one channel or senders
    senders: int = 10


QUICK = Plan(
    sizes=(400,),
    import_size=400,
    side_by_side=400,
    due=(20, 60),
    naive_sizes=(400,),
    pool_sends=200,
    pool_latency=0.01,
    pool_workers=8,
    noisy_big=200,
    noisy_small_accounts=2,
    noisy_small=5,
    noisy_latency=0.005,
    idle_runs=3,
    cli_runs=1,
    startup_runs=1,
    sync_sizes=(20, 100),
    sync_runs=3,
    report_leads=2_000,
    report_runs=2,
    sender_sends=200,
)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def leads_measurements(plan: Plan, workdir: Path, log: Any) -> dict[str, Any]:
    """Per size: build (import, admission) and idle tick; then, where planned, held sends
    loaded beside them for the naive loop and the due ticks."""
    largest = max(plan.sizes)
    accounts = [
        Account("acme", NURTURE),
        Account("hot1k", SEND, held=True),
        Account("hot10k", SEND, held=True),
    ]
    out: dict[str, Any] = {"build": [], "idle": [], "naive": [], "due": []}
    for size in plan.sizes:
        db, built = build(size, workdir, accounts, log)
        out["build"].append(built)
        log("  idle ticks")
        idle, run = probe("idle", db=str(db), now=stamp(IDLE_AT), runs=plan.idle_runs)
        cli = [pipectl(db, "tick", "--now", stamp(IDLE_AT), "-q") for _ in range(plan.cli_runs)]
        out["idle"].append(
            {
                "leads": size,
                **idle,
                "process": run.figures(),
                "cli_median_s": round(statistics.median(c.seconds for c in cli), 3),
                "cli_peak_rss_mib": round(max(c.peak_rss_mib for c in cli), 1),
            }
        )
        hot = {}
        if size in plan.naive_sizes or size == largest:
            hot["hot1k"] = plan.due[0] + 1  # the one more is the one email a day
        if size == largest:
            hot["hot10k"] = plan.due[1] + 1
        if not hot:
            continue
        load(db, workdir, hot, HOT_ADMIT_AT)
        now = DUE_AT
        if "hot10k" in hot:
            log(f"  due tick, {plan.due[1]:,} due")
            release(db, workdir, accounts, ["hot10k"])
            due = due_tick(db, stamp(now), plan)
            out["due"].append({"leads": size, "released": plan.due[1], **due})
            now += timedelta(minutes=1)
        if size in plan.naive_sizes:
            log("  naive loop")
            naive, run = probe("naive", db=str(db), now=stamp(now))
            out["naive"].append({"leads": size, **naive, "process": run.figures()})
        log(f"  due tick, {plan.due[0]:,} due")
        release(db, workdir, accounts, ["hot1k", "hot10k"])
        due = due_tick(db, stamp(now), plan)
        out["due"].append({"leads": size, "released": plan.due[0], **due})
        for p in db.parent.glob(f"{db.name}*"):
            p.unlink()
    return out


def build(size: int, workdir: Path, accounts: list[Account], log: Any) -> tuple[Path, dict]:
    """Import `size` leads into acme's pipeline, then admit them all in one tick (the first
    action is a wait of 30 days, so the tick does nothing else): import rows/s, and the
    tick's admitted leads/s (its own seconds, without the process's start)."""
    log(f"{size:,} leads: import and admission")
    db = create(workdir / f"leads-{size}.db", workdir, accounts)
    (imp,), adm = load(db, workdir, {"acme": size}, T0)
    tick = json.loads(adm.stdout)
    built = {
        "leads": size,
        "import": {**imp.figures(), "rows_per_s": round(size / imp.seconds)},
        "admission": {
            **adm.figures(),
            "enrollments_per_s": round(size / adm.seconds),
            "one_tick": {
                "admitted": tick["admitted"],
                "tick_s": tick["seconds"],
                "leads_per_s": round(tick["admitted"] / tick["seconds"]),
            },
        },
        "db_mib": round(db.stat().st_size / 2**20, 1),
    }
    admitted = f"one tick admitted {tick['admitted']:,} in {tick['seconds']} s"
    log(f"  import {imp.seconds:.1f} s; {admitted}")
    return db, built


def admission_lines(build: dict[str, Any]) -> tuple[str, str, str, bool]:
    """The admission row: one tick's leads/s, and whether that tick admitted every lead."""
    one = build["admission"]["one_tick"]
    every = one["admitted"] == build["leads"]
    figure = f"{one['leads_per_s']:,} leads/s" + ("" if every else f" ({one['admitted']:,} only)")
    what = f"admission, {build['leads']:,} queued leads, one tick"
    return what, figure, ">= 100,000", every and one["leads_per_s"] >= 100_000


def due_tick(db: Path, now: str, plan: Plan) -> dict[str, Any]:
    """The due tick, run `plan.due_runs` times, each on a copy of the same database (the
    machine is shared: one tick is one sample); the median run by actions/s is reported
    with every run's figure, and the database goes on from the last run's state."""
    runs = []
    copy = db.with_name(f"run-{db.name}")
    for _ in range(plan.due_runs):
        for p in db.parent.glob(f"{copy.name}*"):
            p.unlink()
        shutil.copyfile(db, copy)
        due, run = probe("due", db=str(copy), now=now, workers=plan.due_workers)
        runs.append({**due, "process": run.figures()})
    copy.replace(db)
    runs.sort(key=lambda r: r["actions_per_s"])
    return {**runs[len(runs) // 2], "runs_actions_per_s": [r["actions_per_s"] for r in runs]}


def senders_measurement(plan: Plan, workdir: Path, log: Any) -> dict[str, Any]:
    """A due tick of `sender_sends` emails from one account, sent from its one email channel
    and then spread over `senders` mailboxes (each sticky per lead, capped per day): what
    choosing a sender and counting its day costs."""
    out: dict[str, Any] = {"sends": plan.sender_sends, "sender_count": plan.senders}
    room = plan.sender_sends // plan.senders + 100  # every send fits under the caps
    for label, count in (("one_channel", 0), ("over_senders", plan.senders)):
        log(f"senders: due tick, {plan.sender_sends:,} sends, {count or 'no'} senders")
        accounts = [Account("mail", SEND, held=True, senders=count, sender_limit=room)]
        db = create(workdir / f"senders-{count}.db", workdir, accounts)
        load(db, workdir, {"mail": plan.sender_sends + 1}, HOT_ADMIT_AT)
        release(db, workdir, accounts, ["mail"])
        out[label] = due_tick(db, stamp(DUE_AT), plan)
        for p in db.parent.glob(f"{db.name}*"):
            p.unlink()
    return out


def pool_measurement(plan: Plan, workdir: Path, log: Any) -> dict[str, Any]:
    log(f"pool: {plan.pool_sends:,} sends at {plan.pool_latency * 1000:.0f} ms")
    accounts = [Account("pool", SEND, concurrency=plan.pool_workers, held=True)]
    db = create(workdir / "pool.db", workdir, accounts)
    load(db, workdir, {"pool": plan.pool_sends + 1}, T0)
    release(db, workdir, accounts, ["pool"])
    result, run = probe(
        "pool",
        db=str(db),
        now=stamp(DUE_AT),
        workers=plan.pool_workers,
        latency=plan.pool_latency,
    )
    return {**result, "account_concurrency": plan.pool_workers, "process": run.figures()}


def noisy_measurement(plan: Plan, workdir: Path, log: Any) -> dict[str, Any]:
    log(f"noisy neighbour: {plan.noisy_big:,} due in one account")
    c = plan.noisy_concurrency
    small = [f"small{i:02d}" for i in range(1, plan.noisy_small_accounts + 1)]
    accounts = [Account(key, WAIT_THEN_SEND, concurrency=c) for key in ["big", *small]]
    db = create(workdir / "noisy.db", workdir, accounts)
    load(db, workdir, {"big": plan.noisy_big, **dict.fromkeys(small, plan.noisy_small)}, T0)
    result, run = probe(
        "noisy",
        db=str(db),
        big="big",
        workers=plan.noisy_workers,
        latency=plan.noisy_latency,
        max_ticks=10,
    )
    return {
        **result,
        "account_concurrency": c,
        "workers": plan.noisy_workers,
        "latency_s": plan.noisy_latency,
        "process": run.figures(),
    }


def report_measurement(plan: Plan, workdir: Path, log: Any) -> dict[str, Any]:
    """`pipectl report` over one pipeline of `report_leads` leads with their history
    (bench/report_workload.py): in-process, and as the CLI writing JSON and HTML."""
    log(f"report: building a pipeline of {plan.report_leads:,} leads with history")
    db = workdir / "report.db"
    built = run_child(
        [
            sys.executable,
            str(BENCH / "report_workload.py"),
            str(db),
            "--leads",
            str(plan.report_leads),
        ]
    )
    log("  timing the report")
    timed = run_child(
        [
            sys.executable,
            str(BENCH / "report_workload.py"),
            str(db),
            "--time",
            str(plan.report_runs),
        ]
    )
    cli_json = pipectl(db, "report", "--pipeline", "outreach", "--json")
    cli_html = pipectl(db, "report", "--pipeline", "outreach", "--html", str(workdir / "r.html"))
    result = {
        "leads": plan.report_leads,
        "rows": json.loads(built.stdout.strip().splitlines()[-1]),
        "db_mib": round(db.stat().st_size / 2**20, 1),
        "build": built.figures(),
        **json.loads(timed.stdout.strip().splitlines()[-1]),
        "cli_json": cli_json.figures(),
        "cli_html": cli_html.figures(),
    }
    for p in db.parent.glob(f"{db.name}*"):
        p.unlink()
    return result


def compare(plan: Plan, measurements: dict[str, Any]) -> list[dict[str, Any]]:
    """The naive loop against pipectl's find-and-claim (its time in _claim) and its whole
    tick, with the same sends due in the same database."""
    ticks = {d["leads"]: d for d in measurements["due"] if d["released"] == plan.due[0]}
    rows = []
    for naive in measurements["naive"]:
        due = ticks[naive["leads"]]
        claim_s = due["store"]["_claim"]["ms"] / 1000
        rows.append(
            {
                "leads": naive["leads"],
                "naive_s": naive["seconds"],
                "find_and_claim_s": round(claim_s, 4),
                "tick_s": due["seconds"],
                "find_and_claim_x": round(naive["seconds"] / claim_s),
                "tick_x": round(naive["seconds"] / due["seconds"]),
            }
        )
    return rows


def table(results: dict[str, Any]) -> str:
    """One line per figure: what, value, target, met, wall time and peak RSS of its process."""
    m, lines = results["measurements"], []

    def add(what: str, value: str, target: str, ok: bool | None, proc: dict[str, float]) -> None:
        lines.append(line(what, value, target, ok, proc))

    imp = next(b for b in m["build"] if b["leads"] == results["plan"]["import_size"])
    add(
        f"1 import {imp['leads']:,} rows",
        f"{imp['import']['rows_per_s']:,} rows/s",
        ">= 20,000",
        imp["import"]["rows_per_s"] >= 20_000,
        imp["import"],
    )
    a = m["import_anchor"]
    add(
        f"  import {a['rows']:,} rows, pipectl",
        f"{a['pipectl']['rows_per_s']:,} rows/s",
        "",
        None,
        a["pipectl"],
    )
    add(
        f"  sqlite-utils insert --csv, same {a['rows']:,}",
        f"{a['sqlite_utils']['rows_per_s']:,} rows/s",
        "",
        None,
        a["sqlite_utils"],
    )
    add(
        "  pipectl import vs sqlite-utils insert",
        f"{a['x_faster']:.2f}x as fast",
        "> 1x",
        a["x_faster"] > 1,
        {},
    )
    for b in m["build"]:
        add(
            f"  import of {b['leads']:,} rows, peak memory",
            f"{b['import']['peak_rss_mib']:.0f} MiB",
            "< 200 MiB",
            b["import"]["peak_rss_mib"] < 200,
            b["import"],
        )
    what, figure, target, met = admission_lines(max(m["build"], key=lambda b: b["leads"]))
    add(what, figure, target, met, max(m["build"], key=lambda b: b["leads"])["admission"])
    for b in m["build"]:
        add(
            f"  admission of {b['leads']:,} enrollments",
            f"{b['admission']['enrollments_per_s']:,} /s",
            "",
            None,
            b["admission"],
        )
    base = m["idle"][0]["best_round_ms"]
    for i in m["idle"]:
        add(
            f"2 idle tick, {i['leads']:,} leads (in-process)",
            f"{i['best_round_ms']:.1f} ms (cpu {i['cpu_ms']:.1f})",
            "< 100 ms, 2x",
            i["best_round_ms"] < 100 and i["best_round_ms"] <= 2 * base,
            i["process"],
        )
        add(
            f"  idle tick, {i['leads']:,} leads (CLI process)",
            f"{i['cli_median_s']:.2f} s",
            "",
            None,
            {"wall_s": i["cli_median_s"], "peak_rss_mib": i["cli_peak_rss_mib"]},
        )
    for d in m["due"]:
        add(
            f"3 due tick, {d['leads']:,} leads, {d['released']:,} due",
            f"{d['actions_per_s']:,}/s (cpu {d['cpu_s']:.2f} s)",
            ">= 5,000",
            d["actions_per_s"] >= 5000,
            d["process"],
        )
        add(
            "  each run (median above)",
            " / ".join(f"{n:,}" for n in d["runs_actions_per_s"]),
            "",
            None,
            {},
        )
        add(
            "  time in claim / record (ms)",
            f"{d['store']['_claim']['ms']:.0f} / {d['store']['_record_results']['ms']:.0f}",
            "",
            None,
            {},
        )
    p = m["pool"]
    add(
        f"4 pool {p['sends']:,} x {p['latency_s'] * 1000:.0f} ms, {p['workers']} workers",
        f"{p['seconds']:.1f} s ({p['efficiency']:.0%})",
        f"{p['ideal_s']:.1f} s +10%",
        p["seconds"] <= 1.1 * p["ideal_s"],
        p["process"],
    )
    n = m["noisy"]
    add(
        "5 noisy: p99 lateness, small accounts",
        f"{n['small']['p99_s']:.0f} s",
        "< 60 s",
        n["small"]["p99_s"] < 60 and not n["small"]["unsent"],
        n["process"],
    )
    add(
        f"  p99 lateness, big account ({n['big']['sends']:,})",
        f"{n['big']['p99_s']:.0f} s",
        "",
        None,
        {},
    )
    for c, naive in zip(m["compare"], m["naive"], strict=True):
        add(
            f"6 naive loop, {c['leads']:,} leads",
            f"{c['naive_s']:.2f} s",
            "",
            None,
            naive["process"],
        )
        add(
            "  pipectl find-and-claim",
            f"{c['find_and_claim_s'] * 1000:.1f} ms ({c['find_and_claim_x']:,}x)",
            ">= 1,000x",
            c["find_and_claim_x"] >= 1000,
            {},
        )
        add(
            "  pipectl whole tick",
            f"{c['tick_s'] * 1000:.0f} ms ({c['tick_x']:,}x)",
            ">= 100x",
            c["tick_x"] >= 100,
            {},
        )
    for what, figure, target, met in startup_lines(m["startup"]) if "startup" in m else ():
        add(what, figure, target, met, {})
    sync = m.get("sync") or {}
    if sync.get("skipped"):
        add("7 inbound sync: skipped", sync["skipped"][:18], "", None, {})
    for f in sync.get("first", []):
        add(
            f"7 first sync, {f['messages']:,} messages",
            f"{f['messages_per_s']:,} msg/s",
            "",
            None,
            f["process"],
        )
    for i in sync.get("incremental", []):
        add(
            f"  sync, nothing new, {i['messages']:,} in mailbox",
            f"{i['median_ms']:.0f} ms, {i['uid_searches']} search",
            "< 200 ms",
            i["median_ms"] < 200 and i["uid_searches"] == 1,
            i["process"],
        )
    if sync.get("idle_tick"):
        t = sync["idle_tick"]
        add(
            "  idle tick with inbox / --no-sync",
            f"{t['with_sync_median_ms']:.0f} / {t['without_sync_median_ms']:.0f} ms",
            "",
            None,
            t["process"],
        )
    if "senders" in m:
        senders_rows(m["senders"], add)
    if "postgres" in m:
        pg_rows(m["postgres"], add)
    r = m["report"]
    add(
        f"8 report, pipeline of {r['leads']:,} leads (in-process)",
        f"{r['median_ms']:.0f} ms (best {r['best_ms']:.0f})",
        "< 2 s",
        r["median_ms"] < 2000,
        r["cli_json"],
    )
    add(
        "  report --json / --html as a CLI process",
        f"{r['cli_json']['wall_s']:.2f} / {r['cli_html']['wall_s']:.2f} s",
        "< 2 s",
        r["cli_json"]["wall_s"] < 2,
        r["cli_html"],
    )
    add(
        "  backfill of the counters (migration)",
        f"{r['rows']['backfill_s']:.1f} s",
        "",
        None,
        r["build"],
    )
    return _head(lines)


def senders_rows(m: dict[str, Any], add: Any) -> None:
    """The due tick of one channel beside the same sends over sender mailboxes."""
    one, many = m["one_channel"], m["over_senders"]
    add(
        f"3 due tick, {m['sends']:,} sends, one channel",
        f"{one['actions_per_s']:,}/s (cpu {one['cpu_s']:.2f} s)",
        ">= 5,000",
        one["actions_per_s"] >= 5000,
        one["process"],
    )
    add(
        f"  same, over {m['sender_count']} senders",
        f"{many['actions_per_s']:,}/s (cpu {many['cpu_s']:.2f} s)",
        ">= 5,000",
        many["actions_per_s"] >= 5000,
        many["process"],
    )


def line(what: str, value: str, target: str, ok: bool | None, proc: dict[str, float]) -> str:
    mark = "" if ok is None else ("yes" if ok else "NO")
    return (
        f"{what:<44} {value:>18} {target:>14} {mark:>4} "
        f"{proc.get('wall_s', 0):>8.1f} {proc.get('peak_rss_mib', 0):>8.0f}"
    )


def _head(lines: list[str]) -> str:
    head = (
        f"{'measurement':<44} {'figure':>18} {'target':>14} {'met':>4} {'wall s':>8} {'RSS MiB':>8}"
    )
    return "\n".join([head, "-" * len(head), *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    parser.add_argument(
        "--only-senders", action="store_true", help="only the due ticks with sender mailboxes"
    )
    parser.add_argument(
        "--only",
        choices=["admission", "postgres", "huey"],
        help="one piece: admission (import the largest size, one tick), postgres (its rows"
        " beside SQLite's; bench/results-postgres.json), huey (Huey beside the due tick)",
    )
    opts = parser.parse_args()
    plan = QUICK if opts.quick else Plan()
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    if opts.only_senders:
        with tempfile.TemporaryDirectory(prefix="pipectl-bench-") as scratch:
            m = senders_measurement(plan, Path(scratch), log)
        rows: list[str] = []
        senders_rows(m, lambda *a: rows.append(line(*a)))
        print(json.dumps(m, indent=2), file=sys.stderr)
        print(_head(rows))
        return

    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="pipectl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pg_plan = QUICK_PG if opts.quick else PgPlan()
    if opts.only in ("postgres", "huey"):
        try:
            postgres = opts.only == "postgres"
            m = pg_measurements(pg_plan, workdir, log, postgres=postgres, with_huey=not postgres)
        finally:
            if opts.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        out = opts.out.with_name(f"results-{opts.only}.json")
        piece = {"machine": machine(), "plan": {**asdict(pg_plan), "quick": opts.quick}, **m}
        out.write_text(json.dumps(piece, indent=2) + "\n")
        piece_rows: list[str] = []
        pg_rows(m, lambda *a: piece_rows.append(line(*a)))
        print(_head(piece_rows))
        print(f"\n{time.perf_counter() - started:.0f} s in all; results in {out}")
        return
    if opts.only == "admission":
        try:
            _, built = build(max(plan.sizes), workdir, [Account("acme", NURTURE)], log)
        finally:
            if opts.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        what, figure, target, met = admission_lines(built)
        print(f"{what:<44} {figure:>18} {target:>14} {'yes' if met else 'NO':>4}")
        print(json.dumps(built))
        return
    try:
        log(f"import side by side with sqlite-utils insert: {plan.side_by_side:,} rows")
        measurements = {"import_anchor": side_by_side(workdir, plan.side_by_side)}
        measurements.update(leads_measurements(plan, workdir, log))
        measurements["pool"] = pool_measurement(plan, workdir, log)
        measurements["noisy"] = noisy_measurement(plan, workdir, log)
        measurements["senders"] = senders_measurement(plan, workdir, log)
        measurements["report"] = report_measurement(plan, workdir, log)
        measurements["compare"] = compare(plan, measurements)
        measurements["startup"] = startup_measurement(workdir, plan.startup_runs, log)
        measurements["sync"] = sync_measurements(plan.sync_sizes, plan.sync_runs, workdir, log)
        measurements["postgres"] = pg_measurements(pg_plan, workdir, log)
    finally:
        if opts.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "machine": machine(),
        "plan": {**asdict(plan), "quick": opts.quick, "postgres": asdict(pg_plan)},
        "total_s": round(time.perf_counter() - started, 1),
        "measurements": measurements,
    }
    opts.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\n{results['total_s']:.0f} s in all; results in {opts.out}")


if __name__ == "__main__":
    main()
