"""The operator's fixes: requeue failed actions, enroll existing leads.

State changes reuse the scheduler's helpers, inside one transaction per call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CsvError, NotFound, PipectlError
from ..statuses import ActionStatus, EnrollmentStatus, sql_list
from ..wording import counted
from .database import Part
from .enrollment_sql import RESTARTABLE

if TYPE_CHECKING:
    from ..leads import LeadRecord

OPEN_ACTIONS = sql_list((ActionStatus.PENDING, ActionStatus.RUNNING, ActionStatus.AWAITING_REPLY))


class OperatorSQL(Part):
    """Retry failed actions and enroll existing leads."""

    def retry_actions(
        self, *, now: str, action_id: int | None = None, account_id: int | None = None
    ) -> dict[str, Any]:
        """Failed actions go back to `pending`, due now, with attempts reset; their lead's
        enrollment is active again in that stage. One action by id, or an account's failed;
        those of stopped or do-not-contact leads are refused (by id) or skipped."""
        retried: list[int] = []
        refused: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []  # of stopped or do-not-contact leads
        with self.transaction():
            if action_id is not None:
                row = self.conn.execute(
                    "SELECT * FROM lead_stage_actions WHERE id = ?", (action_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no action {action_id}: see `pipectl actions list`")
                reason = self._not_to_contact(row) or self._retry(row, now)
                if reason:
                    raise PipectlError(f"action {action_id} cannot be retried: {reason}")
                retried.append(action_id)
            else:
                rows = self.conn.execute(
                    "SELECT * FROM lead_stage_actions INDEXED BY lsa_failed"
                    " WHERE account_id = ? AND status = 'failed' ORDER BY id",
                    (account_id,),
                ).fetchall()
                for row in rows:
                    reason = self._not_to_contact(row)
                    if reason:
                        skipped.append({"action_id": row["id"], "reason": reason})
                        continue
                    reason = self._retry(row, now)
                    if reason:
                        refused.append({"action_id": row["id"], "reason": reason})
                    else:
                        retried.append(row["id"])
        return {"retried": retried, "refused": refused, "skipped": skipped}

    def _not_to_contact(self, action: sqlite3.Row) -> str | None:
        """Why the action's lead must not be restarted: stopped by hand or do-not-contact."""
        row = self.conn.execute(
            "SELECT e.status, l.do_not_contact FROM enrollments e JOIN leads l"
            " ON l.id = e.lead_id WHERE e.id = ?",
            (action["enrollment_id"],),
        ).fetchone()
        if row["do_not_contact"]:
            return f"its lead {action['lead_id']} is do-not-contact"
        if row["status"] == EnrollmentStatus.STOPPED:
            return (
                f"its lead {action['lead_id']} was stopped (by `pipectl leads stop` or an"
                " opt-out); a stopped lead is not restarted"
            )
        return None

    def _retry(self, action: sqlite3.Row, now: str) -> str | None:
        """Requeue one failed action; returns why not when that would break the lead's order."""
        if action["status"] != ActionStatus.FAILED:
            return f"it is {action['status']}; only failed actions are retried"
        enrollment = self.conn.execute(
            "SELECT * FROM enrollments WHERE id = ?", (action["enrollment_id"],)
        ).fetchone()
        later_stage = self.conn.execute(
            "SELECT 1 FROM lead_stages WHERE enrollment_id = ? AND id > ?",
            (action["enrollment_id"], action["lead_stage_id"]),
        ).fetchone()
        if enrollment["status"] != EnrollmentStatus.FAILED or later_stage:
            return self._went_on(action, enrollment)
        open_action = self.conn.execute(
            "SELECT id FROM lead_stage_actions WHERE enrollment_id = ?"
            f" AND status IN {OPEN_ACTIONS} LIMIT 1",
            (action["enrollment_id"],),
        ).fetchone()
        if open_action:
            return f"action {open_action['id']} of the same lead is still open"
        # Reopen the stage the failure closed: the actions after this one wait again.
        self.conn.execute(
            "UPDATE lead_stages SET exited_at = NULL WHERE id = ?", (action["lead_stage_id"],)
        )
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'waiting', perform_at = NULL"
            " WHERE lead_stage_id = ? AND sequence_number > ? AND status = 'skipped'"
            " AND performed_at IS NULL",
            (action["lead_stage_id"], action["sequence_number"]),
        )
        # last_error stays until the next attempt replaces or clears it.
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'pending', perform_at = ?, attempts = 0,"
            " performed_at = NULL, claim_token = NULL WHERE id = ?",
            (now, action["id"]),
        )
        if self.conn.execute(
            "UPDATE enrollments SET started_at = ? WHERE id = ? AND started_at IS NULL"
            " RETURNING id",
            (now, action["enrollment_id"]),
        ).fetchall():
            self.store.counters.enrolled(action["enrollment_id"], now)
        self.store.lifecycle.set_enrollment(
            action["enrollment_id"], action["lead_id"], EnrollmentStatus.ACTIVE, now
        )
        return None

    def _went_on(self, action: sqlite3.Row, enrollment: sqlite3.Row) -> str:
        """Why an action the lead went on from is not retried, and what to do instead."""
        status = enrollment["status"]
        went_on = f"the lead went on after it (its enrollment is {status})"
        if status in (EnrollmentStatus.QUEUED, EnrollmentStatus.ACTIVE):
            return f"{went_on} and is still running; it carries on from where it is"
        keys = self.conn.execute(
            "SELECT a.key AS account, p.key AS pipeline FROM pipelines p"
            " JOIN accounts a ON a.id = p.account_id WHERE p.id = ?",
            (enrollment["pipeline_id"],),
        ).fetchone()
        flags = "--re-enroll" + (" --include-failed" if status == EnrollmentStatus.FAILED else "")
        return (
            f"{went_on}; enroll it again instead: pipectl leads enroll --account"
            f" {keys['account']} --pipeline {keys['pipeline']} --lead {action['lead_id']} {flags}"
        )

    def enroll_leads(
        self,
        account_id: int,
        pipeline_id: int,
        stage_id: int,
        lead_ids: Iterable[int],
        *,
        now: str,
        re_enroll: bool = False,
        include_failed: bool = False,
    ) -> dict[str, Any]:
        """Queue existing leads in a pipeline at `stage_id` (FIFO behind those already queued).
        A do-not-contact lead is left as it is, and so is a lead already in the pipeline unless
        `re_enroll` and its run finished (won, lost, idle; failed with `include_failed`): that
        run restarts from `stage_id`, as `leads import --re-enroll` does. Runs still queued or
        active, and runs stopped by hand, are never restarted."""
        restartable = RESTARTABLE + ((EnrollmentStatus.FAILED,) if include_failed else ())
        queued: list[int] = []
        already: list[int] = []
        do_not_contact: list[int] = []
        restart: dict[int, int] = {}  # enrollment id -> lead id
        with self.transaction():
            for lead_id in dict.fromkeys(lead_ids):
                lead = self.conn.execute(
                    "SELECT id, do_not_contact FROM leads WHERE id = ? AND account_id = ?",
                    (lead_id, account_id),
                ).fetchone()
                if lead is None:
                    raise NotFound(f"no lead {lead_id} in this account")
                enrolled = self.conn.execute(
                    "SELECT id, status FROM enrollments WHERE lead_id = ? AND pipeline_id = ?",
                    (lead_id, pipeline_id),
                ).fetchone()
                if lead["do_not_contact"]:
                    do_not_contact.append(lead_id)
                elif enrolled and re_enroll and enrolled["status"] in restartable:
                    restart[enrolled["id"]] = lead_id
                    queued.append(lead_id)
                elif enrolled:
                    already.append(lead_id)
                else:
                    self.conn.execute(
                        "INSERT INTO enrollments (lead_id, pipeline_id, account_id,"
                        " entry_stage_id, status, queued_at) VALUES (?, ?, ?, ?, 'queued', ?)",
                        (lead_id, pipeline_id, account_id, stage_id, now),
                    )
                    self.conn.execute("UPDATE leads SET status = 'queued' WHERE id = ?", (lead_id,))
                    queued.append(lead_id)
            if restart:
                # The import's restart: open actions skipped, stage left, queued at the entry.
                self.store.enrollment.write_enrollments(
                    account_id, pipeline_id, stage_id, [], list(restart), now
                )
                for enrollment_id, lead_id in restart.items():
                    # The lead's status shows its latest enrollment's, maybe another pipeline's.
                    self.store.lifecycle.set_enrollment(
                        enrollment_id, lead_id, EnrollmentStatus.QUEUED, now
                    )
        return {
            "queued": queued,
            "re_enrolled": list(restart.values()),
            "already_enrolled": already,
            "do_not_contact": do_not_contact,
        }

    def match_leads(
        self, account_id: int, records: Iterable[LeadRecord], *, file: str
    ) -> list[int]:
        """The account's leads named by the rows of a CSV (by email, else phone); a row that
        names no lead is an error naming its line, and nothing is enrolled."""
        ids, missing = [], []
        for rec in records:
            row = None
            if rec.email:
                row = self.conn.execute(
                    "SELECT id FROM leads WHERE account_id = ? AND email = ?",
                    (account_id, rec.email),
                ).fetchone()
            if row is None and rec.phone:
                row = self.conn.execute(
                    "SELECT id FROM leads WHERE account_id = ? AND phone = ? ORDER BY id",
                    (account_id, rec.phone),
                ).fetchone()
            if row is None:
                missing.append(f"{file}:{rec.line}: no lead has {rec.email or rec.phone!r}")
            else:
                ids.append(row["id"])
        if missing:
            shown = "\n".join(missing[:20])
            rows = f"{counted(len(missing), 'row')} {'names' if len(missing) == 1 else 'name'}"
            raise CsvError(f"{shown}\n{rows} no lead; nothing enrolled", missing)
        return ids
