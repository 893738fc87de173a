"""Leads and the enrollment queue: import (merge, insert, update, enroll) and list."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, PipectlError

if TYPE_CHECKING:
    from ..leads import LeadRecord

RESTARTABLE = ("won", "lost", "idle")
LEAD_STATES = ("queued", "active", "idle", "won", "lost", "stopped", "failed")
OPEN_ACTIONS = "('waiting', 'pending', 'awaiting_reply')"
IMPORT_CACHE_KIB = 256 * 1024  # page cache while importing: index pages stay in memory
encode_fields = json.JSONEncoder(ensure_ascii=False).encode


@dataclass
class ImportCounts:
    """What an import did (or, with --dry-run, would do)."""

    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    queued: int = 0
    re_enrolled: int = 0
    already_enrolled: int = 0
    do_not_contact: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Lead:
    """One lead during an import: an existing row (id set) or a new one, merged row by row."""

    __slots__ = ("id", "values", "fields", "original", "seen")

    def __init__(self, lead_id: int | None, values: list[Any], fields: dict[str, str] | None):
        self.id = lead_id
        self.values = values  # email, phone, first/last name, timezone, and the 3 opt-outs
        self.fields = fields  # None until a row touches an existing lead's fields
        self.original: tuple[Any, ...] | None = None
        self.seen = False

    def merge(self, rec: LeadRecord, raw_fields: str | None) -> None:
        """Later non-empty values win; an opt-out is only ever set, never cleared.

        A custom field the lead lacks is added even when empty (""), so a template naming a
        column of the file renders for every lead from it; an empty cell never clears a value.
        """
        v = self.values
        for i, value in enumerate((rec.email, rec.phone, rec.first_name, rec.last_name)):
            if value:
                v[i] = value
        if rec.timezone:
            v[4] = rec.timezone
        v[5] = 1 if rec.do_not_contact or v[5] else 0
        v[6] = 1 if rec.email_opt_out or v[6] else 0
        v[7] = 1 if rec.sms_opt_out or v[7] else 0
        if v[6] and v[7]:
            v[5] = 1  # no channel left
        if rec.fields:
            if self.fields is None:
                self.fields = json.loads(raw_fields or "{}")
            fields = self.fields
            for key, value in rec.fields.items():
                if value or key not in fields:
                    fields[key] = value


class LeadsSQL:
    """Leads and the enrollment queue: import, list."""

    conn: sqlite3.Connection

    def entry_stage(self, pipeline_id: int, stage_key: str | None) -> sqlite3.Row:
        """The named stage, else the first stage by position that is not an outcome."""
        if stage_key:
            return self.stage_by_key(pipeline_id, stage_key)  # type: ignore[attr-defined]
        row = self.conn.execute(
            "SELECT * FROM pipeline_stages WHERE pipeline_id = ? AND removed_at IS NULL"
            " AND outcome IS NULL ORDER BY position LIMIT 1",
            (pipeline_id,),
        ).fetchone()
        if row is None:
            raise NotFound("the pipeline has no stage to enter (every stage is an outcome)")
        return row

    def import_leads(
        self,
        account_id: int,
        records: Iterable[LeadRecord],
        *,
        pipeline_id: int | None = None,
        stage_id: int | None = None,
        re_enroll: bool = False,
        dry_run: bool = False,
        now: str,
    ) -> ImportCounts:
        """Merge the records into the account's leads and queue their enrollment, all at once."""
        counts = ImportCounts()
        self.conn.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
        with self._snapshot(dry_run):
            touched = self._merge(account_id, records, counts)
            enroll, restart = (
                self._enrollment_plan(pipeline_id, touched, re_enroll, counts)
                if pipeline_id is not None
                else ([], [])
            )
            if not dry_run:
                self._write_leads(account_id, touched, {id(lead) for lead in enroll}, now)
                if pipeline_id is not None:
                    self._write_enrollments(account_id, pipeline_id, stage_id, enroll, restart, now)
        return counts

    @contextmanager
    def _snapshot(self, dry_run: bool) -> Iterator[None]:
        """A write transaction, or for a dry run a read transaction that sees one snapshot."""
        if not dry_run:
            with self.transaction():  # type: ignore[attr-defined]
                yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")

    def _merge(
        self, account_id: int, records: Iterable[LeadRecord], counts: ImportCounts
    ) -> list[_Lead]:
        """Match each record by email, else phone, against the account and the file so far."""
        by_email: dict[str, _Lead] = {}
        by_phone: dict[str, _Lead] = {}
        raw_fields: dict[int, str] = {}
        for row in self.conn.execute(
            "SELECT id, email, phone, first_name, last_name, timezone, do_not_contact,"
            " email_opt_out, sms_opt_out, fields FROM leads WHERE account_id = ? ORDER BY id",
            (account_id,),
        ):
            lead = _Lead(row[0], list(row[1:9]), None)
            raw_fields[row[0]] = row[9]
            if row[1]:
                by_email.setdefault(row[1].lower(), lead)
            if row[2]:
                by_phone.setdefault(row[2], lead)
        touched: list[_Lead] = []
        for rec in records:
            counts.rows += 1
            lead = by_email.get(rec.email) if rec.email else None
            if lead is None and rec.phone:
                candidate = by_phone.get(rec.phone)
                if candidate is not None and (not rec.email or not candidate.values[0]):
                    lead = candidate
            if lead is None:
                lead = _Lead(None, [None, None, None, None, None, 0, 0, 0], {})
            if lead.seen:
                counts.merged += 1
            else:
                lead.seen = True
                if lead.id is not None:
                    lead.original = (*lead.values, raw_fields[lead.id])
                touched.append(lead)
            lead.merge(rec, raw_fields.get(lead.id) if lead.id is not None else None)
            if rec.email:
                by_email[rec.email] = lead
            if rec.phone:
                by_phone.setdefault(rec.phone, lead)
        for lead in touched:
            if lead.id is None:
                counts.inserted += 1
            elif self._changed(lead):
                counts.updated += 1
            else:
                counts.unchanged += 1
        return touched

    @staticmethod
    def _changed(lead: _Lead) -> bool:
        assert lead.original is not None
        if tuple(lead.values) != lead.original[:8]:
            return True
        return lead.fields is not None and lead.fields != json.loads(lead.original[8] or "{}")

    def _enrollment_plan(
        self, pipeline_id: int, touched: list[_Lead], re_enroll: bool, counts: ImportCounts
    ) -> tuple[list[_Lead], list[int]]:
        """Leads to enroll (file order) and finished enrollments to restart."""
        enrolled = {
            lead_id: (enrollment_id, status)
            for lead_id, enrollment_id, status in self.conn.execute(
                "SELECT lead_id, id, status FROM enrollments WHERE pipeline_id = ?",
                (pipeline_id,),
            )
        }
        enroll: list[_Lead] = []
        restart: list[int] = []
        for lead in touched:
            current = enrolled.get(lead.id) if lead.id is not None else None
            if lead.values[5]:
                counts.do_not_contact += 1
            elif current is None:
                enroll.append(lead)
            elif re_enroll and current[1] in RESTARTABLE:
                restart.append(current[0])
            else:
                counts.already_enrolled += 1
        counts.queued = len(enroll) + len(restart)
        counts.re_enrolled = len(restart)
        return enroll, restart

    def _write_leads(
        self, account_id: int, touched: list[_Lead], enrolling: set[int], now: str
    ) -> None:
        """New leads get ids from MAX(id) up (safe under the write lock); changed ones update."""
        next_id = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM leads").fetchone()[0]
        inserts, updates = [], []
        for lead in touched:
            v = lead.values
            if lead.original is None:
                next_id += 1
                lead.id = next_id
                status = "queued" if id(lead) in enrolling else None
                fields = encode_fields(lead.fields or {})
                inserts.append((next_id, account_id, *v[:5], fields, status, *v[5:], now, now))
            elif self._changed(lead):
                fields = lead.original[8] if lead.fields is None else encode_fields(lead.fields)
                updates.append((*v, fields, now, lead.id))
        self.conn.executemany(
            "INSERT INTO leads (id, account_id, email, phone, first_name, last_name, timezone,"
            " fields, status, do_not_contact, email_opt_out, sms_opt_out, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
        self.conn.executemany(
            "UPDATE leads SET email = ?, phone = ?, first_name = ?, last_name = ?, timezone = ?,"
            " do_not_contact = ?, email_opt_out = ?, sms_opt_out = ?, fields = ?, updated_at = ?"
            " WHERE id = ?",
            updates,
        )

    def _write_enrollments(
        self,
        account_id: int,
        pipeline_id: int,
        stage_id: int | None,
        enroll: list[_Lead],
        restart: list[int],
        now: str,
    ) -> None:
        """Queue new enrollments in file order; restart finished ones from the entry stage."""
        self.conn.executemany(
            "INSERT INTO enrollments (lead_id, pipeline_id, account_id, entry_stage_id, status,"
            " queued_at) VALUES (?, ?, ?, ?, 'queued', ?)",
            [(lead.id, pipeline_id, account_id, stage_id, now) for lead in enroll],
        )
        self.conn.executemany(
            "UPDATE leads SET status = 'queued' WHERE id = ?",
            [(lead.id,) for lead in enroll if lead.original is not None],  # new ones have it
        )
        if not restart:
            return
        ids = json.dumps(restart)
        # The lead leaves the stage it finished in; nothing of it may stay due.
        self.conn.execute(
            f"UPDATE lead_stage_actions SET status = 'skipped' WHERE status IN {OPEN_ACTIONS}"
            " AND enrollment_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        self.conn.execute(
            "UPDATE lead_stages SET exited_at = ? WHERE exited_at IS NULL"
            " AND enrollment_id IN (SELECT value FROM json_each(?))",
            (now, ids),
        )
        self.conn.execute(
            "UPDATE enrollments SET status = 'queued', entry_stage_id = ?, queued_at = ?,"
            " started_at = NULL, finished_at = NULL WHERE id IN (SELECT value FROM json_each(?))",
            (stage_id, now, ids),
        )
        self.conn.execute(  # a lead's status is its latest enrollment's, which may be another
            "UPDATE leads SET status = (SELECT e.status FROM enrollments e"
            " WHERE e.lead_id = leads.id ORDER BY e.id DESC LIMIT 1) WHERE id IN"
            " (SELECT lead_id FROM enrollments WHERE id IN (SELECT value FROM json_each(?)))",
            (ids,),
        )

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
        if status is not None and status not in LEAD_STATES:
            raise PipectlError(f"unknown status '{status}'; use one of {', '.join(LEAD_STATES)}")
        where, params = ["1 = 1"], []
        if account_id is not None:
            where.append("l.account_id = ?")
            params.append(account_id)
        if pipeline_id is not None:
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
            " WHERE e.lead_id IN (SELECT value FROM json_each(?)) ORDER BY e.id",
            (json.dumps(list(by_id)),),
        ):
            by_id[row["lead_id"]]["enrollments"].append(
                {"pipeline": row["pipeline"], "stage": row["stage"], "state": row["state"]}
            )
        return leads
