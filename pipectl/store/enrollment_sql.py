"""Enrollments from an import or `leads enroll`: a lead queued in a pipeline at its entry
stage, or a finished run restarted (`--re-enroll`). Admission starts them (`admission_sql.py`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..errors import NotFound
from ..statuses import ActionStatus, EnrollmentStatus, sql_list
from .database import Part

RESTARTABLE = (EnrollmentStatus.WON, EnrollmentStatus.LOST, EnrollmentStatus.IDLE)
RESTARTABLE_SQL = sql_list(RESTARTABLE)
OPEN_ACTIONS = sql_list((ActionStatus.WAITING, ActionStatus.PENDING, ActionStatus.AWAITING_REPLY))


class EnrollmentSQL(Part):
    """Queueing leads in a pipeline, restarting finished runs."""

    def entry_stage(self, pipeline_id: int, stage_key: str | None) -> sqlite3.Row:
        """The named stage, else the first stage by position that is not an outcome."""
        if stage_key:
            return self.store.config.stage_by_key(pipeline_id, stage_key)
        row = self.conn.execute(
            "SELECT * FROM pipeline_stages WHERE pipeline_id = ? AND removed_at IS NULL"
            " AND outcome IS NULL ORDER BY position LIMIT 1",
            (pipeline_id,),
        ).fetchone()
        if row is None:
            raise NotFound("the pipeline has no stage to enter (every stage is an outcome)")
        return row

    def enroll_imported(
        self,
        account_id: int,
        pipeline_id: int,
        stage_id: int | None,
        re_enroll: bool,
        leads_max: int,
        now: str,
    ) -> tuple[int, int, int, int]:
        """Queue the leads of the import under way (`temp.import_order`) not yet in the
        pipeline, in the order the file first named them; restart finished ones with
        --re-enroll; never a do-not-contact lead. Inside the import's transaction. Returns
        (do-not-contact, queued, re-enrolled, already enrolled)."""
        stored_max = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM enrollments").fetchone()[0]
        do_not_contact = self.conn.execute(
            "SELECT count(*) FROM temp.import_order o JOIN leads l ON l.id = o.lead_id"
            " WHERE l.do_not_contact = 1"
        ).fetchone()[0]
        queued = self.conn.execute(
            "INSERT INTO enrollments (lead_id, pipeline_id, account_id, entry_stage_id, status,"
            " queued_at) SELECT o.lead_id, ?, ?, ?, 'queued', ? FROM temp.import_order o"
            " JOIN leads l ON l.id = o.lead_id WHERE l.do_not_contact = 0 AND NOT EXISTS"
            " (SELECT 1 FROM enrollments e WHERE e.lead_id = o.lead_id AND e.pipeline_id = ?)"
            " ORDER BY o.position",
            (pipeline_id, account_id, stage_id, now, pipeline_id),
        ).rowcount
        # New leads were written queued (unless a later row opted them out); stored ones now.
        self.conn.execute(
            "UPDATE leads SET status = 'queued' WHERE id IN (SELECT lead_id FROM enrollments"
            " WHERE id > ? AND lead_id <= ?)",
            (stored_max, leads_max),
        )
        self.conn.execute(
            "UPDATE leads SET status = NULL WHERE account_id = ? AND do_not_contact = 1"
            " AND id > ? AND status = 'queued'",
            (account_id, leads_max),
        )
        restart = (
            [
                row[0]
                for row in self.conn.execute(
                    "SELECT e.id FROM temp.import_order o JOIN leads l ON l.id = o.lead_id"
                    " JOIN enrollments e ON e.lead_id = o.lead_id AND e.pipeline_id = ?"
                    f" WHERE l.do_not_contact = 0 AND e.id <= ? AND e.status IN {RESTARTABLE_SQL}"
                    " ORDER BY o.position",
                    (pipeline_id, stored_max),
                )
            ]
            if re_enroll
            else []
        )
        touched = self.conn.execute("SELECT count(*) FROM temp.import_order").fetchone()[0]
        queued += len(restart)
        if restart:
            self._restart_enrollments(stage_id, restart, now)
        return do_not_contact, queued, len(restart), touched - do_not_contact - queued

    def write_enrollments(
        self,
        account_id: int,
        pipeline_id: int,
        stage_id: int | None,
        enroll: list[Any],
        restart: list[int],
        now: str,
    ) -> None:
        """`leads enroll --re-enroll`'s restart (it queues new enrollments itself)."""
        assert not enroll
        self._restart_enrollments(stage_id, restart, now)

    def _restart_enrollments(self, stage_id: int | None, restart: list[int], now: str) -> None:
        """Restart finished enrollments from the entry stage, queued as of now."""
        ids = json.dumps(restart)
        # The lead leaves the stage it finished in; nothing of it may stay due.
        self.conn.execute(
            f"UPDATE lead_stage_actions SET status = 'skipped' WHERE status IN {OPEN_ACTIONS}"
            " AND enrollment_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))",
            (ids,),
        )
        self.conn.execute(
            "UPDATE lead_stages SET exited_at = ? WHERE exited_at IS NULL"
            " AND enrollment_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))",
            (now, ids),
        )
        self.conn.execute(
            "UPDATE enrollments SET status = 'queued', entry_stage_id = ?, queued_at = ?,"
            " started_at = NULL, finished_at = NULL"
            " WHERE id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))",
            (stage_id, now, ids),
        )
        self.conn.execute(  # a lead's status is its latest enrollment's, which may be another
            "UPDATE leads SET status = (SELECT e.status FROM enrollments e"
            " WHERE e.lead_id = leads.id ORDER BY e.id DESC LIMIT 1) WHERE id IN"
            " (SELECT lead_id FROM enrollments"
            " WHERE id IN (SELECT CAST(value AS INTEGER) FROM json_each(?)))",
            (ids,),
        )
