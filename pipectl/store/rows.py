"""What the store hands the scheduler and takes back: typed rows, not dictionaries to guess at.

The scheduler imports these; the store never imports the scheduler's own objects.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]  # a claimed send, as the claim read it
# The scheduler's rule for which claimed sends start now: (claimed, skip) -> to start.
Choose = Callable[[list[Row], Collection[int]], list[Row]]


def health_key(row: Row) -> tuple[int, str]:
    """Whose health a send tells: its sender mailbox's (`email:<address>`), else its
    account's channel's."""
    return row["account_id"], row.get("health_channel") or row["channel"]


@dataclass
class Claim:
    """What one turn's transaction did: sends claimed, sends started (and dropped: skipped
    as they were about to start, or released), and internal work done in place."""

    sends: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    internal: int = 0
    deferred: int = 0
    skipped: int = 0
    failed: int = 0  # internal actions that failed (counted in `internal` too)
    suppressed: int = 0  # sends failed as they were about to start: a suppressed address


@dataclass
class Result:
    """The outcome of one send, computed by a worker thread and written by the tick."""

    action: dict[str, Any]  # the claimed row
    outcome: str  # "done" | "retry" | "failed" | "held" (its channel failed: not an attempt)
    finished_at: str
    error: str | None = None
    retry_at: str | None = None  # "retry": when; "held": the channel's next probe, if delayed
    reached: bool = False  # the send reached the server: its channel works
    recipient: str | None = None
    message_id: str | None = None
    provider_id: str | None = None
    subject: str | None = None  # an email's, as sent: a threaded follow-up's `Re: `
    references: str | None = None  # an email's References header, when it was threaded


# The scheduler's results that came in since a turn began: () -> results (see `step`).
Late = Callable[[], list[Result]]


@dataclass(frozen=True)
class Ledger:
    """What the tick holds as it claims, as plain values: how much more it may claim, and
    what each account has claimed or in flight. The scheduler builds it; the claim reads it."""

    capacity: int  # sends the tick may claim now, all accounts together
    ahead: int  # an account claims up to this many times its concurrency
    held: Mapping[tuple[int, str], int] = field(default_factory=dict)  # claimed or in flight
    served: Mapping[int, int] = field(default_factory=dict)  # account id -> its last turn
    waiting: tuple[Row, ...] = ()  # claimed, not started

    def room(self, account_id: int, concurrency: int) -> int:
        """How many more sends this account may claim now."""
        held = sum(n for (a, _), n in self.held.items() if a == account_id)
        return max(0, concurrency * self.ahead - held)


@dataclass(frozen=True)
class HookTarget:
    """A hook as the tick posts to it: settings as written (`${VAR}`s resolved at send time)."""

    id: int
    url: str
    secret: str | None
    headers: Mapping[str, str]
    timeout: float
    retry: Mapping[str, int]  # attempts, backoff, max_backoff


@dataclass(frozen=True)
class HookDelivery:
    """One event due to one hook: the exact body to post, and its attempts so far."""

    id: int  # hook_events.id
    event_id: str
    type: str
    payload: str
    attempts: int


@dataclass
class HookBatch:
    """A hook's due events, oldest first: posted in order, stopping at the first refused."""

    hook: HookTarget
    events: list[HookDelivery]


@dataclass(frozen=True)
class HookOutcome:
    """The result of posting one event, computed by a worker and written by the tick."""

    delivery: HookDelivery
    hook: HookTarget
    delivered: bool
    finished_at: str
    error: str | None = None
    retry_after: float | None = None
