"""Recording a batch of send results, set-based: a few statements a batch, not a few a send.

Runs inside the tick's transaction (`store.scheduler.step` and `record_results`). Every write
is fenced by the claim it completes (`id`, `claim_token`, `status = 'running'`), so a late or
repeated result cannot overwrite a newer state; what a fence refused counts as stale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..statuses import ActionStatus
from .batches import chunks, joined, rows_marks
from .database import Part
from .rows import ClaimedSend, Result

# A send to retry (or recover) whose stage the lead left while it ran (a reply moved it, it
# was stopped) is skipped: retrying it would reach a lead that has moved on.
PENDING_UNLESS_LEFT = (
    "CASE WHEN (SELECT exited_at FROM lead_stages s WHERE s.id = lead_stage_actions.lead_stage_id)"
    " IS NULL THEN 'pending' ELSE 'skipped' END"
)
# Each row of the batch (`joined`: v.column1 its id) fenced by its claim token (v.column2).
FENCED = "AND lead_stage_actions.claim_token = v.column2 AND lead_stage_actions.status = 'running'"
DELIVERY_COLUMNS = (
    "account_id, lead_id, lead_stage_action_id, channel, recipient, message_id, provider_id, "
    "sent_at, sender_id, subject, thread_references"
)


class ResultsSQL(Part):
    def record(self, results: list[Result]) -> dict[str, int]:
        """Write the results: sends done (delivered, each lead's next action due), to retry,
        held with their failing channel, failed. Returns the counts by outcome."""
        counts = {"done": 0, "retry": 0, "failed": 0, "held": 0, "stale": 0}
        self.store.health.record_health(results)
        by_outcome: dict[str, list[Result]] = {}
        for r in results:
            by_outcome.setdefault(r.outcome, []).append(r)
        done = self._done(by_outcome.pop("done", []))
        counts["done"] = len(done)
        counts["retry"] = self._again(by_outcome.pop("retry", []), held=False)
        counts["held"] = self._again(by_outcome.pop("held", []), held=True)
        counts["failed"] = self._failed([r for rest in by_outcome.values() for r in rest])
        counts["stale"] = len(results) - sum(counts.values())
        return counts

    def _done(self, results: list[Result]) -> list[Result]:
        """Sends that went out: done, delivered, and each lead's next action due (in bulk)."""
        written = self._fenced_update(
            results,
            "status = 'done', performed_at = v.column3, last_error = NULL",
            lambda r: (r.finished_at,),
            "",
        )
        done = [r for r in results if r.action.id in written]
        for batch in chunks(done):
            self.conn.execute(
                f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES {rows_marks(len(batch), 11)}",
                [value for r in batch for value in _delivery(r)],
            )
        self.store.counters.sent([_sent(r.action, r.finished_at) for r in done])
        # Every email that went out counts against its sender's day, even one whose result
        # is stale (another runner took the send over meanwhile and sends it again).
        self.store.senders.count_sent(results)
        self.store.lifecycle.advance_many([(r.action, r.finished_at) for r in done])
        return done

    def _again(self, results: list[Result], *, held: bool) -> int:
        """Sends to try again: `retry` at their `retry_at` (an attempt was made), or `held`
        because their channel failed (due as they were: not an attempt). A send whose lead
        left its stage meanwhile is skipped, and the lead's current stage goes on."""
        if held:
            update = (
                f"status = {PENDING_UNLESS_LEFT}, attempts = CASE WHEN attempts > 0 "
                "THEN attempts - 1 ELSE 0 END, claimed_at = NULL, last_error = v.column3, "
                "claim_token = NULL"
            )
            row_values: Callable[[Result], tuple[Any, ...]] = lambda r: (r.error,)  # noqa: E731
        else:
            update = (
                f"status = {PENDING_UNLESS_LEFT}, perform_at = v.column3, "
                "last_error = v.column4, claim_token = NULL"
            )
            row_values = lambda r: (r.retry_at, r.error)  # noqa: E731
        written = self._fenced_update(
            results,
            update,
            row_values,
            ", lead_stage_actions.status, lead_stage_actions.enrollment_id",
        )
        for r in results:
            row = written.get(r.action.id)
            if row is not None and row[1] == ActionStatus.SKIPPED:
                self.store.lifecycle.resume_enrollment(row[2], r.finished_at)
        return len(written)

    def _failed(self, results: list[Result]) -> int:
        """Sends that failed for good: the hooks hear of it, then the stage's `on_failure`
        (unless the lead left the stage meanwhile: its current stage goes on)."""
        written = self._fenced_update(
            results,
            "status = 'failed', performed_at = v.column3, last_error = v.column4",
            lambda r: (r.finished_at, r.error),
            ", (SELECT exited_at FROM lead_stages s WHERE s.id = lead_stage_actions.lead_stage_id)",
        )
        for r in results:
            row = written.get(r.action.id)
            if row is None:
                continue
            a = r.action
            self.store.lifecycle.action_failed(a, r.finished_at)
            left = row[1] is not None
            if not left:
                self.store.scheduler.on_failure(a, r.finished_at)
            if left or self.store.scheduler.left_stage(a):  # on_failure may have moved it
                self.store.lifecycle.resume_enrollment(a.enrollment_id, r.finished_at)
        return len(written)

    def _fenced_update(
        self,
        results: list[Result],
        assignments: str,
        row_values: Callable[[Result], tuple[Any, ...]],
        returning: str,
    ) -> dict[int, Any]:
        """One `UPDATE ... FROM (VALUES ...)` a chunk: each row (id, claim token, then
        `row_values(result)` as v.column3, ...) written only while its claim holds. Returns
        the rows written by id: (id, then what `returning` adds)."""
        written: dict[int, Any] = {}
        for batch in chunks(results):
            batch_from, params = joined(
                "lead_stage_actions",
                [(r.action.id, r.action.claim_token, *row_values(r)) for r in batch],
            )
            for row in self.conn.execute(
                f"UPDATE lead_stage_actions SET {assignments} {batch_from} {FENCED} "
                f"RETURNING lead_stage_actions.id{returning}",
                params,
            ).fetchall():
                written[row[0]] = row
        return written


def _sent(a: ClaimedSend, at: str) -> tuple[int, int, int, str, str]:
    return (a.account_id, a.pipeline_id, a.enrollment_id, a.channel, at)


def _delivery(r: Result) -> tuple[Any, ...]:
    a = r.action
    return (
        a.account_id,
        a.lead_id,
        a.id,
        a.channel,
        r.recipient or "",
        r.message_id,
        r.provider_id,
        r.finished_at,
        a.sender_id,
        r.subject,
        r.references,
    )
