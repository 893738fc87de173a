"""Moving leads through stages: enter (snapshot), advance, move, stop. Used by the tick,
replies and operator commands; every method runs inside the caller's transaction. (A lead's
first stage is entered by admission, for a batch at once: `admission_sql.py`.)"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from ..durations import add_seconds
from ..statuses import ActionStatus, Channel, EnrollmentStatus, HookEvent, sql_list
from .batches import chunks, joined
from .database import Part
from .rows import ActionKeys, snapshot

OPEN_STATUSES = (ActionStatus.WAITING, ActionStatus.PENDING, ActionStatus.AWAITING_REPLY)
MAX_MOVES_PER_MINUTE = 20  # more than this in a minute is a loop, not a sequence
# An action's next one in its stage: one column of it.
NEXT = (
    "(SELECT m.{} FROM lead_stage_actions m WHERE m.lead_stage_id = a.lead_stage_id "
    "AND m.sequence_number > a.sequence_number ORDER BY m.sequence_number LIMIT 1)"
)
FINISHED = (
    EnrollmentStatus.WON,
    EnrollmentStatus.LOST,
    EnrollmentStatus.IDLE,
    EnrollmentStatus.STOPPED,
    EnrollmentStatus.FAILED,
)


def marks(values: Collection[Any]) -> str:
    """`?, ?, ?`: one placeholder per value, for `IN (...)` and `VALUES (...)`."""
    return ", ".join("?" * len(values))


def channel_of(action_type: str) -> str:
    return action_type if action_type in (Channel.EMAIL, Channel.SMS) else Channel.INTERNAL.value


def activation(action_type: str, params: dict[str, Any], now: str) -> tuple[str, str]:
    """The status and perform_at an action takes when the one before it is done."""
    if action_type == "wait":
        return ActionStatus.PENDING, add_seconds(now, params.get("seconds", 0))
    if action_type == "wait_for_reply":
        return ActionStatus.AWAITING_REPLY, add_seconds(now, params.get("timeout", 0))
    return ActionStatus.PENDING, now


class StagesSQL(Part):
    def _enter_stage(
        self, enrollment_id: int, lead_id: int, account_id: int, stage_id: int, now: str
    ) -> None:
        """Open a lead_stage and snapshot the stage's actions; the first becomes due."""
        stage = self._stage(stage_id)
        lead_stage_id = self.conn.execute(
            "INSERT INTO lead_stages (lead_id, enrollment_id, pipeline_stage_id, entered_at) "
            "VALUES (?, ?, ?, ?) RETURNING id",
            (lead_id, enrollment_id, stage_id, now),
        ).fetchone()[0]
        self.store.counters.entered(lead_stage_id, now)
        actions = self._stage_actions(stage_id)
        if stage["outcome"] or not actions:
            self.set_enrollment(
                enrollment_id, lead_id, stage["outcome"] or EnrollmentStatus.IDLE, now
            )
            self.entered_events(lead_id, lead_stage_id, stage["outcome"], now)
            return
        self.set_enrollment(enrollment_id, lead_id, EnrollmentStatus.ACTIVE, now)
        self.entered_events(lead_id, lead_stage_id, None, now)
        # A send of the stage the lead just left may still be in flight (a reply moved it):
        # then this stage starts when that send's result is written (`_resume_enrollment`).
        sending = self._sending(enrollment_id)
        rows = []
        for i, action in enumerate(actions):
            status, perform_at = (
                activation(action["type"], json.loads(action["params"]), now)
                if i == 0 and not sending
                else (ActionStatus.WAITING, None)
            )
            rows.append(
                (
                    lead_stage_id,
                    lead_id,
                    account_id,
                    enrollment_id,
                    action["sequence_number"],
                    action["type"],
                    channel_of(action["type"]),
                    action["params"],
                    status,
                    perform_at,
                )
            )
        self.conn.executemany(
            "INSERT INTO lead_stage_actions (lead_stage_id, lead_id, account_id, enrollment_id, "
            "sequence_number, type, channel, params, status, perform_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def entered_events(
        self, lead_id: int, lead_stage_id: int, outcome: str | None, now: str
    ) -> None:
        """Events for hooks: the stage entered, then `won` or `lost` for an outcome stage."""
        self.store.hooks.emit(HookEvent.STAGE_ENTERED, lead_id, now, lead_stage_id=lead_stage_id)
        if outcome:
            self.store.hooks.emit(HookEvent(outcome), lead_id, now, lead_stage_id=lead_stage_id)

    def action_failed(self, action: ActionKeys, now: str) -> None:
        """An action of the lead failed for good (its row is `failed` now): tell the hooks."""
        self.store.hooks.emit(
            HookEvent.FAILED, action.lead_id, now, lead_stage_id=action.lead_stage_id
        )

    def advance(self, action: ActionKeys, now: str) -> None:
        """The lead's next action in the stage becomes due; after the last, the lead is idle."""
        self.advance_many([(action, now)])

    def advance_many(self, done: list[tuple[ActionKeys, str]]) -> None:
        """`_advance` for many actions at once, each at its own time: one read for them all."""
        if not done:
            return
        ids = [action.id for action, _ in done]
        following = {
            row["id"]: row
            for row in self.conn.execute(
                # Index lookups per action, whatever the planner thinks of the tables' sizes.
                "SELECT a.id, (SELECT s.exited_at FROM lead_stages s "
                f"WHERE s.id = a.lead_stage_id) AS exited_at, {NEXT.format('id')} AS next_id, "
                f"{NEXT.format('type')} AS type, {NEXT.format('params')} AS params "
                f"FROM lead_stage_actions a WHERE a.id IN ({marks(ids)})",
                ids,
            )
        }
        activate, idle = [], []
        for action, now in done:
            row = following[action.id]
            if row["exited_at"] is not None:  # the lead moved on while this action ran
                self.resume_enrollment(action.enrollment_id, now)
            elif row["next_id"] is None:
                idle.append((action.enrollment_id, action.lead_id, now))
            else:
                status, perform_at = activation(row["type"], snapshot(row["params"]), now)
                activate.append((row["next_id"], str(status), perform_at))
        for batch in chunks(activate):
            batch_from, params = joined("lead_stage_actions", batch)
            self.conn.execute(
                "UPDATE lead_stage_actions SET status = v.column2, perform_at = v.column3 "
                f"{batch_from} AND lead_stage_actions.status = 'waiting'",
                params,
            )
        self.set_enrollments(idle, EnrollmentStatus.IDLE)

    def _sending(self, enrollment_id: int) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM lead_stage_actions WHERE status = 'running' AND enrollment_id = ?",
                (enrollment_id,),
            ).fetchone()
            is not None
        )

    def resume_enrollment(self, enrollment_id: int, now: str) -> None:
        """After the last send of a stage the lead left, its current stage's first action starts,
        so the enrollment never has two actions open at once."""
        first = self.conn.execute(
            "SELECT a.id, a.type, a.params, a.status FROM lead_stage_actions a "
            "JOIN lead_stages s ON s.id = a.lead_stage_id "
            "WHERE s.enrollment_id = ? AND s.exited_at IS NULL "
            "ORDER BY a.sequence_number LIMIT 1",
            (enrollment_id,),
        ).fetchone()
        if first is None or first["status"] != ActionStatus.WAITING or self._sending(enrollment_id):
            return
        status, perform_at = activation(first["type"], json.loads(first["params"]), now)
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = ?, perform_at = ? "
            "WHERE id = ? AND status = 'waiting'",
            (status, perform_at, first["id"]),
        )

    def move(
        self, enrollment_id: int, lead_id: int, lead_stage_id: int, stage_key: str, now: str
    ) -> str | None:
        """Leave the current stage (its open actions skipped) and enter `stage_key`.
        Returns an error message when that stage no longer exists, or when the lead keeps
        moving without ever waiting (a loop of stages, e.g. through on_failure)."""
        # In a pipeline removed from the YAML (apply --force), leads finish on its old stages.
        target = self.conn.execute(
            "SELECT s.id, e.account_id FROM enrollments e "
            "JOIN pipelines p ON p.id = e.pipeline_id "
            "JOIN pipeline_stages s ON s.pipeline_id = e.pipeline_id AND s.key = ? "
            "AND (s.removed_at IS NULL OR p.removed_at IS NOT NULL) "
            "WHERE e.id = ?",
            (stage_key, enrollment_id),
        ).fetchone()
        if target is None:
            return f"cannot move to stage {stage_key!r}: it no longer exists in the pipeline"
        recent = self.conn.execute(
            "SELECT count(*) FROM lead_stages WHERE enrollment_id = ? AND entered_at > ?",
            (enrollment_id, add_seconds(now, -60)),
        ).fetchone()[0]
        if recent >= MAX_MOVES_PER_MINUTE:
            return (
                f"entered {recent} stages within a minute (next: {stage_key!r}): stages that move"
                " to each other with no wait between them? stopped to protect the lead"
            )
        self._close_stage(lead_stage_id, now)
        self._enter_stage(enrollment_id, lead_id, target["account_id"], target["id"], now)
        return None

    def _close_stage(self, lead_stage_id: int, now: str) -> None:
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'skipped' "
            f"WHERE lead_stage_id = ? AND status IN {sql_list(OPEN_STATUSES)}",
            (lead_stage_id,),
        )
        self.conn.execute(
            "UPDATE lead_stages SET exited_at = ? WHERE id = ? AND exited_at IS NULL",
            (now, lead_stage_id),
        )

    def stop_enrollment(self, enrollment_id: int, lead_id: int, status: str, now: str) -> None:
        """End an enrollment (`stopped` or `failed`): its open actions are skipped."""
        for (lead_stage_id,) in self.conn.execute(
            "SELECT id FROM lead_stages WHERE enrollment_id = ? AND exited_at IS NULL",
            (enrollment_id,),
        ).fetchall():
            self._close_stage(lead_stage_id, now)
        self.set_enrollment(enrollment_id, lead_id, status, now)

    def set_enrollment(self, enrollment_id: int, lead_id: int, status: str, now: str) -> None:
        """An enrollment's state; the lead's status shows its latest enrollment's."""
        self.set_enrollments([(enrollment_id, lead_id, now)], status)

    def set_enrollments(self, changes: list[tuple[int, int, str]], status: str) -> None:
        """`_set_enrollment` for many (enrollment id, lead id, time) at once: two statements
        a batch."""
        finished = status in FINISHED
        for batch in chunks(changes):
            batch_from, params = joined(
                "enrollments", [(e, now if finished else None) for e, _, now in batch]
            )
            self.conn.execute(
                f"UPDATE enrollments SET status = ?, finished_at = v.column2 {batch_from}",
                (str(status), *params),
            )
            batch_from, params = joined("leads", [(lead_id, e) for e, lead_id, _ in batch])
            self.conn.execute(  # when it is the lead's latest enrollment
                f"UPDATE leads SET status = ? {batch_from} "
                "AND (leads.status IS NULL OR leads.status != ?) AND NOT EXISTS (SELECT 1 "
                "FROM enrollments e WHERE e.lead_id = v.column1 AND e.id > v.column2)",
                (str(status), *params, str(status)),
            )

    def forget_config(self) -> None:
        """Drop the cached stages and actions: `apply` may have changed them since."""
        self.__dict__.pop("_stage_cache", None)
        self.__dict__.pop("_actions_cache", None)

    def _stage(self, stage_id: int) -> sqlite3.Row:
        cache = self.__dict__.setdefault("_stage_cache", {})
        if stage_id not in cache:
            cache[stage_id] = self.conn.execute(
                "SELECT * FROM pipeline_stages WHERE id = ?", (stage_id,)
            ).fetchone()
        return cache[stage_id]

    def _stage_actions(self, stage_id: int) -> list[sqlite3.Row]:
        cache = self.__dict__.setdefault("_actions_cache", {})
        if stage_id not in cache:
            cache[stage_id] = self.conn.execute(
                "SELECT sequence_number, type, params FROM pipeline_stage_actions "
                "WHERE pipeline_stage_id = ? ORDER BY sequence_number",
                (stage_id,),
            ).fetchall()
        return cache[stage_id]
