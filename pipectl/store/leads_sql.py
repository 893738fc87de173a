"""Leads and the enrollment queue: import (merge, insert, update, enroll) and list."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, PipectlError
from ..statuses import NOT_ENROLLED, ActionStatus, EnrollmentStatus, sql_list, values
from .database import Part

if TYPE_CHECKING:
    from ..leads import LeadRecord

RESTARTABLE = (EnrollmentStatus.WON, EnrollmentStatus.LOST, EnrollmentStatus.IDLE)
RESTARTABLE_SQL = sql_list(RESTARTABLE)
IMPORT_BATCH = 5000  # rows merged and written at a time
LEAD_STATES = values(EnrollmentStatus)
OPEN_ACTIONS = sql_list((ActionStatus.WAITING, ActionStatus.PENDING, ActionStatus.AWAITING_REPLY))
IMPORT_CACHE_KIB = 64 * 1024  # page cache while importing: bounded, whatever the file size
# C; no ASCII escaping
_quote = json.encoder.encode_basestring


def encode_fields(fields: dict[str, str]) -> str:
    """Custom fields as JSON text, as json.dumps writes it (text values only), but faster."""
    return "{" + ", ".join([_quote(k) + ": " + _quote(v) for k, v in fields.items()]) + "}"


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
    email_opt_out: int = 0  # of the file's leads: opted out of email only
    sms_opt_out: int = 0  # ... of texts only

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


LEAD_COLUMNS = (
    "id, email, phone, first_name, last_name, timezone, do_not_contact, email_opt_out,"
    " sms_opt_out, fields"
)


class _Lead:
    """One lead during an import batch: a stored row (id set) or a new one, merged row by row."""

    __slots__ = ("id", "values", "fields", "raw_fields", "original")

    def __init__(self, lead_id: int, values: list[Any] | None = None, raw_fields: str = "{}"):
        """A stored lead (with its values), or a new one with its id to be."""
        self.id = lead_id
        # email, phone, first_name, last_name, timezone, do_not_contact, email/sms opt-outs
        self.values = values or [None, None, None, None, None, 0, 0, 0]
        self.raw_fields = raw_fields  # the stored JSON, parsed only when a row has fields
        self.fields: dict[str, str] | None = None if values else {}
        self.original = tuple(values) if values else None  # None: not stored yet

    def merge(self, rec: LeadRecord) -> None:
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
        if rec.do_not_contact:
            v[5] = 1
        if rec.email_opt_out:
            v[6] = 1
        if rec.sms_opt_out:
            v[7] = 1
        if v[6] and v[7]:
            v[5] = 1  # no channel left
        if rec.fields:
            if self.fields is None:
                self.fields = json.loads(self.raw_fields or "{}")
            fields = self.fields
            for key, value in rec.fields.items():
                if value or key not in fields:
                    fields[key] = value

    def changed(self) -> bool:
        """Differs from the stored row (always true for a new lead)."""
        if self.original is None or tuple(self.values) != self.original:
            return True
        return self.fields is not None and self.fields != json.loads(self.raw_fields or "{}")


class _Bits:
    """A set of lead ids up to a bound, one bit each: 1,000,000 stored leads take 125 KB."""

    def __init__(self, bound: int):
        self.bits = bytearray((bound >> 3) + 1)

    def add(self, n: int) -> bool:
        """Add `n`; True if it was not there yet."""
        byte, bit = n >> 3, 1 << (n & 7)
        if self.bits[byte] & bit:
            return False
        self.bits[byte] |= bit
        return True

    def __contains__(self, n: int) -> bool:
        return bool(self.bits[n >> 3] & (1 << (n & 7)))

    def __len__(self) -> int:
        return int.from_bytes(self.bits, "little").bit_count()


class _Merge:
    """One import's state across batches: what is bounded by the database, never the file."""

    def __init__(self, conn: sqlite3.Connection, account_id: int, now: str, queue: bool):
        self.conn, self.account_id, self.now = conn, account_id, now
        self.status = (
            EnrollmentStatus.QUEUED.value if queue else None
        )  # new leads of an import with --pipeline
        # Ids above this are this import's new leads (ids are given under the write lock).
        self.stored_max = conn.execute("SELECT COALESCE(MAX(id), 0) FROM leads").fetchone()[0]
        self.next_id = self.stored_max
        self.seen = _Bits(self.stored_max)  # stored leads the file touched
        self.changed = _Bits(self.stored_max)  # ... and changed
        self.inserted = self.merged = 0
        self.first_seen: list[tuple[int]] = []  # this batch's leads, as the file first names them
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS import_order"
            " (position INTEGER PRIMARY KEY, lead_id INTEGER NOT NULL)"
        )
        self.placed = 0
        conn.execute("DELETE FROM temp.import_order")

    def batch(self, records: list[LeadRecord]) -> None:
        """Match each record by email, else phone, against the stored leads (this file's
        earlier batches included) and the batch so far; write what changed."""
        by_email, by_phone = self._stored(records)
        touched: dict[int, _Lead] = {}  # by id(): leads this batch touched, in file order
        for rec in records:
            lead = by_email.get(rec.email) if rec.email else None
            if lead is None and rec.phone:
                candidate = by_phone.get(rec.phone)
                if candidate is not None and (not rec.email or not candidate.values[0]):
                    lead = candidate
            if lead is None:
                self.next_id += 1
                lead = _Lead(self.next_id)
                self.first_seen.append((lead.id,))
            elif id(lead) in touched or lead.id > self.stored_max or not self.seen.add(lead.id):
                self.merged += 1  # a later row of the file for the same lead
            else:
                self.first_seen.append((lead.id,))
            touched[id(lead)] = lead
            lead.merge(rec)
            if rec.email:
                by_email[rec.email] = lead
            if rec.phone:
                by_phone.setdefault(rec.phone, lead)
        self._write(touched.values())

    def _stored(self, records: list[LeadRecord]) -> tuple[dict[str, _Lead], dict[str, _Lead]]:
        """The stored leads that the batch's emails and phones name (the lowest id first for
        a phone several leads share). A row whose email names a lead with its phone needs no
        phone look-up: a file imported again costs one look-up per row."""
        loaded: dict[int, _Lead] = {}
        by_email: dict[str, _Lead] = {}
        by_phone: dict[str, _Lead] = {}
        emails = [r.email for r in records if r.email]
        for row in self._leads_where("email", emails):
            by_email[row[1]] = loaded[row[0]] = _Lead(row[0], list(row[1:9]), row[9] or "{}")
        phones = [
            r.phone
            for r in records
            if r.phone
            and ((lead := by_email.get(r.email or "")) is None or lead.values[1] != r.phone)
        ]
        for row in self._leads_where("phone", phones):
            lead = loaded.get(row[0])
            if lead is None:
                lead = loaded[row[0]] = _Lead(row[0], list(row[1:9]), row[9] or "{}")
            by_phone.setdefault(row[2], lead)
        for lead in loaded.values():
            if lead.values[1]:
                by_phone.setdefault(lead.values[1], lead)
        return by_email, by_phone

    def _leads_where(self, column: str, values: list[str]) -> Iterable[tuple[Any, ...]]:
        if not values:
            return ()
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(
            f"SELECT {LEAD_COLUMNS} FROM leads WHERE account_id = ? AND {column} IN"
            " (SELECT value FROM json_each(?)) ORDER BY id",
            (self.account_id, json.dumps(values)),
        )

    def _write(self, touched: Iterable[_Lead]) -> None:
        """Insert the new leads, update the changed ones, and note the order the file first
        named them in, which is the order they are queued in."""
        inserts, updates = [], []
        order = self.first_seen
        now, account_id = self.now, self.account_id
        for lead in touched:
            v = lead.values
            if lead.original is None:
                self.inserted += 1
                fields = encode_fields(lead.fields or {})
                status = None if v[5] else self.status
                inserts.append((lead.id, account_id, *v[:5], fields, status, *v[5:], now, now))
            elif lead.changed():
                if lead.id <= self.stored_max:
                    self.changed.add(lead.id)
                fields = lead.raw_fields if lead.fields is None else encode_fields(lead.fields)
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
        self.conn.executemany(
            "INSERT INTO temp.import_order (position, lead_id) VALUES (?, ?)",
            [(self.placed + i, *o) for i, o in enumerate(order)],
        )
        self.placed += len(order)
        order.clear()


class LeadsSQL(Part):
    """Leads and the enrollment queue: import, list."""

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
        """Merge the records into the account's leads as they stream in, a batch at a time, and
        queue their enrollment, in one transaction: an error anywhere (an invalid row found at
        the end of the file included) rolls it all back. A dry run does it all, then rolls back."""
        counts = ImportCounts()
        self.conn.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
        with self.rolled_back() if dry_run else self.transaction():
            merge = _Merge(self.conn, account_id, now, queue=pipeline_id is not None)
            batch: list[LeadRecord] = []
            for rec in records:
                batch.append(rec)
                if len(batch) == IMPORT_BATCH:
                    merge.batch(batch)
                    counts.rows += len(batch)
                    batch = []
            merge.batch(batch)
            counts.rows += len(batch)
            self.database.ids_given("leads")
            counts.inserted, counts.merged = merge.inserted, merge.merged
            counts.updated = len(merge.changed)
            counts.unchanged = len(merge.seen) - counts.updated
            counts.email_opt_out, counts.sms_opt_out = self.conn.execute(
                "SELECT count(*) FILTER (WHERE email_opt_out = 1 AND do_not_contact = 0),"
                " count(*) FILTER (WHERE sms_opt_out = 1 AND do_not_contact = 0)"
                " FROM temp.import_order o JOIN leads l ON l.id = o.lead_id"
            ).fetchone()
            if pipeline_id is not None:
                self._enroll_imported(
                    account_id, pipeline_id, stage_id, re_enroll, merge.stored_max, counts, now
                )
            self.conn.execute("DELETE FROM temp.import_order")
        if not dry_run and counts.rows > IMPORT_BATCH:
            # A big import passed through the WAL: give its disk space back (best effort).
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts

    def _enroll_imported(
        self,
        account_id: int,
        pipeline_id: int,
        stage_id: int | None,
        re_enroll: bool,
        leads_max: int,
        counts: ImportCounts,
        now: str,
    ) -> None:
        """Queue the imported leads not yet in the pipeline, in the order the file first named
        them; restart finished ones with --re-enroll; never a do-not-contact lead."""
        stored_max = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM enrollments").fetchone()[0]
        counts.do_not_contact = self.conn.execute(
            "SELECT count(*) FROM temp.import_order o JOIN leads l ON l.id = o.lead_id"
            " WHERE l.do_not_contact = 1"
        ).fetchone()[0]
        counts.queued = self.conn.execute(
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
        counts.re_enrolled = len(restart)
        counts.queued += len(restart)
        counts.already_enrolled = touched - counts.do_not_contact - counts.queued
        if restart:
            self._restart_enrollments(stage_id, restart, now)

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
