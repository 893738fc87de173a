"""The tick's transactions: recover at the start, then one step per turn (write the results,
admit, claim, start), and the tick's row at the end.

Public methods open their own transaction (`on_failure` and `left_stage` run inside the
caller's). The work of a step is other parts': `store.results` writes results,
`store.admission` admits, `store.claim` reads due work, `store.starts` starts sends or puts
them back. Every completion is fenced by the claim token, so a late or repeated write
cannot overwrite a newer state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import defaults
from ..statuses import EnrollmentStatus
from .admission_sql import admit_batch_size
from .database import Part
from .results_sql import PENDING_UNLESS_LEFT
from .rows import ActionKeys, Choose, Claim, ClaimedSend, Late, Ledger, Result
from .runners_sql import RUNNER_ID_LENGTH
from .stages_sql import marks


class SchedulerSQL(Part):
    # --- start of a tick --------------------------------------------------------------

    def recover_running(self, runner_id: str = "") -> int:
        """Rows left `running` by a tick that died are due again: on SQLite every such row (the
        lock proves its tick died); against PostgreSQL those of runners that are not working
        within their lease (this runner's own leftovers included)."""
        self.store.lifecycle.forget_config()  # the YAML may have changed since last tick
        self.store.hooks.forget()
        with self.transaction():  # read under the write lock: a runner claims only once recorded
            live = self.store.runners.live_others(runner_id)
            orphan = "a.status = 'running'"
            params: tuple[Any, ...] = ()
            if live:
                orphan += (
                    f" AND substr(a.claim_token, 1, {RUNNER_ID_LENGTH}) NOT IN ({marks(live)})"
                )
                params = tuple(live)
            moved_on = self.conn.execute(
                "SELECT DISTINCT a.enrollment_id, s.exited_at FROM lead_stage_actions a "
                f"JOIN lead_stages s ON s.id = a.lead_stage_id WHERE {orphan} "
                "AND s.exited_at IS NOT NULL",
                params,
            ).fetchall()
            recovered = self.conn.execute(
                f"UPDATE lead_stage_actions SET status = {PENDING_UNLESS_LEFT}, claim_token = NULL "
                f"WHERE id IN (SELECT a.id FROM lead_stage_actions a WHERE {orphan})",
                params,
            ).rowcount
            for enrollment_id, left_at in moved_on:
                self.store.lifecycle.resume_enrollment(enrollment_id, left_at)
            if self.database.postgres:
                self.store.runners.mark_recovered(live, runner_id)
            return recovered

    def admit_queued(self, now: str, cap: int | None = None) -> int:
        """Start queued enrollments, oldest first, up to each account's `active_leads` and
        `cap` (a batch)."""
        with self.transaction():
            return self._admit(now, cap or admit_batch_size())

    def step(
        self,
        now: str,
        token: str,
        results: list[Result],
        ledger: Ledger,
        choose: Choose,
        *,
        claiming: bool = True,
        claim_now: bool = True,
        late: Late | None = None,
    ) -> tuple[dict[str, int], int, Claim]:
        """One transaction per turn of the tick: write the results that came in; admit queued
        leads and claim what is due (`claim_now`); start the claimed sends that workers are
        free for (results, admitted count, claim). When the tick stops claiming, its claimed
        sends not started are released instead, due again as they were.

        `late()` gives the results that came in while the transaction waited for the write
        lock (another runner's turn): they are written in this turn too, so under contention
        turns grow instead of queueing up."""
        with self.transaction():
            if late is not None:
                results = [*results, *late()]
            counts = self._record_results(results)
            claim, admitted = Claim(), 0
            starts = self.store.starts
            if not claiming:
                starts.release(list(ledger.waiting), token, now, claim)
                return counts, 0, claim
            held = starts.hold_failing(ledger, token, now) if results else []
            if claim_now:
                admitted = self._admit(now, admit_batch_size())
                claim = self._claim(now, token, ledger)
            skip = {send.id for send in held}
            starts.start(choose(claim.sends, skip), token, now, claim)
            claim.dropped += held
            # Last, so the others read it fresh however long this took: its claims are its own.
            self.store.runners.beat(token)
            return counts, admitted, claim

    def _admit(self, now: str, cap: int) -> int:
        return self.store.admission.admit(now, cap)

    # --- the claim --------------------------------------------------------------------

    def claim_due(self, now: str, token: str, ledger: Ledger) -> Claim:
        """One short write transaction: do due internal work in place, and claim due sends
        fairly across accounts within their concurrency and rates."""
        with self.transaction():
            return self._claim(now, token, ledger)

    def _claim(self, now: str, token: str, ledger: Ledger) -> Claim:
        return self.store.claim.claim(now, token, ledger)

    # --- results ----------------------------------------------------------------------

    def record_results(self, results: Iterable[Result]) -> dict[str, int]:
        """Write a batch of send results in one transaction; each fenced by its claim."""
        with self.transaction():
            return self._record_results(results)

    def fail_claimed(self, action: ClaimedSend, error: str, now: str) -> None:
        """The last resort when a result cannot be written: fail the action (fenced), so a bug
        after a send never makes every later tick send it again."""
        with self.transaction():
            if self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'failed', performed_at = ?, "
                "last_error = ? WHERE id = ? AND claim_token = ? AND status = 'running'",
                (now, error, action.id, action.claim_token),
            ).rowcount:
                self.store.lifecycle.action_failed(action, now)

    def _record_results(self, results: Iterable[Result]) -> dict[str, int]:
        return self.store.results.record(list(results))

    def left_stage(self, action: ActionKeys) -> bool:
        """The lead left the action's stage (a reply, a stop) while the action ran."""
        return (
            self.conn.execute(
                "SELECT exited_at FROM lead_stages WHERE id = ?", (action.lead_stage_id,)
            ).fetchone()["exited_at"]
            is not None
        )

    def on_failure(self, action: ActionKeys, now: str) -> None:
        """The stage's `on_failure`: stop the lead, continue with the next action, or move."""
        policy = action.params.get("on_failure") or defaults.ON_FAILURE
        if policy == "continue":
            self.store.lifecycle.advance(action, now)
            return
        error = None
        if policy != defaults.ON_FAILURE:
            error = self.store.lifecycle.move(
                action.enrollment_id, action.lead_id, action.lead_stage_id, policy, now
            )
            if error is None:
                return
            self.conn.execute(
                "UPDATE lead_stage_actions SET last_error = last_error || '; on_failure: ' || ? "
                "WHERE id = ?",
                (error, action.id),
            )
        self.store.lifecycle.stop_enrollment(
            action.enrollment_id, action.lead_id, EnrollmentStatus.FAILED, now
        )

    # --- reporting the tick -----------------------------------------------------------

    def count_due(self, now: str) -> int:
        """Due rows still pending: what the limits (or the time budget) held back."""
        return self.conn.execute(
            "SELECT count(*) FROM lead_stage_actions WHERE status = 'pending' AND perform_at <= ?",
            (now,),
        ).fetchone()[0]

    def record_tick(self, summary: dict[str, Any]) -> None:
        """Keep a row per tick, for `status` and the operator."""
        columns = [k for k in summary if k in TICK_COLUMNS]
        with self.transaction():
            self.conn.execute(
                f"INSERT INTO ticks ({', '.join(columns)}) VALUES ({marks(columns)})",
                [summary[k] for k in columns],
            )


TICK_COLUMNS = (
    "started_at",
    "now",
    "seconds",
    "claimed",
    "done",
    "retried",
    "failed",
    "held_back",
    "admitted",
    "recovered",
    "pid",
)
