"""Delivering webhook events during the tick: due events out, outcomes back, no database here
but through the store, from the tick thread.

Each hook's events go in order, one POST at a time, from a thread of their own (at most
`HOOK_WORKERS` hooks at once): a receiver that is down or hangs delays its own events and
nothing else. The tick thread claims and records (the one writer); a POST still running when
the tick's time is up is left behind, its event pending, so the next tick sends it again
with the same id (at least once).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from .. import defaults
from ..durations import add_seconds
from ..store import Store, WriteError, is_busy
from ..store.rows import HookBatch, HookOutcome
from ..wording import counted
from .retry import MAX_RETRY_AFTER, retry_delay

WAKE_EVERY = 0.1
# Between the tick's turns, due events are looked for at most this often (the tick turns
# thousands of times a second while sends complete); a hook's finished batch restarts at once.
LOOK_EVERY = 0.05


class HookCourier:
    """The tick's webhook deliveries: `turn` between the tick's steps, `finish` at its end."""

    def __init__(
        self,
        store: Store,
        now: Callable[[], str],
        *,
        workers: int = defaults.HOOK_WORKERS,
        batch: int = defaults.HOOK_BATCH,
        lease: float = defaults.MAX_SECONDS + 60,
    ):
        self.store = store
        self.now = now
        self.workers = workers
        self.batch = batch
        self.lease = lease  # a hook stays this tick's this long, unless released before
        self.token = uuid.uuid4().hex
        self.enabled = store.hooks.any_live()  # no hook: every call below returns at once
        self.busy: set[int] = set()  # hooks being posted to, until their outcomes are written
        self.finished: set[int] = set()  # hooks whose batches are done, outcomes not written
        # (hook id, outcomes, whether its batch is over): each POST's outcome as it comes.
        self.done: queue.SimpleQueue[tuple[int, list[HookOutcome], bool]] = queue.SimpleQueue()
        self.stop_at = float("inf")  # monotonic: no POST starts that could end after it
        self.stopping = threading.Event()  # the tick is over: threads start no more POSTs
        self.unwritten: list[HookOutcome] = []
        self.looked = 0.0  # when due events were last looked for
        self.delivered = 0
        self.refused = 0

    def turn(self, *, starting: bool = True) -> None:
        """Write the outcomes that came in; start the hooks whose events are due."""
        if not self.enabled:
            return
        finished = self._collect(timeout=0)
        self._write()
        if not starting or len(self.busy) >= self.workers:
            return
        if finished or time.monotonic() - self.looked >= LOOK_EVERY:
            self.looked = time.monotonic()
            now = self.now()
            for batch in self.store.hook_delivery.due_batches(
                now,
                self.busy,
                self.batch,
                token=self.token,
                lease_until=add_seconds(now, self.lease),
                most=self.workers - len(self.busy),
            ):
                self._start(batch)

    def finish(self, deadline: float, stop: threading.Event | None = None) -> None:
        """After the sends: deliver what is due (this tick's events too) until nothing is,
        until `deadline` (monotonic) or until `stop` is set (SIGTERM); a POST still in flight
        then is left behind, its event pending for the next tick."""
        self.stop_at = deadline

        def over() -> bool:
            return time.monotonic() >= deadline or (stop is not None and stop.is_set())

        while self.enabled:
            self.looked = 0.0  # look every time here: no sends to make room for
            self.turn(starting=not over())
            if not self.busy or over():
                break
            self._collect(timeout=min(WAKE_EVERY, max(0.0, deadline - time.monotonic())))
        self.stopping.set()
        self._collect(timeout=0)
        self._write()
        # POSTs still unanswered are left: their hooks are free for the next tick.
        self.store.hook_delivery.release_hooks(self.busy - self.finished, self.token)

    def _start(self, batch: HookBatch) -> None:
        self.busy.add(batch.hook.id)
        thread = threading.Thread(
            target=self._post_batch,
            args=(batch,),
            name=f"pipectl-hook-{batch.hook.id}",
            daemon=True,
        )
        thread.start()

    def _post_batch(self, batch: HookBatch) -> None:
        """In a worker thread: the hook's events in order, until one is refused."""
        import httpx  # on first use: an idle tick loads no HTTP client

        from ..channels.webhooks import Endpoint, post_event

        posted_count = 0
        hook = batch.hook
        endpoint = Endpoint(hook.url, hook.secret, hook.headers, hook.timeout)
        try:
            with httpx.Client(follow_redirects=False) as client:
                for event in batch.events:
                    # None started once the tick's time is up (a POST still running then
                    # is left behind: its event goes again, same id, next tick).
                    if self.stopping.is_set() or time.monotonic() >= self.stop_at:
                        break
                    posted = post_event(client, endpoint, event.type, event.event_id, event.payload)
                    outcome = HookOutcome(
                        event,
                        hook,
                        posted.delivered,
                        self.now(),
                        posted.error,
                        posted.retry_after,
                        posted.sent,
                    )
                    posted_count += 1
                    self.done.put((hook.id, [outcome], False))  # written as it comes
                    if not posted.delivered:
                        break
        except Exception as e:  # a bug must not lose the outcomes of POSTs that happened
            if posted_count < len(batch.events):
                event = batch.events[posted_count]
                error = f"{type(e).__name__}: {e}"
                failed = HookOutcome(event, hook, False, self.now(), error)
                self.done.put((hook.id, [failed], False))
        finally:
            self.done.put((hook.id, [], True))

    def _collect(self, timeout: float) -> bool:
        """Take the batches the threads finished (waiting up to `timeout` for one); any?"""
        finished = False
        try:
            hook_id, outcomes, over = (
                self.done.get(timeout=timeout) if timeout else self.done.get_nowait()
            )
            while True:
                self.unwritten += outcomes
                if over:
                    finished = True
                    self.finished.add(hook_id)
                hook_id, outcomes, over = self.done.get_nowait()
        except queue.Empty:
            pass
        return finished

    def _write(self) -> None:
        """Record the outcomes; when another process holds the database, try next turn."""
        if not self.finished and not self.unwritten:
            return
        rows = []
        for o in self.unwritten:
            at = self._retry_at(o)
            if at is None and not o.delivered:
                tries = counted(o.delivery.attempts + 1, "attempt")
                o = replace(o, error=f"gave up after {tries}: {o.error}")
            rows.append((o, at))
        try:
            self.store.hook_delivery.record_deliveries(rows, self.finished, self.token)
        except WriteError as e:
            if is_busy(e):
                return
            raise
        self.delivered += sum(o.delivered for o in self.unwritten)
        self.refused += sum(not o.delivered for o in self.unwritten)
        self.unwritten = []
        self.busy -= self.finished  # only now: events not yet written would go twice
        self.finished = set()

    @staticmethod
    def _retry_at(outcome: HookOutcome) -> str | None:
        """When a refused event is tried again; None: never (its attempts are used up)."""
        if outcome.delivered:
            return None
        retry = {**defaults.HOOK_RETRY, **outcome.hook.retry}
        if not outcome.sent:  # nothing went out (a ${VAR} missing): held, as a channel's sends
            return add_seconds(
                outcome.finished_at, retry_delay(1, retry["backoff"], retry["backoff"])
            )
        attempts = outcome.delivery.attempts + 1
        if attempts >= retry["attempts"]:
            return None
        wait = min(outcome.retry_after, MAX_RETRY_AFTER) if outcome.retry_after else None
        delay = retry_delay(attempts, retry["backoff"], retry["max_backoff"], wait)
        return add_seconds(outcome.finished_at, delay)
