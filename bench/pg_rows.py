"""The table's rows for bench/pg_bench.py's measurements: PostgreSQL beside SQLite, the
runners, and Huey beside the due tick (what, figure, target, met, process figures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Add = Callable[[str, str, str, "bool | None", dict[str, float]], None]


def rows(m: dict[str, Any], add: Add) -> None:
    """The table's rows: PostgreSQL beside SQLite, then Huey beside the due tick."""
    if m.get("skipped"):
        add("9 PostgreSQL: skipped", m["skipped"][:40], "", None, {})
    idle_rows(m.get("idle", []), add)
    for c in m.get("copy", []):
        add(
            f"9 db copy, {c['leads']:,} leads",
            f"{c['wall_s']:.1f} s ({c['rows_per_s']:,} rows/s)",
            "< 120 s" if c["leads"] >= 1_000_000 else "",
            c["wall_s"] < 120 if c["leads"] >= 1_000_000 else None,
            c,
        )
    runner_rows(m, add)
    d = m["due"]
    lite = d["sqlite"]
    add(
        f"9 due tick, {d['sends']:,} no-op sends, SQLite",
        f"{lite['sends_per_s']:,}/s (cpu {lite['cpu_s']:.2f} s)",
        "",
        None,
        lite["process"],
    )
    if "postgres" in d:
        pg = d["postgres"]
        add(
            "  same, PostgreSQL, one runner",
            f"{pg['sends_per_s']:,}/s (cpu {pg['cpu_s']:.2f} s)",
            ">= 3,000",
            pg["sends_per_s"] >= 3000,
            pg["process"],
        )
        add("  each run, SQLite | PostgreSQL", runs_text(lite, pg), "", None, {})
    h = d.get("huey")
    if not h:
        return
    add(
        f"  Huey, {h['tasks']:,} no-op tasks, {h['workers']} threads",
        f"{h['tasks_per_s']:,}/s (cpu {h['cpu_s']:.2f} s)",
        "",
        None,
        h["process"],
    )
    ratio = d["sqlite_vs_huey"]
    add("  SQLite due tick / Huey", f"{ratio:.2f}x", ">= 4x", ratio >= 4, {})


def idle_rows(idle: list[dict[str, Any]], add: Add) -> None:
    """Per backend, each size in-process and as a process, then largest / smallest; then
    PostgreSQL / SQLite at each size."""
    for backend, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        for i in idle:
            r = i[backend]
            add(
                f"9 idle tick, {name}, {i['leads']:,} leads, in-proc",
                f"{r['best_round_ms']:.1f} ms (cpu {r['cpu_ms']:.1f})",
                "< 100 ms",
                r["best_round_ms"] < 100,
                r["process"],
            )
            cli = r["cli"]
            add(
                "  same, tick -q --no-sync, whole process",
                f"{cli['wall_s'] * 1000:.0f} ms (cpu {cli['cpu_s'] * 1000:.0f})",
                "< 100 ms",
                cli["wall_s"] < 0.1,
                {"wall_s": cli["wall_s"]},
            )
        if len(idle) > 1:
            lo, hi = idle[0][backend], idle[-1][backend]
            x = hi["best_round_ms"] / lo["best_round_ms"]
            xp = hi["cli"]["wall_s"] / lo["cli"]["wall_s"]
            add(
                f"  {idle[-1]['leads']:,} / {idle[0]['leads']:,} leads, in-proc / process",
                f"{x:.2f}x / {xp:.2f}x",
                "<= 2x",
                x <= 2 and xp <= 2,
                {},
            )
    for i in idle:
        lite, pg = i["sqlite"], i["postgres"]
        x = pg["best_round_ms"] / lite["best_round_ms"]
        xp = pg["cli"]["wall_s"] / lite["cli"]["wall_s"]
        add(
            f"  PostgreSQL / SQLite, {i['leads']:,}, in-proc / process",
            f"{x:.2f}x / {xp:.2f}x",
            "",
            None,
            {},
        )


def runner_rows(m: dict[str, Any], add: Add) -> None:
    r = m.get("runners")
    if r:
        n = max(int(k) for k in r if k.isdigit())
        for k in ("1", str(n)):
            x = r[k]
            add(
                f"9 {k} runner(s) x {r['workers']} workers, {r['latency_s'] * 1000:.0f} ms sends",
                f"{x['deliveries_per_s']:,}/s",
                f"ideal {x['ideal_per_s']:,}",
                None,
                {"wall_s": x["seconds"]},
            )
        add(f"  {n} runners / 1 runner", f"{r['ratio']:.2f}x", ">= 3.5x", r["ratio"] >= 3.5, {})


def runs_text(lite: dict[str, Any], pg: dict[str, Any]) -> str:
    return " ".join(f"{n:,}" for n in lite["runs"]) + " | " + " ".join(f"{n:,}" for n in pg["runs"])
