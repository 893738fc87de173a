"""Huey as the reference for the due tick: no-op tasks in SqliteHuey, consumed by threads.

The tasks are enqueued first (timed apart), then huey's own Consumer (`worker_type="thread"`)
runs them; the figure is tasks/s from the consumer's start until the last task has run, as
the due tick's figure runs from its start until the last send is recorded. One run per
child process: python bench/huey_bench.py DB --tasks 10000 --workers 16 (prints one JSON
line). bench/pg_bench.py runs it beside SQLite's due tick of as many no-op sends.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any


def consume(db: Path, tasks: int, workers: int) -> dict[str, Any]:
    from huey import SqliteHuey
    from huey.consumer import Consumer

    huey = SqliteHuey("bench", filename=str(db))
    ran = 0
    lock = threading.Lock()
    all_ran = threading.Event()

    @huey.task()
    def noop(n: int) -> None:
        nonlocal ran
        with lock:
            ran += 1
            if ran == tasks:
                all_ran.set()

    start = time.perf_counter()
    for n in range(tasks):
        noop(n)
    enqueue_s = time.perf_counter() - start
    queued = huey.pending_count()
    consumer = Consumer(huey, workers=workers, worker_type="thread", periodic=False)
    start, cpu = time.perf_counter(), time.process_time()
    consumer.start()
    finished = all_ran.wait(timeout=600)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    consumer.stop(graceful=True)
    return {
        "tasks": tasks,
        "workers": workers,
        "queued": queued,
        "ran": ran,
        "finished": finished,
        "enqueue_s": round(enqueue_s, 3),
        "enqueued_per_s": round(tasks / enqueue_s),
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "tasks_per_s": round(ran / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    opts = parser.parse_args()
    logging.getLogger("huey").setLevel(logging.WARNING)
    for p in opts.db.parent.glob(f"{opts.db.name}*"):
        p.unlink()
    print(json.dumps(consume(opts.db, opts.tasks, opts.workers)))


if __name__ == "__main__":
    main()
