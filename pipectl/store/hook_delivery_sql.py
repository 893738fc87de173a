"""Delivering webhook events: the tick claims a hook's due events, in order, and records
what its threads report. A hook is claimed by one tick at a time (`claimed_by` until
`claimed_until`), so with many runners one hook's events still go one at a time, in order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from .database import Part
from .rows import HookBatch, HookDelivery, HookOutcome, HookTarget


class HookDeliverySQL(Part):
    """The tick's SQL for webhooks: claim due events per hook, record outcomes, release."""

    def due_batches(
        self,
        now: str,
        busy: Collection[int],
        limit: int,
        *,
        token: str,
        lease_until: str,
        most: int = 1_000_000,
    ) -> list[HookBatch]:
        """Per hook not `busy`, its oldest pending events, up to `limit`, when the oldest is
        due (a hook's events go in order, so one waiting for its retry holds the rest), for
        at most `most` hooks; each hook returned is claimed by `token` until `lease_until`
        or `release_hooks`, so two runners never post one hook's events at once."""
        hooks = [
            hook
            for hook in self.conn.execute(
                "SELECT * FROM hooks WHERE removed_at IS NULL ORDER BY id"
            ).fetchall()
            if hook["id"] not in busy and self._head_due(hook["id"], now)
        ]
        if not hooks:
            return []  # the usual case: no write
        batches: list[HookBatch] = []
        with self.transaction():
            for hook in hooks:
                if len(batches) >= most:
                    break
                if not self.conn.execute(
                    "UPDATE hooks SET claimed_by = ?, claimed_until = ? WHERE id = ?"
                    " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?)",
                    (token, lease_until, hook["id"], token, now),
                ).rowcount:
                    continue  # another runner posts its events now
                batch = self._batch(hook, now, limit)
                if batch is None:
                    self._release([hook["id"]], token)
                else:
                    batches.append(batch)
        return batches

    def _head_due(self, hook_id: int, now: str) -> bool:
        head = self.conn.execute(
            "SELECT next_attempt_at FROM hook_events WHERE hook_id = ? AND status = 'pending'"
            " ORDER BY id LIMIT 1",
            (hook_id,),
        ).fetchone()
        return head is not None and (head[0] or "") <= now

    def _batch(self, hook: Any, now: str, limit: int) -> HookBatch | None:
        rows = self.conn.execute(
            "SELECT id, event_id, type, payload, attempts, next_attempt_at"
            " FROM hook_events WHERE hook_id = ? AND status = 'pending' ORDER BY id LIMIT ?",
            (hook["id"], limit),
        ).fetchall()
        if not rows or (rows[0]["next_attempt_at"] or "") > now:
            return None
        target = HookTarget(
            id=hook["id"],
            url=hook["url"],
            secret=hook["secret"],
            headers=json.loads(hook["headers"]),
            timeout=hook["timeout"],
            retry=json.loads(hook["retry"]),
        )
        events = [
            HookDelivery(r["id"], r["event_id"], r["type"], r["payload"], r["attempts"])
            for r in rows
        ]
        return HookBatch(target, events)

    def release_hooks(self, hook_ids: Collection[int], token: str) -> None:
        """Hooks whose batches this tick left behind (its time was up) are free again."""
        if hook_ids:
            with self.transaction():
                self._release(hook_ids, token)

    def _release(self, hook_ids: Collection[int], token: str) -> None:
        self.conn.executemany(
            "UPDATE hooks SET claimed_by = NULL, claimed_until = NULL"
            " WHERE id = ? AND claimed_by = ?",
            [(hook_id, token) for hook_id in hook_ids],
        )

    def record_deliveries(
        self,
        outcomes: Iterable[tuple[HookOutcome, str | None]],
        finished: Collection[int],
        token: str,
    ) -> None:
        """Write what the workers reported, in one transaction: delivered; or refused, tried
        again at the given time, or failed for good when that time is None. The `finished`
        hooks' batches are done: they are free again."""
        with self.transaction():
            self._release(finished, token)
            for outcome, retry_at in outcomes:
                d = outcome.delivery
                if outcome.delivered:
                    self.conn.execute(
                        "UPDATE hook_events SET status = 'delivered', attempts = attempts + 1,"
                        " delivered_at = ?, last_error = NULL WHERE id = ? AND status = 'pending'",
                        (outcome.finished_at, d.id),
                    )
                    self.conn.execute(
                        "UPDATE hooks SET last_error = NULL, failing_since = NULL,"
                        " last_delivered_at = ? WHERE id = ?",
                        (outcome.finished_at, outcome.hook.id),
                    )
                    continue
                self.conn.execute(
                    "UPDATE hook_events SET status = ?, attempts = attempts + ?,"
                    " next_attempt_at = ?, last_error = ? WHERE id = ? AND status = 'pending'",
                    (
                        "pending" if retry_at else "failed",
                        int(outcome.sent),
                        retry_at,
                        outcome.error,
                        d.id,
                    ),
                )
                self.conn.execute(
                    "UPDATE hooks SET last_error = ?,"
                    " failing_since = coalesce(failing_since, ?) WHERE id = ?",
                    (outcome.error, outcome.finished_at, outcome.hook.id),
                )
