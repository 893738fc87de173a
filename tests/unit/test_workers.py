"""Workers: real threads perform rows and hand results back to the one writer."""

from __future__ import annotations

import threading
from typing import Any

import pytest

# The one import of the module under test: when it moves, change this line only.
from pipectl.scheduler.workers import Workers


def collect(workers: Workers, n: int) -> list:
    out: list = []
    while len(out) < n:
        out += workers.results(timeout=5)
    return out


def test_every_submitted_row_comes_back_performed():
    workers: Workers[dict, Any] = Workers(3, lambda row: row["id"] * 10)
    for i in range(20):
        workers.submit({"id": i})
    try:
        assert sorted(collect(workers, 20)) == [i * 10 for i in range(20)]
        assert workers.busy == 0
    finally:
        workers.close()


def test_threads_start_as_needed_up_to_the_count():
    workers: Workers[dict, Any] = Workers(4, lambda row: row["id"])
    workers.submit({"id": 1})
    assert len(workers.threads) == 1
    for i in range(10):
        workers.submit({"id": i})
    assert len(workers.threads) == 4
    collect(workers, 11)
    workers.close()
    assert not any(t.is_alive() for t in workers.threads)


def test_results_returns_nothing_when_no_worker_finishes_in_time():
    release = threading.Event()
    workers: Workers[dict, Any] = Workers(1, lambda row: release.wait(5) and row["id"])
    workers.submit({"id": 7})
    try:
        assert workers.results(timeout=0.05) == []
    finally:
        release.set()
    assert collect(workers, 1) == [7]
    workers.close()


def test_a_workers_error_is_raised_after_the_results_that_came_before_it():
    def perform(row: dict) -> int:
        if row["id"] == 2:
            raise RuntimeError("disk on fire")
        return row["id"]

    workers: Workers[dict, Any] = Workers(1, perform)  # one thread: results arrive in order
    for i in (1, 2):
        workers.submit({"id": i})
    seen: list = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        while True:
            seen += workers.results(timeout=5, gather=0.5)
    assert seen == [1]
    workers.close()


def test_ready_returns_what_finished_without_waiting_and_keeps_an_error_for_results():
    release = threading.Event()

    def perform(row: dict) -> int:
        if row["id"] == 3:
            raise RuntimeError("disk on fire")
        if row["id"] == 2:
            release.wait(5)
        return row["id"]

    workers = Workers(1, perform)  # one thread: results arrive in order
    for i in (1, 2, 3):
        workers.submit({"id": i})
    try:
        deadline = threading.Event()
        seen: list = []
        while not seen:
            seen += workers.ready()  # never blocks: row 2 is still running
            deadline.wait(0.01)
        assert seen == [1] and workers.busy == 2
        assert workers.ready() == []
    finally:
        release.set()
    while workers.busy:
        seen += workers.ready()
        deadline.wait(0.01)
    assert seen == [1, 2]  # the error is not raised by ready...
    with pytest.raises(RuntimeError, match="disk on fire"):
        workers.results(timeout=0)  # ...but by the next results, after what came before it
    workers.close()
