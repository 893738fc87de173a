"""Time `pipectl leads import` of a generated CSV with enrollment: the target is >= 20,000 rows/s,
and faster than `sqlite-utils insert --csv` of the same file, in bounded memory (side_by_side).

Usage: python bench/import_bench.py --rows 100000 [--workdir /tmp/pipectl-bench] [--side-by-side]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIPECTL = [sys.executable, "-m", "pipectl"]
YAML = """\
version: 1
accounts:
  - {key: acme, name: Acme Roofing, timezone: America/New_York, country: US}
pipelines:
  - key: adwords
    account: acme
    name: Google Adwords Campaign
    stages:
      - key: inquired
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Thanks for asking."}
      - {key: won, outcome: won}
"""
FIRST = ["Maria", "David", "Sarah", "Tom", "Priya", "Jorge", "Emily", "Kevin", "Angela", "Linda"]
LAST = ["Gonzalez", "Johnson", "Lee", "Whitfield", "Patel", "Morales", "Chen", "O'Brien", "Russo"]
AREAS = ["212", "646", "718", "917", "347", "516", "201", "631", "914", "973"]
FORMATS = ["({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1-{a}-{b}-{c}", "{a}{b}{c}"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """A CRM-style export: email, names, US phones in mixed formats, custom columns."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "Email Address",
                "First Name",
                "Last Name",
                "Mobile Phone",
                "Company Name",
                "Lead Source",
                "Notes",
            ]
        )
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            phone = rng.choice(FORMATS).format(
                a=rng.choice(AREAS), b=f"{rng.randint(200, 999)}", c=f"{i % 10000:04d}"
            )
            w.writerow(
                [
                    f"{first}.{last}.{i}@example-{i % 97}.com".replace("'", ""),
                    first,
                    last,
                    phone,
                    f"Company {i % 5000}, Inc.",
                    rng.choice(["Google Ads", "Referral", "Website Form"]),
                    "Call after 5pm" if i % 10 == 0 else "",
                ]
            )


def side_by_side(workdir: Path, rows: int) -> dict[str, Any]:
    """`pipectl leads import` (validation, merge, enrollment) and `sqlite-utils insert --csv`
    (none of it) of one generated file, each a child process on a fresh database: wall time
    and peak RSS of each, and how many times faster pipectl is."""
    from workload import run_child  # workload imports this module

    csv_path, yaml_path = workdir / "side-by-side.csv", workdir / "side-by-side.yaml"
    generate(csv_path, rows)
    yaml_path.write_text(YAML)
    dbs = [workdir / "side-pipectl.db", workdir / "side-sqlite-utils.db"]
    for db in dbs:
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")):
            p.unlink(missing_ok=True)
    run_child([*PIPECTL, "--db", str(dbs[0]), "apply", str(yaml_path)])
    ours = run_child(
        [*PIPECTL, "--db", str(dbs[0]), "leads", "import", str(csv_path), "--account", "acme"]
        + ["--pipeline", "adwords"]
    )
    theirs = run_child(
        [sys.executable, "-m", "sqlite_utils", "insert", str(dbs[1]), "leads", str(csv_path)]
        + ["--csv"]
    )
    for p in [csv_path, *dbs]:
        for q in p.parent.glob(f"{p.name}*"):
            q.unlink()
    return {
        "rows": rows,
        "pipectl": {**ours.figures(), "rows_per_s": round(rows / ours.seconds)},
        "sqlite_utils": {**theirs.figures(), "rows_per_s": round(rows / theirs.seconds)},
        "x_faster": round(theirs.seconds / ours.seconds, 2),
    }


def run(*args: str, db: Path) -> float:
    start = time.perf_counter()
    subprocess.run([*PIPECTL, "--db", str(db), *args], check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pipectl-bench"))
    parser.add_argument(
        "--side-by-side", action="store_true", help="also time sqlite-utils insert --csv"
    )
    opts = parser.parse_args()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    if opts.side_by_side:
        print(json.dumps(side_by_side(opts.workdir, opts.rows), indent=2))
        return
    csv_path, yaml_path, db = (opts.workdir / n for n in ("leads.csv", "p.yaml", "bench.db"))
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    generate(csv_path, opts.rows)
    yaml_path.write_text(YAML)
    run("apply", str(yaml_path), db=db)
    first = run(
        "leads", "import", str(csv_path), "--account", "acme", "--pipeline", "adwords", db=db
    )
    again = run(
        "leads", "import", str(csv_path), "--account", "acme", "--pipeline", "adwords", db=db
    )
    for name, seconds in (("first import", first), ("second import (unchanged)", again)):
        print(f"{name}: {opts.rows} rows in {seconds:.2f} s = {opts.rows / seconds:,.0f} rows/s")


if __name__ == "__main__":
    main()
