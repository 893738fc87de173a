"""One scheduler pass: lock -> recover -> admit -> claim -> perform -> record, within budget.

Worker threads only render and send; this thread is the one database writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .. import defaults
from ..channels import ChannelError, PermanentError, SendAction, TransientError
from ..channels.render import render_message
from ..channels.senders import SenderPool
from ..durations import format_time, utcnow
from ..store import Store, WriteError, is_busy
from ..store.rows import Claim, ClaimedSend, Late, Result
from ..store.runners_sql import claim_token, new_runner_id
from ..wording import counted
from .dispatch import Dispatch
from .hooks import HookCourier
from .lock import tick_lock
from .retry import retry_delay
from .workers import Workers

# How long the tick keeps trying to write the results of sends that went out while another
# process holds the database: losing them would send those messages again.
RESULTS_PATIENCE = 300.0
GATHER_SECONDS = 0.0005
# The tick claims at least this often while sends are in flight, and wakes this often.
CLAIM_EVERY = 1.0
WAKE_EVERY = 0.25
# This process, as the runners table knows it: `pipectl run` keeps it across its ticks.
RUNNER_ID = new_runner_id()
_NO_COUNTS = {"done": 0, "retry": 0, "failed": 0, "held": 0, "stale": 0}


class Clock:
    """The tick's notion of now: real time, or `--now` moving forward with real time."""

    def __init__(self, start: datetime | None = None):
        self.base = start or utcnow()
        self.started = time.monotonic()

    def now(self) -> str:
        return format_time(self.base + timedelta(seconds=time.monotonic() - self.started))


@dataclass
class TickSummary:
    started_at: str
    now: str
    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    held_back: int = 0
    admitted: int = 0
    recovered: int = 0
    seconds: float = 0.0
    pid: int = field(default_factory=os.getpid)
    would_send: list[dict[str, Any]] = field(default_factory=list)
    # Channels failing for reasons that are not the leads' (their sends are held back).
    failing_channels: list[dict[str, Any]] = field(default_factory=list)
    sync_errors: list[str] = field(default_factory=list)
    hooks_delivered: int = 0  # webhook events delivered, and attempts refused (retried later)
    hooks_refused: int = 0

    def line(self) -> str:
        return (
            f"tick {self.now}: claimed {self.claimed}, done {self.done}, "
            f"retried {self.retried}, failed {self.failed}, held back {self.held_back}, "
            f"admitted {self.admitted}"
            + (f", events {self.hooks_delivered} delivered" if self.hooks_delivered else "")
            + (f", {self.hooks_refused} refused" if self.hooks_refused else "")
            + f" in {self.seconds:.2f}s"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tick(
    db_path: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    workers: int = defaults.WORKERS,
    max_seconds: float = defaults.MAX_SECONDS,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    outbox_dir: Path | None = None,
    senders: SenderPool | None = None,
    locked: bool = False,
    sync_seconds: float = defaults.SYNC_SECONDS,
) -> TickSummary:
    """Run one pass; raises LockHeld (exit 75) when another tick holds the lock.

    `locked`: the caller already holds the lock. `senders` replaces the channels
    (benchmarks pass one that only sleeps). `sync_seconds`: time for the inbound sync that
    runs first (0: none)."""
    clock = Clock(now)
    if dry_run:
        return _dry_run(Store(db_path), clock, workers)
    with contextlib.nullcontext() if locked else tick_lock(db_path):
        store = Store(db_path)
        try:
            sync_errors = _sync_first(store, clock, sync_seconds) if sync_seconds > 0 else []
            senders = senders or SenderPool(outbox_dir or store.path.resolve().parent / "outbox")
            try:
                with store.runners.keeping_alive(RUNNER_ID):
                    summary = _run(
                        store, clock, workers, max_seconds, stop or threading.Event(), senders
                    )
                summary.sync_errors = sync_errors
                return summary
            finally:
                senders.close()
        finally:
            store.close()


def _sync_first(store: Store, clock: Clock, seconds: float) -> list[str]:
    """Read what arrived before claiming, so a reply stops the follow-up this tick would send.
    A source that fails never stops the sends: its error is kept for `status`."""
    from ..inbound.sync import sync

    try:
        return [e for a in sync(store, now=clock.now(), seconds=seconds) for e in a.total().errors]
    except Exception as e:  # even the database: the tick itself reports that when it claims
        return [f"inbound sync: {type(e).__name__}: {e}"]


def _run(
    store: Store,
    clock: Clock,
    workers: int,
    max_seconds: float,
    stop: threading.Event,
    senders: SenderPool,
) -> TickSummary:
    started = time.monotonic()
    summary = TickSummary(started_at=format_time(utcnow()), now=clock.now())
    store.runners.start(RUNNER_ID)
    summary.recovered = store.scheduler.recover_running(RUNNER_ID)
    token = claim_token(RUNNER_ID)
    dispatch = Dispatch(workers)
    pool: Workers[ClaimedSend, Result] = Workers(workers, lambda s: perform(s, senders, clock))
    # Webhooks: threads of their own, never the sends'; a hook is this tick's while it runs.
    courier = HookCourier(store, clock.now, lease=max_seconds + 60)
    results: list[Result] = []
    worked: dict[tuple[int, str], bool] = {}  # did each channel's latest send get through?
    claimed_at, cut = 0.0, True

    def late() -> list[Result]:
        """Results that came in while the turn waited for the write lock (see `step`)."""
        arrived = _blame_the_send(pool.ready(), worked)
        for result in arrived:  # written in this step: their workers are free
            dispatch.finished(result.action)
        return arrived

    try:
        while True:
            claiming = not stop.is_set() and time.monotonic() - started < max_seconds
            for result in results:  # written in this step: their workers are free
                dispatch.finished(result.action)
            claim_now = claiming and _time_to_claim(dispatch, claimed_at, cut)
            capacity = dispatch.capacity()
            counts, admitted, claim = _step(
                store, clock, token, dispatch, results, claiming, claim_now, late
            )
            if claim_now:  # `cut`: it took all it could, so more may be due
                claimed_at, cut = time.monotonic(), len(claim.sends) >= capacity
            dispatch.update(claim.sends, claim.started, claim.dropped)
            for send in claim.started:
                pool.submit(send)
            courier.turn(starting=claiming)
            summary.done += counts["done"] + claim.internal - claim.failed
            summary.retried += counts["retry"]
            summary.failed += counts["failed"] + claim.failed + claim.suppressed
            summary.admitted += admitted
            summary.claimed += len(claim.started) + claim.internal + claim.suppressed
            summary.skipped += claim.skipped
            summary.deferred += claim.deferred
            progressed = bool(
                admitted or claim.sends or claim.internal or claim.skipped or claim.deferred
            )
            if not pool.busy:
                # Go on while work is due; once stopping, until the unstarted claims are back
                # (a busy database can make the stopping turn write the results only).
                if dispatch.queued_count() or (claiming and progressed):
                    results = []
                    continue
                break
            # A moment more than the first gathers the sends finishing together into one write.
            results = pool.results(timeout=WAKE_EVERY, gather=GATHER_SECONDS)
            results = _blame_the_send(results, worked)
    finally:
        pool.close()
    courier.finish(time.monotonic() if stop.is_set() else started + max_seconds, stop)
    summary.hooks_delivered, summary.hooks_refused = courier.delivered, courier.refused
    store.runners.stop(RUNNER_ID)
    summary.held_back = store.scheduler.count_due(clock.now())
    summary.failing_channels = store.health.failing_channels()
    summary.seconds = round(time.monotonic() - started, 3)
    store.scheduler.record_tick(summary.as_dict())
    return summary


def _time_to_claim(dispatch: Dispatch, claimed_at: float, cut: bool) -> bool:
    """Claim when less than a round of claimed sends is left; when workers are free that the
    claimed sends cannot use (their accounts are at their concurrency) and the last claim
    was cut short by the tick's capacity (other accounts may have sends due); and at least
    every CLAIM_EVERY seconds (for what became due meanwhile: other accounts' sends, waits
    and moves, the next actions of leads whose sends were just written)."""
    return (
        dispatch.queued_count() < dispatch.workers
        or (cut and len(dispatch.choose([])) < dispatch.workers - dispatch.in_flight())
        or time.monotonic() - claimed_at >= CLAIM_EVERY
    )


def _step(
    store: Store,
    clock: Clock,
    token: str,
    dispatch: Dispatch,
    results: list[Result],
    claiming: bool,
    claim_now: bool,
    late: Late,
) -> tuple[dict[str, int], int, Claim]:
    """One transaction: write the results (and those that came in while it waited for the
    write lock: `late`), claim more (`claim_now`) and start what the free workers can take;
    once the tick stops claiming, release the claimed sends not started.

    The results are sends that happened: a result not written would make the next tick send
    again, so another writer is outwaited, and a result that cannot be written at all fails
    its action. Claimed sends that could not be started or released this time wait on."""
    if claiming and not (claim_now or results or dispatch.choose([])):
        return _NO_COUNTS, 0, Claim()
    results = list(results)  # grows by what `late` gives, for the fallbacks below too

    def arrived() -> list[Result]:
        more = late()
        results.extend(more)
        return more

    deadline = time.monotonic() + RESULTS_PATIENCE
    while True:
        try:
            return store.scheduler.step(
                clock.now(),
                token,
                list(results),
                dispatch.ledger(with_waiting=bool(results) or not claiming),
                dispatch.choose,
                claiming=claiming,
                claim_now=claim_now,
                late=arrived,
            )
        except WriteError as e:
            if not is_busy(e):
                if results:
                    return _record_one_by_one(store, clock, results), 0, Claim()
                raise
            if time.monotonic() > deadline:
                raise  # still locked after minutes: the claims stay `running`, recovered later
            if not results:
                if dispatch.in_flight():
                    return _NO_COUNTS, 0, Claim()  # finish what is in flight
                raise
            try:  # keep only the results, and try again
                return store.scheduler.record_results(results), 0, Claim()
            except WriteError as again:
                if not is_busy(again) or time.monotonic() > deadline:
                    raise
        except Exception:
            if not results:
                raise
            return _record_one_by_one(store, clock, results), 0, Claim()


def _record_one_by_one(store: Store, clock: Clock, results: list[Result]) -> dict[str, int]:
    """The batch could not be written: write each result alone; fail what still cannot be."""
    counts = dict(_NO_COUNTS)
    for r in results:
        try:
            for k, n in store.scheduler.record_results([r]).items():
                counts[k] += n
        except Exception as e:
            store.scheduler.fail_claimed(
                r.action, f"internal error recording the result: {e}", clock.now()
            )
            counts["failed"] += 1
    return counts


def perform(row: ClaimedSend, senders: SenderPool, clock: Clock) -> Result:
    """In a worker thread: render and send one message; no database here. A send that
    reached the server says its channel works; a ChannelError says it does not."""
    try:
        action = SendAction(
            action_id=row.id,
            lead_id=row.lead_id,
            account=row.account_key,
            type=row.type,
            params=row.params,
            lead=lead_context(row),
            config=row.channel_config,
            instance=row.instance,
            sent_at=clock.now(),
            thread=row.thread,
        )
        message = render_message(action)
    except PermanentError as e:
        return Result(row, "failed", clock.now(), error=str(e))
    except Exception as e:  # an unexpected error is not the lead's fault: retry it
        return _retry_or_fail(row, f"{type(e).__name__}: {e}", None, clock.now())
    try:
        provider_id = senders.send(message)
    except ChannelError as e:
        if row.probe and e.sent:
            return _probe_failed(row, e, clock.now())
        return _held(row, str(e), e.retry_after, clock.now())
    except PermanentError as e:
        return Result(row, "failed", clock.now(), error=str(e), reached=True)
    except TransientError as e:
        result = _retry_or_fail(row, str(e), e.retry_after, clock.now())
        result.reached = True
        return result
    except Exception as e:  # an unexpected error is not the lead's fault: retry it
        return _retry_or_fail(row, f"{type(e).__name__}: {e}", None, clock.now())
    return Result(
        row,
        "done",
        clock.now(),
        recipient=message.to,
        message_id=message.message_id,
        provider_id=provider_id,
        reached=True,
        subject=message.subject,
        references=message.headers.get("References"),
    )


def _blame_the_send(results: list[Result], worked: dict[tuple[int, str], bool]) -> list[Result]:
    """A channel error on a send right after a send of its channel got through, or followed
    by one in the same batch, is this send's own (a webhook answering 404 for one lead): it
    is retried as the lead's, with its attempts, so one send cannot hold itself and its
    channel for good. When a server goes down, the first failure after the last success is
    blamed this way, and the next ones hold the channel.
    `worked`: per (account, channel), whether its latest send in this tick got through."""
    last_reached = {r.action.health_key: i for i, r in enumerate(results) if r.reached}
    for i, r in enumerate(results):
        key = r.action.health_key
        if r.channel_failed:
            # A held send is blamed; a failed probe (already the lead's attempt) stays as it is.
            if r.outcome == "held" and (worked.get(key) or last_reached.get(key, -1) > i):
                results[i] = _retry_or_fail(r.action, r.error or "", r.retry_after, r.finished_at)
            worked[key] = False
        elif r.reached:
            worked[key] = True
    return results


def _held(row: ClaimedSend, error: str, retry_after: float | None, now: str) -> Result:
    """The channel failed, not the lead: the send is due again as it was, not an attempt;
    the channel's next probe backs off (and waits for the server's Retry-After)."""
    return Result(row, "held", now, error=error, channel_failed=True, retry_after=retry_after)


def _probe_failed(row: ClaimedSend, error: ChannelError, now: str) -> Result:
    """A probe that went out and failed was an attempt of its send: retried as the lead's
    own (its `retry` backoff, and failed after `retry.attempts`), while its channel stays
    failing and backs off; otherwise a text re-sent at every probe would never stop."""
    result = _retry_or_fail(row, str(error), error.retry_after, now)
    result.channel_failed, result.retry_after = True, error.retry_after
    return result


def _retry_or_fail(row: ClaimedSend, error: str, retry_after: float | None, now: str) -> Result:
    retry = {**defaults.RETRY, **(row.params.get("retry") or {})}
    if row.attempt >= retry["attempts"]:
        attempts = counted(row.attempt, "attempt")
        return Result(row, "failed", now, error=f"gave up after {attempts}: {error}")
    delay = retry_delay(row.attempt, retry["backoff"], retry["max_backoff"], retry_after)
    retry_at = format_time(
        datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(seconds=delay)
    )
    return Result(row, "retry", now, error=error, retry_at=retry_at)


def lead_context(row: ClaimedSend) -> dict[str, Any]:
    """The `lead` a template sees: its custom fields, then the standard ones."""
    lead: dict[str, Any] = json.loads(row.fields or "{}")
    lead["email"], lead["phone"] = row.email, row.phone
    lead["first_name"], lead["last_name"] = row.first_name, row.last_name
    lead["timezone"], lead["id"] = row.timezone, row.lead_id
    return lead


def _dry_run(store: Store, clock: Clock, workers: int) -> TickSummary:
    """What a tick would do now, through the same code, with every change rolled back."""
    summary = TickSummary(started_at=format_time(utcnow()), now=clock.now())
    try:
        with store.rolled_back():
            summary.recovered = store.scheduler.recover_running()
            summary.admitted = store.scheduler.admit_queued(clock.now())
            due = store.scheduler.count_due(clock.now())
            claim = store.scheduler.claim_due(clock.now(), "dry-run", Dispatch(workers).ledger())
            suppressed = store.suppressions.suppressed_sends(claim.sends)
            summary.claimed = len(claim.sends) + claim.internal
            summary.done = claim.internal
            summary.skipped = claim.skipped
            summary.deferred = claim.deferred
            summary.would_send = [
                {
                    "action_id": r.id,
                    "account": r.account_key,
                    "lead_id": r.lead_id,
                    "type": r.type,
                    "to": r.email if r.type == "email" else r.phone,
                    "perform_at": r.perform_at,
                    "suppressed": suppressed.get(r.id),
                    "sender": r.sender_address,
                }
                for r in claim.sends
            ]
            # Due now but not taken: what the accounts' limits hold back (the actions that
            # become due as these complete are not counted: a real tick would go on to them).
            taken = len(claim.sends) + claim.internal + claim.skipped + claim.deferred
            summary.held_back = max(0, due - taken)
    finally:
        store.close()
    return summary
