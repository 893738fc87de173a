"""`leads import`: a CSV's records merged into the account's leads a batch at a time (by
email, else phone), inserted or updated set-based, then queued in a pipeline
(`store.enrollment`), all in one transaction.

Plain sqlite3 here for speed: a million rows merge in batches of IMPORT_BATCH.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..statuses import EnrollmentStatus
from .database import Part

if TYPE_CHECKING:
    from ..leads import LeadRecord

IMPORT_BATCH = 5000  # rows merged and written at a time
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


class LeadImportSQL(Part):
    """Importing leads: merge, insert, update; then enrollment queues them."""

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
                (
                    counts.do_not_contact,
                    counts.queued,
                    counts.re_enrolled,
                    counts.already_enrolled,
                ) = self.store.enrollment.enroll_imported(
                    account_id, pipeline_id, stage_id, re_enroll, merge.stored_max, now
                )
            self.conn.execute("DELETE FROM temp.import_order")
        if not dry_run and counts.rows > IMPORT_BATCH:
            # A big import passed through the WAL: give its disk space back (best effort).
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts
