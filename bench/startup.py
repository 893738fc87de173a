"""Commands that start fast: CPU and wall time of whole processes, as cron starts them.

An idle `pipectl tick -q` and `pipectl status` on one database, beside `sqlite-utils tables`
on the same file and bare Python: the median of `runs` processes each, CPU from wait4, after
one warm-up run. As installed, modules are loaded from their compiled .pyc files, so the
children may write them even where PYTHONDONTWRITEBYTECODE is set (compiling pipectl's own
modules from source on every start would add 0.05-0.1 s to each figure).
Run alone with `python bench/startup.py [--runs 5]`; `make bench` includes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
GOAL_CPU_S = 0.2


def _command(name: str) -> list[str]:
    """The console script beside this Python (as cron runs it), else `python -m`."""
    script = BIN / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", name.replace("-", "_")]


def measure(argv: list[str], runs: int) -> dict[str, float]:
    """Median CPU (user + system) and wall seconds of `runs` processes of argv, after one."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cpu, wall = [], []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr[-2000:]}")
        if i:  # the first run is the warm-up
            cpu.append(usage.ru_utime + usage.ru_stime)
            wall.append(seconds)
    return {
        "cpu_s": round(statistics.median(cpu), 3),
        "wall_s": round(statistics.median(wall), 3),
        "runs": runs,
    }


def startup_measurement(workdir: Path, runs: int = 5, log: Any = None) -> dict[str, Any]:
    """Each command on one initialised database (no leads: the tick finds nothing due)."""
    db = workdir / "startup.db"
    pipectl = [*_command("pipectl"), "--db", str(db)]
    subprocess.run([*pipectl, "init"], check=True, capture_output=True)
    commands = {
        "pipectl tick -q": [*pipectl, "tick", "-q"],
        "pipectl status": [*pipectl, "status"],
        "sqlite-utils tables": [*_command("sqlite-utils"), "tables", str(db)],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    results = {}
    for name, argv in commands.items():
        if log:
            log(f"startup: {name} x {runs}")
        results[name] = measure(argv, runs)
    return {"goal_cpu_s": GOAL_CPU_S, "commands": results}


def lines(startup: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(what, figure, target, met) for bench/run.py's table."""
    rows = []
    for name, m in startup["commands"].items():
        goal = name.startswith("pipectl")
        rows.append(
            (
                f"7 start: {name}",
                f"cpu {m['cpu_s']:.3f} s (wall {m['wall_s']:.2f})",
                f"< {startup['goal_cpu_s']} s cpu" if goal else "",
                m["cpu_s"] < startup["goal_cpu_s"] if goal else None,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipectl-startup-") as tmp:
        result = startup_measurement(Path(tmp), opts.runs)
    for what, figure, target, met in lines(result):
        mark = "" if met is None else ("yes" if met else "NO")
        print(f"{what:<36} {figure:>28} {target:>14} {mark:>4}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
