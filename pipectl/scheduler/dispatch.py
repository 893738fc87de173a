"""Claimed sends between the claim and a worker thread. No SQL here.

A claim takes several times what the pool can start at once, so one claim feeds many
sends. The claimed sends wait here, per account; each turn of the tick, the store starts
those the free workers and each account's `concurrency` allow, accounts in turns (the least
recently served first), checking each lead again as it starts.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection

from ..store.rows import ClaimedSend, Ledger
from .limits import share

# An account claims up to this many times its concurrency (and the tick this many times its
# workers) ahead of what is in flight: one claim then feeds that many rounds of sends. A
# claimed send waits at most that many send times, and its lead is checked as it starts.
AHEAD = 16


class Dispatch:
    """Which claimed sends wait and which are in flight: what may be claimed and started.

    The claim gets a `ledger()` of plain values and `choose` as the rule for starting sends;
    the tick changes it once that transaction has committed (`update`, `finished`)."""

    def __init__(self, workers: int, ahead: int = AHEAD):
        self.workers = workers
        self.ahead = ahead
        self.queued: dict[int, deque[ClaimedSend]] = {}  # account id -> claimed, not started
        self.running: Counter[int] = Counter()  # account id -> started, result not written
        self.held: Counter[tuple[int, str]] = Counter()  # (account id, channel) -> both
        self.served: dict[int, int] = {}  # account id -> the turn it last had a send started
        self.turn = 0

    def capacity(self) -> int:
        """How many more sends the tick may claim now, all accounts together."""
        return max(0, self.workers * self.ahead - sum(self.held.values()))

    def room(self, account_id: int, concurrency: int) -> int:
        """How many more sends this account may claim now."""
        held = sum(n for (a, _), n in self.held.items() if a == account_id)
        return max(0, concurrency * self.ahead - held)

    def choose(self, claimed: list[ClaimedSend], skip: Collection[int] = ()) -> list[ClaimedSend]:
        """The sends to start now, from those waiting and those just claimed: within the free
        workers and each account's concurrency, accounts in turns. `skip`: waiting sends
        that are going back (their channel has just failed)."""
        queues: dict[int, list[ClaimedSend]] = {a: list(q) for a, q in self.queued.items() if q}
        if skip:
            kept = {a: [r for r in q if r.id not in skip] for a, q in queues.items()}
            queues = {a: q for a, q in kept.items() if q}
        for row in claimed:
            queues.setdefault(row.account_id, []).append(row)
        wants = {
            a: min(len(q), q[0].concurrency - self.running[a])
            for a, q in sorted(queues.items(), key=lambda aq: (self.served.get(aq[0], -1), aq[0]))
        }
        given = share(self.workers - self.in_flight(), wants)
        return [row for a, n in given.items() for row in queues[a][:n]]

    def ledger(self, with_waiting: bool = True) -> Ledger:
        """What the claim needs to know, as plain values, read-only (the claim changes nothing;
        the tick changes this only after the claim's transaction). `with_waiting`: the sends
        not started, needed only to release them or hold back a failing channel's."""
        return Ledger(
            capacity=self.capacity(),
            ahead=self.ahead,
            held=self.held,
            served=self.served,
            waiting=tuple(self.waiting()) if with_waiting else (),
        )

    def waiting(self) -> list[ClaimedSend]:
        """Every claimed send not started (released when the tick stops claiming)."""
        return [row for q in self.queued.values() for row in q]

    def update(
        self, claimed: list[ClaimedSend], started: list[ClaimedSend], dropped: list[ClaimedSend]
    ) -> None:
        """After the transaction: claimed sends wait; started and dropped ones leave."""
        self.turn += 1
        for row in claimed:
            self.queued.setdefault(row.account_id, deque()).append(row)
            self.held[row.account_id, row.channel] += 1
        gone = {row.id for row in started} | {row.id for row in dropped}
        if gone:
            for account_id, q in self.queued.items():
                if q and any(row.id in gone for row in q):
                    self.queued[account_id] = deque(row for row in q if row.id not in gone)
        for row in started:
            self.running[row.account_id] += 1
            self.served[row.account_id] = self.turn
        for row in dropped:
            self.held[row.account_id, row.channel] -= 1

    def finished(self, row: ClaimedSend) -> None:
        """A send's result was written: its worker and its place in the limits are free."""
        self.running[row.account_id] -= 1
        self.held[row.account_id, row.channel] -= 1

    def in_flight(self) -> int:
        return sum(self.running.values())

    def queued_count(self) -> int:
        return sum(len(q) for q in self.queued.values())
