"""The tick's worker threads: claimed sends in, results out, no database.

Two queues instead of a future per send: a tick may perform thousands of sends a second,
and the main thread (the one writer) then spends its time writing, not waiting on futures.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")  # what a worker is handed: a claimed send
R = TypeVar("R")  # what it hands back: a result


class Workers(Generic[T, R]):
    """`count` threads, started as they are needed, each running `perform` on one item at a
    time. `results` waits for what they finish; `close` lets them finish and joins them."""

    def __init__(self, count: int, perform: Callable[[T], R]):
        self.count = count
        self.perform = perform
        self.todo: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[tuple[R | None, BaseException | None]] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.busy = 0  # items submitted whose results have not been taken
        self.error: BaseException | None = None  # a worker's, raised by the next `results`

    def submit(self, item: T) -> None:
        self.busy += 1
        if len(self.threads) < min(self.busy, self.count):
            thread = threading.Thread(
                target=self._work, name=f"pipectl-send-{len(self.threads)}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        self.todo.put(item)

    def results(self, timeout: float, gather: float = 0.0) -> list[R]:
        """What the workers finished: waits up to `timeout` for one, then `gather` seconds
        more for those finishing with it (not longer: a worker that finished first would
        wait idle). A worker's unexpected error is raised here, after the results that came
        with it have been returned (they are sends that happened: they must be written)."""
        if self.error is not None:
            raised, self.error = self.error, None
            raise raised
        out: list[R] = []
        try:
            result, error = self.done.get(timeout=timeout)
            until = time.monotonic() + gather
            while True:
                self.busy -= 1
                if error is not None:
                    self.error = error
                    break
                out.append(result)  # type: ignore[arg-type]
                if not self.busy:
                    break
                result, error = self.done.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            pass
        if not out and self.error is not None:
            error, self.error = self.error, None
            raise error
        return out

    def ready(self) -> list[R]:
        """What the workers have finished by now, without waiting. A worker's unexpected
        error is kept for `results` to raise, after these are written."""
        out: list[R] = []
        while self.error is None:
            try:
                result, error = self.done.get_nowait()
            except queue.Empty:
                break
            self.busy -= 1
            if error is not None:
                self.error = error
                break
            out.append(result)  # type: ignore[arg-type]
        return out

    def close(self) -> None:
        for _ in self.threads:
            self.todo.put(None)
        for thread in self.threads:
            thread.join()

    def _work(self) -> None:
        while (item := self.todo.get()) is not None:
            try:
                self.done.put((self.perform(item), None))
            except BaseException as e:  # handed to the main thread, which stops the tick
                self.done.put((None, e))
