"""Leads read back: `leads list` (with their enrollments) and `leads export` (streamed).

Importing is `lead_import_sql.py`; queueing in a pipeline `enrollment_sql.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..errors import PipectlError
from ..statuses import NOT_ENROLLED, EnrollmentStatus, values
from .database import Part

LEAD_STATES = values(EnrollmentStatus)


class LeadsSQL(Part):
    """Leads listed and exported."""

    def export_fields(self, *, account_id: int | None = None) -> list[str]:
        """Every custom field name the leads have, in the order they first appear."""
        where = "WHERE l.account_id = ?" if account_id is not None else ""
        return [
            row[0]
            for row in self.conn.execute(
                f"SELECT j.key FROM leads l, json_each(l.fields) j {where}"
                " GROUP BY j.key ORDER BY min(l.id), min(j.id)",
                () if account_id is None else (account_id,),
            )
        ]

    def export_leads(
        self,
        *,
        account_id: int | None = None,
        pipeline_id: int | None = None,
        status: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Leads by id, streamed, with the state and stage of their latest enrollment (in
        `pipeline_id`, if given: then only leads enrolled in it)."""
        if status is not None and status not in LEAD_STATES:
            raise PipectlError(f"unknown status '{status}'; use one of {', '.join(LEAD_STATES)}")
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if account_id is not None:
            where.append("l.account_id = ?")
            params.append(account_id)
        if pipeline_id is not None:
            where.append("e.id IS NOT NULL")
        if status is not None:
            where.append("e.status = ?" if pipeline_id is not None else "l.status = ?")
            params.append(status)
        in_pipeline = "AND pipeline_id = ?" if pipeline_id is not None else ""
        cursor = self.conn.execute(
            "SELECT l.id, a.key AS account, l.email, l.phone, l.first_name, l.last_name,"
            " l.timezone, l.do_not_contact, l.email_opt_out, l.sms_opt_out, l.fields,"
            " CASE WHEN ? THEN e.status ELSE l.status END AS status, p.key AS pipeline,"
            " CASE WHEN e.status = 'queued' THEN (SELECT key FROM pipeline_stages WHERE id ="
            "  COALESCE(e.entry_stage_id, (SELECT id FROM pipeline_stages WHERE pipeline_id ="
            "  e.pipeline_id AND outcome IS NULL AND removed_at IS NULL"
            "  ORDER BY position LIMIT 1)))"
            "  ELSE (SELECT s.key FROM lead_stages ls JOIN pipeline_stages s"
            "  ON s.id = ls.pipeline_stage_id WHERE ls.enrollment_id = e.id"
            "  ORDER BY ls.exited_at IS NULL DESC, ls.id DESC LIMIT 1) END AS stage"
            " FROM leads l JOIN accounts a ON a.id = l.account_id"
            " LEFT JOIN enrollments e ON e.id = (SELECT id FROM enrollments"
            f"  WHERE lead_id = l.id {in_pipeline} ORDER BY id DESC LIMIT 1)"
            " LEFT JOIN pipelines p ON p.id = e.pipeline_id"
            f" WHERE {' AND '.join(where)} ORDER BY l.id",
            (
                pipeline_id is not None,
                *(() if pipeline_id is None else (pipeline_id,)),
                *params,
            ),
        )
        for row in cursor:
            lead = dict(row)
            lead["fields"] = json.loads(lead["fields"] or "{}")
            for flag in ("do_not_contact", "email_opt_out", "sms_opt_out"):
                lead[flag] = bool(lead[flag])
            yield lead

    def list_leads(
        self,
        *,
        account_id: int | None = None,
        status: str | None = None,
        pipeline_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Leads by id with their enrollments (pipeline, current stage, state)."""
        if status is not None and status not in (*LEAD_STATES, NOT_ENROLLED):
            raise PipectlError(
                f"unknown status '{status}'; use one of {', '.join(LEAD_STATES)}, {NOT_ENROLLED}"
            )
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if account_id is not None:
            where.append("l.account_id = ?")
            params.append(account_id)
        if status == NOT_ENROLLED:  # in no pipeline; with --pipeline: not in that one
            where.append(
                "l.id NOT IN (SELECT lead_id FROM enrollments WHERE pipeline_id = ?)"
                if pipeline_id is not None
                else "l.status IS NULL"
            )
            params += [pipeline_id] if pipeline_id is not None else []
        elif pipeline_id is not None:
            state = " AND e.status = ?" if status else ""
            where.append(
                f"l.id IN (SELECT lead_id FROM enrollments e WHERE pipeline_id = ?{state})"
            )
            params += [pipeline_id, status] if status else [pipeline_id]
        elif status is not None:
            where.append("l.status = ?")
            params.append(status)
        leads = [
            dict(row)
            for row in self.conn.execute(
                "SELECT l.id, a.key AS account, l.email, l.phone, l.first_name, l.last_name,"
                " l.status, l.do_not_contact FROM leads l JOIN accounts a ON a.id = l.account_id"
                f" WHERE {' AND '.join(where)} ORDER BY l.id LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
        ]
        by_id = {lead["id"]: lead for lead in leads}
        for lead in leads:
            lead["do_not_contact"] = bool(lead["do_not_contact"])
            lead["name"] = " ".join(p for p in (lead["first_name"], lead["last_name"]) if p)
            lead["enrollments"] = []
        for row in self.conn.execute(
            "SELECT e.lead_id, p.key AS pipeline, e.status AS state,"
            " CASE WHEN e.status = 'queued' THEN entry.key ELSE"
            "  (SELECT s.key FROM lead_stages ls JOIN pipeline_stages s"
            "   ON s.id = ls.pipeline_stage_id WHERE ls.enrollment_id = e.id"
            "   ORDER BY ls.exited_at IS NULL DESC, ls.id DESC LIMIT 1) END AS stage"
            " FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
            " LEFT JOIN pipeline_stages entry ON entry.id = COALESCE(e.entry_stage_id,"
            "  (SELECT id FROM pipeline_stages WHERE pipeline_id = e.pipeline_id"
            "   AND outcome IS NULL AND removed_at IS NULL ORDER BY position LIMIT 1))"
            " WHERE e.lead_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?)) ORDER BY e.id",
            (json.dumps(list(by_id)),),
        ):
            by_id[row["lead_id"]]["enrollments"].append(
                {"pipeline": row["pipeline"], "stage": row["stage"], "state": row["state"]}
            )
        return leads
