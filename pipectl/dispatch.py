"""Claimed sends between the claim and a worker thread. No SQL here.

A claim takes several times what the pool can start at once, so one transaction feeds
many sends. The claimed sends wait here, per account; as workers free up, the next ones
start within each account's `concurrency`, accounts in turns (the least recently served
first). A send that waited longer than `RECHECK_SECONDS` is checked again by the store
(stopped? do not contact?) before it starts.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from .limits import share

# An account claims up to this many times its concurrency (and the tick this many times its
# workers) ahead of what is in flight: enough that one claim feeds many sends, few enough
# that a claimed send starts within a few send times.
AHEAD = 8
RECHECK_SECONDS = 1.0

Row = dict[str, Any]


class Dispatch:
    """Which claimed sends wait, which are in flight, and what may be claimed or started."""

    def __init__(self, workers: int, ahead: int = AHEAD):
        self.workers = workers
        self.ahead = ahead
        # Per account id: claimed sends not started, oldest first, with when they were
        # claimed or last checked; sends in flight; when it last had a send started.
        self.queued: dict[int, deque[tuple[float, Row]]] = {}
        self.running: Counter[int] = Counter()
        self.served: dict[int, int] = {}
        # Per (account id, channel): claimed and not finished, which the rates count as sent.
        self.held: Counter[tuple[int, str]] = Counter()
        self.started = 0

    def capacity(self) -> int:
        """How many more sends the tick may claim now, all accounts together."""
        return max(0, self.workers * self.ahead - sum(self.held.values()))

    def room(self, account_id: int, concurrency: int) -> int:
        """How many more sends this account may claim now."""
        held = sum(n for (a, _), n in self.held.items() if a == account_id)
        return max(0, concurrency * self.ahead - held)

    def add(self, rows: list[Row]) -> None:
        """Sends just claimed wait for a worker."""
        now = time.monotonic()
        for row in rows:
            self.queued.setdefault(row["account_id"], deque()).append((now, row))
            self.held[row["account_id"], row["channel"]] += 1

    def requeue(self, rows: list[Row]) -> None:
        """Sends checked again (or whose check could not be written) wait at the front."""
        now = time.monotonic()
        for row in reversed(rows):
            self.queued.setdefault(row["account_id"], deque()).appendleft((now, row))

    def drop(self, rows: list[Row]) -> None:
        """Sends that will not start in this tick: released, or skipped by their check."""
        for row in rows:
            self.held[row["account_id"], row["channel"]] -= 1

    def take(self) -> list[Row]:
        """The sends to start now: within the free workers and each account's concurrency,
        accounts in turns; none that waited too long to go unchecked (see `stale`)."""
        limit = time.monotonic() - RECHECK_SECONDS
        free = self.workers - self.in_flight()
        wants = {}
        for account_id in sorted(self.queued, key=lambda a: (self.served.get(a, -1), a)):
            q = self.queued[account_id]
            fresh = 0
            while fresh < len(q) and q[fresh][0] >= limit:
                fresh += 1
            if fresh:
                wants[account_id] = min(fresh, q[0][1]["concurrency"] - self.running[account_id])
        taken = []
        for account_id, n in share(free, wants).items():
            for _ in range(n):
                taken.append(self.queued[account_id].popleft()[1])
            if n:
                self.running[account_id] += n
                self.started += 1
                self.served[account_id] = self.started
        return taken

    def needs_recheck(self) -> bool:
        """Some account's next send has waited long enough to be checked again."""
        limit = time.monotonic() - RECHECK_SECONDS / 2
        return any(q and q[0][0] < limit for q in self.queued.values())

    def stale(self) -> list[Row]:
        """Take out the sends that waited half of RECHECK_SECONDS or more, to be checked again
        (before `take` refuses them)."""
        limit = time.monotonic() - RECHECK_SECONDS / 2
        out = []
        for q in self.queued.values():
            while q and q[0][0] < limit:
                out.append(q.popleft()[1])
        return out

    def waiting(self) -> list[Row]:
        """Take out every send not started: released when the tick stops claiming."""
        out = [row for q in self.queued.values() for _, row in q]
        for q in self.queued.values():
            q.clear()
        return out

    def finished(self, row: Row) -> None:
        """A send came back from its worker (its result is written in the next step)."""
        self.running[row["account_id"]] -= 1
        self.held[row["account_id"], row["channel"]] -= 1

    def in_flight(self) -> int:
        return sum(self.running.values())

    def queued_count(self) -> int:
        return sum(len(q) for q in self.queued.values())
