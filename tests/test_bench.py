"""`bench/run.py --quick` still runs end to end, so `make bench` cannot rot unnoticed.

The full benchmark (minutes) runs only from `make bench`; this runs tiny sizes (seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the benchmark suite in a process

ROOT = Path(__file__).resolve().parent.parent


def plan_rows(results: dict) -> int:
    return results["plan"]["side_by_side"]


def test_quick_bench_writes_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    m = results["measurements"]
    assert set(m) >= {"build", "idle", "due", "pool", "noisy", "naive", "compare", "report"}
    assert results["machine"]["sqlite"] and results["plan"]["quick"] is True

    # 1. import and admission, with wall time and peak RSS of the child process
    (build,) = m["build"]
    assert build["import"]["rows_per_s"] > 0 and build["import"]["peak_rss_mib"] > 0
    assert build["admission"]["enrollments_per_s"] > 0
    # ... and side by side with sqlite-utils insert --csv of the same file
    anchor = m["import_anchor"]
    assert anchor["rows"] == plan_rows(results) and anchor["x_faster"] > 0
    assert anchor["pipectl"]["peak_rss_mib"] > 0 and anchor["sqlite_utils"]["wall_s"] > 0
    # 2. idle ticks found nothing to do, timed in-process and as a CLI process
    assert m["idle"][0]["best_round_ms"] > 0 and m["idle"][0]["cli_median_s"] > 0
    # 3. due ticks sent exactly what was released, nothing more
    plan = results["plan"]
    assert sorted(d["sends"] for d in m["due"]) == sorted(plan["due"])
    assert all(d["failed"] == 0 and d["actions_per_s"] > 0 for d in m["due"])
    # 4. the pool sent every message
    assert m["pool"]["sends"] == plan["pool_sends"] and m["pool"]["efficiency"] > 0
    # 5. every small account's lead got its email; lateness is measured
    small = m["noisy"]["small"]
    assert small["sends"] == plan["noisy_small_accounts"] * plan["noisy_small"]
    assert small["unsent"] == 0 and m["noisy"]["big"]["sends"] == plan["noisy_big"]
    # 6. the naive loop found the same due sends pipectl then sent
    (naive,) = m["naive"]
    assert naive["due"] == plan["due"][0]
    (row,) = m["compare"]
    assert row["naive_s"] > 0 and row["find_and_claim_s"] > 0 and row["tick_s"] > 0

    # 7. whole processes: an idle tick and status beside sqlite-utils and bare Python
    startup = m["startup"]["commands"]
    assert set(startup) == {
        "pipectl tick -q",
        "pipectl status",
        "sqlite-utils tables",
        "python -c pass",
    }
    assert all(c["cpu_s"] > 0 and c["wall_s"] > 0 for c in startup.values())
    # 7. inbound sync against Dovecot: the first sync read every message; with nothing new,
    # one UID SEARCH and no FETCH (skipped, with its reason, where Dovecot is missing)
    sync = m["sync"]
    if not sync.get("skipped"):
        assert [f["counts"]["fetched"] for f in sync["first"]] == list(plan["sync_sizes"])
        assert all(f["messages_per_s"] > 0 for f in sync["first"])
        assert [(i["uid_searches"], i["uid_fetches"]) for i in sync["incremental"]] == [
            (1, 0)
        ] * len(plan["sync_sizes"])
        assert sync["idle_tick"]["with_sync_median_ms"] > 0
    # 8. the report over a pipeline with history read the workload's figures back
    report = m["report"]
    leads = plan["report_leads"]
    assert report["enrolled"] == report["emailed"] == report["rows"]["leads"] == leads
    assert report["sent"] == report["rows"]["deliveries"]
    assert report["replies"] == leads // 10 and report["median_ms"] > 0
    assert report["cli_json"]["wall_s"] > 0 and report["cli_html"]["wall_s"] > 0

    # 9. Huey's consumer ran every no-op task beside SQLite's due tick of as many sends
    pg, pg_plan = m["postgres"], plan["postgres"]
    due = pg["due"]
    assert due["sqlite"]["sends"] == due["huey"]["ran"] == pg_plan["due_sends"]
    assert due["huey"]["tasks_per_s"] > 0 and due["sqlite_vs_huey"] > 0
    # 9. PostgreSQL beside SQLite (skipped with its reason where no server answers, never in CI)
    assert not (os.environ.get("CI") and pg.get("skipped")), pg.get("skipped")
    if not pg.get("skipped"):
        assert due["postgres"]["sends"] == pg_plan["due_sends"]
        assert due["postgres"]["failed"] == 0 and due["postgres"]["sends_per_s"] > 0
        assert [i["leads"] for i in pg["idle"]] == list(pg_plan["idle_sizes"])
        for i in pg["idle"]:
            for backend in ("sqlite", "postgres"):
                assert i[backend]["best_round_ms"] > 0 and i[backend]["cli"]["wall_s"] > 0
        # db copy brought every lead, with its enrollment, stage and two actions
        for c, size in zip(pg["copy"], pg_plan["idle_sizes"], strict=True):
            assert c["rows"]["leads"] == c["rows"]["lead_stages"] == size
            assert c["rows"]["lead_stage_actions"] == 2 * size and c["wall_s"] > 0
        # 1 runner, then 4 at once: every send once, by the runners together
        runners = pg["runners"]
        for count in ("1", str(pg_plan["runners"])):
            r = runners[count]
            assert r["sent"] == sum(r["done_per_runner"]) == pg_plan["runner_sends"]
            assert r["most_attempts"] == 1 and len(r["done_per_runner"]) == int(count)
        assert runners["ratio"] > 0
        assert "9 idle tick, PostgreSQL" in proc.stdout

    assert "measurement" in proc.stdout and "naive loop" in proc.stdout
    assert "8 report" in proc.stdout and "SQLite due tick / Huey" in proc.stdout
