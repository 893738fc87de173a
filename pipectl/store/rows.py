"""What the store hands the scheduler and takes back: typed rows, not dictionaries to guess at.

The scheduler imports these; the store never imports the scheduler's own objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol


@lru_cache(maxsize=4096)
def snapshot(params: str) -> dict[str, Any]:
    """An action's params, parsed once per distinct text: leads entering a stage share its
    snapshot, and thousands of sends a second would parse the same JSON. Read only."""
    return json.loads(params)


class ActionKeys(Protocol):
    """What the lifecycle needs of an action to move its lead on: whose it is, where, and its
    settings (`on_failure`). A `ClaimedSend` or an `ActionRow`."""

    @property
    def id(self) -> int: ...
    @property
    def lead_id(self) -> int: ...
    @property
    def enrollment_id(self) -> int: ...
    @property
    def lead_stage_id(self) -> int: ...
    @property
    def params(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ActionRow:
    """An action read whole (`SELECT *`): a wait or a move the claim does in place, a reply's
    wait, a send that bounced."""

    id: int
    lead_id: int
    account_id: int
    enrollment_id: int
    lead_stage_id: int
    type: str
    status: str
    params: dict[str, Any]
    perform_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> ActionRow:
        """From a `lead_stage_actions` row read by name."""
        return cls(
            row["id"],
            row["lead_id"],
            row["account_id"],
            row["enrollment_id"],
            row["lead_stage_id"],
            row["type"],
            row["status"],
            snapshot(row["params"]),
            row["perform_at"],
        )


@dataclass(frozen=True, slots=True)
class SendAccount:
    """What a claimed send carries of its account: read once per account and claim."""

    key: str
    timezone: str
    concurrency: int
    instance: str  # the database's random id, part of the Message-ID
    channel_config: dict[str, Any]  # the channel's settings, ${VAR} kept; inbound ones left out


@dataclass(frozen=True, slots=True)
class ClaimedSend:
    """A due send as the claim read it: the action, its lead, its account's settings, the
    claim that fences its result. Built by `from_row`; never changed in place (worker threads
    read it while the tick holds it, and a rolled back claim must leave nothing behind): the
    claim's later steps make copies (`started`, `as_probe`, `in_thread`, `from_sender`)."""

    id: int
    lead_id: int
    account_id: int
    enrollment_id: int
    lead_stage_id: int
    pipeline_id: int  # the enrollment's: the report counts the send under it
    type: str  # "email" | "sms"
    channel: str
    params: dict[str, Any]  # the action's snapshot, shared between sends: read only
    attempt: int  # which attempt this send makes: those before it, plus one
    perform_at: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    fields: str | None  # the lead's custom fields, JSON
    timezone: str | None  # the lead's
    sender_id: int | None  # the lead's sender mailbox, kept or assigned by the claim
    account_key: str
    account_timezone: str
    concurrency: int  # the account's
    instance: str
    channel_config: dict[str, Any]  # the account's channel, with its sender's settings
    claim_token: str
    sender_address: str | None = None  # set when the claim assigned a sender mailbox
    thread: dict[str, Any] | None = None  # `thread: true`: the previous email answered
    probe: bool = False  # its channel is failing: this send is the tick's probe

    @classmethod
    def from_row(cls, row: Sequence[Any], account: SendAccount, token: str) -> ClaimedSend:
        """From the claim's row (`SEND_COLUMNS` in the claim's SQL, in this order)."""
        (id_, lead_id, account_id, enrollment_id, lead_stage_id, pipeline_id) = row[:6]
        type_, channel, params = row[6:9]
        attempts, perform_at, email, phone, first, last, fields, timezone, sender = row[9:18]
        return cls(
            id_,
            lead_id,
            account_id,
            enrollment_id,
            lead_stage_id,
            pipeline_id,
            type_,
            channel,
            snapshot(params),
            attempts + 1,
            perform_at,
            email,
            phone,
            first,
            last,
            fields,
            timezone,
            sender,
            account.key,
            account.timezone,
            account.concurrency,
            account.instance,
            account.channel_config,
            token,
        )

    @property
    def health_channel(self) -> str:
        """Whose health the send tells: its sender mailbox's (`email:<address>`), else its
        account's channel's."""
        return f"email:{self.sender_address}" if self.sender_address else self.channel

    @property
    def health_key(self) -> tuple[int, str]:
        return self.account_id, self.health_channel

    @property
    def address(self) -> str | None:
        """Where it goes: the lead's email or phone."""
        return self.email if self.channel == "email" else self.phone

    def started(self, attempt: int) -> ClaimedSend:
        """The send as it starts: the attempt the database counted, when the claim's guess
        was wrong (it never is while the claim holds: no one else counts its attempts)."""
        return self if attempt == self.attempt else replace(self, attempt=attempt)

    def as_probe(self) -> ClaimedSend:
        return replace(self, probe=True)

    def in_thread(self, previous: dict[str, Any] | None) -> ClaimedSend:
        return replace(self, thread=previous)

    def from_sender(self, sender_id: int, address: str, settings: Mapping[str, Any]) -> ClaimedSend:
        """Sent from a sender mailbox: its settings over the channel's."""
        return replace(
            self,
            sender_id=sender_id,
            sender_address=address,
            channel_config={**self.channel_config, **settings},
        )


# The scheduler's rule for which claimed sends start now: (claimed, skip) -> to start.
Choose = Callable[[list[ClaimedSend], Collection[int]], list[ClaimedSend]]


@dataclass
class Claim:
    """What one turn's transaction did: sends claimed, sends started (and dropped: skipped
    as they were about to start, or released), and internal work done in place."""

    sends: list[ClaimedSend] = field(default_factory=list)
    started: list[ClaimedSend] = field(default_factory=list)
    dropped: list[ClaimedSend] = field(default_factory=list)
    internal: int = 0
    deferred: int = 0
    skipped: int = 0
    failed: int = 0  # internal actions that failed (counted in `internal` too)
    suppressed: int = 0  # sends failed as they were about to start: a suppressed address


@dataclass
class Result:
    """The outcome of one send, computed by a worker thread and written by the tick."""

    action: ClaimedSend
    outcome: str  # "done" | "retry" | "failed" | "held" (its channel failed: not an attempt)
    finished_at: str
    error: str | None = None
    retry_at: str | None = None  # "retry": when
    reached: bool = False  # the send reached the server: its channel works
    # Its channel failed (every "held"; a probe that went out and failed is "retry" or
    # "failed" too): the channel stays failing, its next probe after `retry_after` at least.
    channel_failed: bool = False
    retry_after: float | None = None  # seconds the server asked for, if it did
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
    waiting: tuple[ClaimedSend, ...] = ()  # claimed, not started

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
    sent: bool = True  # False: nothing was posted (a ${VAR} missing): not an attempt
