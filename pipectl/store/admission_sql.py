"""Admission: queued enrollments enter their first stage, a batch at a time, in set-based SQL.

A batch is up to `defaults.ADMIT_BATCH` enrollments of one account, oldest first (`queued_at`,
then id), within the account's `active_leads`. Each statement writes the whole batch: its
lead_stages rows, the snapshot of each entry stage's actions (the first one due), the
enrollments, the leads' status and the report's counters. Runs inside the caller's transaction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import defaults
from ..statuses import ActionStatus, EnrollmentStatus
from .counters_sql import UPSERT, slot
from .database import Part
from .stages_sql import FINISHED, activation, snapshot

# The batch being admitted, in FIFO order (`seq`, numbered by the statement that fills it);
# a temporary table of this connection.
BATCH_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS admit_batch (
    seq INTEGER PRIMARY KEY,
    enrollment_id INTEGER NOT NULL,
    lead_id INTEGER NOT NULL,
    pipeline_id INTEGER NOT NULL,
    stage_id INTEGER,
    removed INTEGER NOT NULL,
    lead_stage_id INTEGER,
    sending INTEGER NOT NULL DEFAULT 0
)"""


def admit_batch_size() -> int:
    """Enrollments admitted per statement (`PIPECTL_ADMIT_BATCH`, for tests; else the default)."""
    value = os.environ.get("PIPECTL_ADMIT_BATCH", "")
    return int(value) if value.isdigit() and int(value) > 0 else defaults.ADMIT_BATCH


@dataclass(frozen=True)
class EntryStage:
    """A stage leads enter on admission: what their enrollment becomes, and its first action."""

    id: int
    status: str  # active, or the outcome (won, lost), or idle when it has no actions
    first: int | None  # the first action's sequence_number
    first_status: str = ActionStatus.PENDING
    first_perform_at: str | None = None


class AdmissionSQL(Part):
    def admit(self, now: str, cap: int) -> int:
        """Start queued enrollments, oldest first, up to each account's `active_leads` and
        `cap` in all; returns how many started."""
        if not self.conn.execute(  # the usual case: one index probe per account finds none
            "SELECT EXISTS (SELECT 1 FROM accounts a WHERE EXISTS (SELECT 1 FROM enrollments e"
            " WHERE e.account_id = a.id AND e.status = 'queued'))"
        ).fetchone()[0]:
            return 0
        admitted = 0
        accounts = self.conn.execute("SELECT id, active_leads FROM accounts ORDER BY id").fetchall()
        for account in accounts:
            room = cap - admitted
            if account["active_leads"] is not None:
                active = self.conn.execute(
                    "SELECT count(*) FROM enrollments WHERE account_id = ? AND status = 'active'",
                    (account["id"],),
                ).fetchone()[0]
                room = min(room, account["active_leads"] - active)
            while room > 0:
                wanted = min(room, admit_batch_size())
                taken, started = self._admit_batch(account["id"], wanted, now)
                admitted += started
                room -= started
                if taken < wanted:
                    break  # the account's queue is empty
        return admitted

    def _admit_batch(self, account_id: int, limit: int, now: str) -> tuple[int, int]:
        """Admit up to `limit` of the account's queued enrollments: (taken from the queue,
        started). Those of a pipeline or stage removed from the YAML never start: stopped."""
        self.conn.execute(BATCH_TABLE)
        self.conn.execute("DELETE FROM admit_batch")
        taken = self._take(account_id, limit)
        if not taken:
            return 0, 0
        self._first_stages()
        self._set_status("removed = 1", (), EnrollmentStatus.STOPPED, now)
        self.conn.execute("DELETE FROM admit_batch WHERE removed = 1")
        started = self.conn.execute("SELECT count(*) FROM admit_batch").fetchone()[0]
        if not started:
            return taken, 0
        stages = self._entry_stages(now)
        self.conn.execute(
            "INSERT INTO lead_stages (lead_id, enrollment_id, pipeline_stage_id, entered_at)"
            " SELECT lead_id, enrollment_id, stage_id, ? FROM admit_batch ORDER BY seq",
            (now,),
        )
        self.conn.execute(
            "UPDATE admit_batch SET lead_stage_id = (SELECT max(ls.id) FROM lead_stages ls"
            " WHERE ls.enrollment_id = admit_batch.enrollment_id)"
        )
        # A send of the lead's earlier run may still be in flight (a re-enrolled lead): then
        # its first action waits until that send's result is written (`resume_enrollment`).
        self.conn.execute(
            "UPDATE admit_batch SET sending = 1 WHERE enrollment_id IN"
            " (SELECT enrollment_id FROM lead_stage_actions WHERE status = 'running')"
        )
        for stage in stages:
            if stage.first is not None:
                self._snapshot(stage, account_id)
            self._set_status("stage_id = ?", (stage.id,), stage.status, now, started=True)
        self._count(account_id, now)
        if self.store.hooks.any_live():  # events for hooks: each lead's stage entered
            outcomes = {stage.id: stage.status for stage in stages}
            for lead_id, lead_stage_id, stage_id in self.conn.execute(
                "SELECT lead_id, lead_stage_id, stage_id FROM admit_batch ORDER BY seq"
            ).fetchall():
                outcome = outcomes.get(stage_id)
                self.store.lifecycle.entered_events(
                    lead_id, lead_stage_id, outcome if outcome in ("won", "lost") else None, now
                )
        return taken, started

    def _take(self, account_id: int, limit: int) -> int:
        """Fill the batch from the account's queue, oldest first (`seq`: SQLite's rowid follows
        the insert's order, PostgreSQL numbers the rows); those of a pipeline or stage removed
        from the YAML are marked `removed`. Returns how many. A re-enrolled lead queues anew."""
        fifo = "ORDER BY queued_at, id"
        columns = "enrollment_id, lead_id, pipeline_id, stage_id, removed"
        seq = ""
        if self.database.postgres:
            columns, seq = f"seq, {columns}", f"row_number() OVER ({fifo}),"
        taken = self.conn.execute(
            f"INSERT INTO admit_batch ({columns}) SELECT {seq} id, lead_id, pipeline_id,"
            " entry_stage_id, 0 FROM enrollments WHERE account_id = ? AND status = 'queued'"
            f" {fifo} LIMIT ?",
            (account_id, limit),
        ).rowcount
        if taken:
            self.conn.execute(
                "UPDATE admit_batch SET removed = 1 WHERE pipeline_id IN (SELECT id FROM"
                " pipelines WHERE removed_at IS NOT NULL) OR stage_id IN (SELECT id FROM"
                " pipeline_stages WHERE removed_at IS NOT NULL)"
            )
        return int(taken)

    def _first_stages(self) -> None:
        """Enrollments that name no entry stage start at their pipeline's first stage with no
        outcome; a pipeline without one starts nobody (stopped, as if it were removed)."""
        pipelines = self.conn.execute(
            "SELECT DISTINCT pipeline_id FROM admit_batch WHERE stage_id IS NULL"
        ).fetchall()
        for (pipeline_id,) in pipelines:
            first = self.conn.execute(
                "SELECT id FROM pipeline_stages WHERE pipeline_id = ? AND removed_at IS NULL"
                " AND outcome IS NULL ORDER BY position LIMIT 1",
                (pipeline_id,),
            ).fetchone()
            self.conn.execute(
                "UPDATE admit_batch SET stage_id = ?, removed = ? WHERE stage_id IS NULL"
                " AND pipeline_id = ?",
                (first and first[0], 0 if first else 1, pipeline_id),
            )

    def _entry_stages(self, now: str) -> list[EntryStage]:
        """The stages this batch enters, each with its first action's status and time."""
        stages = []
        ids = [r[0] for r in self.conn.execute("SELECT DISTINCT stage_id FROM admit_batch")]
        for stage_id in ids:
            outcome = self.conn.execute(
                "SELECT outcome FROM pipeline_stages WHERE id = ?", (stage_id,)
            ).fetchone()[0]
            first = self.conn.execute(
                "SELECT sequence_number, type, params FROM pipeline_stage_actions"
                " WHERE pipeline_stage_id = ? ORDER BY sequence_number LIMIT 1",
                (stage_id,),
            ).fetchone()
            if outcome or first is None:
                stages.append(EntryStage(stage_id, outcome or EnrollmentStatus.IDLE, None))
                continue
            status, perform_at = activation(first["type"], snapshot(first["params"]), now)
            stages.append(
                EntryStage(stage_id, EnrollmentStatus.ACTIVE, first[0], status, perform_at)
            )
        return stages

    def _snapshot(self, stage: EntryStage, account_id: int) -> None:
        """Copy the stage's actions for every lead of the batch entering it: the first is due
        (unless a send of the lead is still in flight), the others wait their turn."""
        first = "a.sequence_number = ? AND b.sending = 0"
        self.conn.execute(
            "INSERT INTO lead_stage_actions (lead_stage_id, lead_id, account_id, enrollment_id,"
            " sequence_number, type, channel, params, status, perform_at)"
            " SELECT b.lead_stage_id, b.lead_id, ?, b.enrollment_id, a.sequence_number, a.type,"
            " CASE WHEN a.type IN ('email', 'sms') THEN a.type ELSE 'internal' END, a.params,"
            f" CASE WHEN {first} THEN ? ELSE 'waiting' END,"
            f" CASE WHEN {first} THEN ? ELSE NULL END"
            " FROM admit_batch b JOIN pipeline_stage_actions a ON a.pipeline_stage_id = b.stage_id"
            " WHERE b.stage_id = ? ORDER BY b.seq, a.sequence_number",
            (
                account_id,
                stage.first,
                stage.first_status,
                stage.first,
                stage.first_perform_at,
                stage.id,
            ),
        )

    def _set_status(
        self, where: str, params: tuple[int, ...], status: str, now: str, started: bool = False
    ) -> None:
        """The batch's enrollments chosen by `where` take `status` (and `started_at`, when they
        start); a lead's status shows its latest enrollment's."""
        finished_at = now if status in FINISHED else None
        start = ", started_at = ?" if started else ""
        self.conn.execute(
            f"UPDATE enrollments SET status = ?, finished_at = ?{start}"
            f" WHERE id IN (SELECT enrollment_id FROM admit_batch WHERE {where})",
            (status, finished_at, *((now,) if started else ()), *params),
        )
        self.conn.execute(
            "UPDATE leads SET status = ? WHERE id IN (SELECT b.lead_id FROM admit_batch b"
            f" WHERE {where} AND NOT EXISTS (SELECT 1 FROM enrollments e"
            " WHERE e.lead_id = b.lead_id AND e.id > b.enrollment_id))"
            " AND (status IS NULL OR status <> ?)",
            (status, *params, status),
        )

    def _count(self, account_id: int, now: str) -> None:
        """The report's counters for the batch: enrolled per pipeline, and entered per stage
        (from the stage a re-enrolled lead left at this very time, as a move counts it)."""
        at = slot(now)
        self.conn.execute(
            "INSERT INTO report_counts (account_id, pipeline_id, metric, detail, slot, stage_id,"
            " from_stage_id, n) SELECT ?, pipeline_id, 'enrolled', '', ?, 0, 0, count(*)"
            f" FROM admit_batch WHERE true GROUP BY pipeline_id{UPSERT}",
            (account_id, at),
        )
        self.conn.execute(
            "INSERT INTO report_counts (account_id, pipeline_id, metric, detail, slot, stage_id,"
            " from_stage_id, n) SELECT ?, pipeline_id, 'entered', '', ?, stage_id, from_stage,"
            " count(*) FROM (SELECT b.pipeline_id, b.stage_id, coalesce((SELECT"
            " p.pipeline_stage_id FROM lead_stages p WHERE p.enrollment_id = b.enrollment_id"
            " AND p.id < b.lead_stage_id AND p.exited_at = ? ORDER BY p.id DESC LIMIT 1), 0)"
            " AS from_stage FROM admit_batch b) entering"
            f" WHERE true GROUP BY pipeline_id, stage_id, from_stage{UPSERT}",
            (account_id, at, now),
        )
