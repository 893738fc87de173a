"""Suppressions: addresses an account never sends to again (a bounce, an opt-out, a
provider's list, by hand), and the claimed sends they stop as they start.

Addresses are kept normalised: email lower-case, phone numbers E.164.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..errors import NotFound, PipectlError
from .database import Part
from .rows import ClaimedSend

REASONS = ("bounce", "opt_out", "provider", "manual", "complaint")


def normal_address(channel: str, address: str, country: str | None) -> str:
    """A suppression's address: lower-case email, or E.164; ValueError names a bad one."""
    address = address.strip()
    if channel == "email":
        if "@" not in address or any(c.isspace() for c in address):
            raise ValueError(f"{address!r} is not an email address")
        return address.lower()
    from ..lead_values import normalise_phone  # phonenumbers is slow to import

    return normalise_phone(address, country)


def channel_of_address(address: str) -> str:
    """An address with an @ is an email; anything else a phone number."""
    return "email" if "@" in address else "sms"


class SuppressionsSQL(Part):
    """Suppressed addresses: by hand, from a file, from inbound messages; sends they stop."""

    def add_suppression(
        self, account_key: str, address: str, *, reason: str, now: str, detail: str | None = None
    ) -> dict[str, Any]:
        """Suppress one address by hand; the reason is one of REASONS or free text (manual)."""
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            channel, normal = _normal(account, address)
            if reason not in REASONS:
                reason, detail = "manual", reason
            added = self.suppress(account["id"], channel, normal, reason, now, detail)
            return {"account": account_key, "channel": channel, "address": normal, "added": added}

    def remove_suppression(self, account_key: str, address: str) -> dict[str, Any]:
        """Allow sends to an address again; NotFound when it was not suppressed."""
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            channel, normal = _normal(account, address)
            removed = self.conn.execute(
                "DELETE FROM suppressions WHERE account_id = ? AND channel = ? AND address = ?",
                (account["id"], channel, normal),
            ).rowcount
            if not removed:
                raise NotFound(f"{normal} is not suppressed in account '{account_key}'")
            return {"account": account_key, "channel": channel, "address": normal}

    def import_suppressions(
        self,
        account_key: str,
        entries: Iterable[tuple[int, str, str, str | None]],
        *,
        now: str,
        file: str = "",
    ) -> dict[str, Any]:
        """Suppress many (line, address, reason, detail) at once; all or nothing: a bad
        address raises naming its row and value, and nothing is added."""
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            rows, problems = [], []
            for line, address, reason, detail in entries:
                channel = channel_of_address(address)
                try:
                    rows.append(
                        (channel, normal_address(channel, address, account["country"]), reason,
                         detail)
                    )  # fmt: skip
                except ValueError as e:
                    problems.append(f"{file}:{line}: {e}")
            if problems:
                from ..errors import CsvError

                raise CsvError("\n".join(problems[:20]) + "\nnothing was imported", problems)
            added = sum(
                self.suppress(account["id"], ch, addr, reason, now, detail)
                for ch, addr, reason, detail in rows
            )
            return {"account": account_key, "rows": len(rows), "added": added}

    def list_suppressions(self, account_id: int | None = None) -> list[dict[str, Any]]:
        """Every suppressed address, newest first."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT a.key AS account, s.channel, s.address, s.reason, s.detail, s.created_at"
                " FROM suppressions s JOIN accounts a ON a.id = s.account_id"
                " WHERE ? IS NULL OR s.account_id = ? ORDER BY s.created_at DESC, s.id DESC",
                (account_id, account_id),
            )
        ]

    def suppress(
        self,
        account_id: int,
        channel: str,
        address: str,
        reason: str,
        now: str,
        detail: str | None = None,
    ) -> bool:
        """Suppress an address (already normalised); False when it already was."""
        return bool(
            self.conn.execute(
                "INSERT INTO suppressions (account_id, channel, address, reason, detail,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (account_id, channel, address) DO NOTHING",
                (account_id, channel, address, reason, detail, now),
            ).rowcount
        )

    def suppress_quietly(
        self,
        account: sqlite3.Row,
        channel: str,
        address: str,
        reason: str,
        now: str,
        detail: str | None = None,
    ) -> bool:
        """Suppress an address that arrived from outside; one that does not parse is skipped."""
        try:
            normal = normal_address(channel, address, account["country"])
        except ValueError:
            return False
        return self.suppress(account["id"], channel, normal, reason, now, detail)

    def is_suppressed(self, account: sqlite3.Row, address: str) -> bool:
        """Whether the account never sends to this address (on its channel) again."""
        channel = channel_of_address(address)
        try:
            normal = normal_address(channel, address, account["country"])
        except ValueError:
            return False
        return (
            self.conn.execute(
                "SELECT 1 FROM suppressions WHERE account_id = ? AND channel = ? AND address = ?",
                (account["id"], channel, normal),
            ).fetchone()
            is not None
        )

    def suppress_lead(self, lead_id: int, reason: str, now: str) -> list[str]:
        """Suppress every address of a lead (an opt-out); returns those newly suppressed."""
        lead = self.conn.execute(
            "SELECT l.email, l.phone, l.account_id, a.country FROM leads l"
            " JOIN accounts a ON a.id = l.account_id WHERE l.id = ?",
            (lead_id,),
        ).fetchone()
        added = []
        for channel, address in (("email", lead["email"]), ("sms", lead["phone"])):
            if address and self.suppress(lead["account_id"], channel, address, reason, now):
                added.append(address)
        return added

    def suppressed_sends(self, sends: list[ClaimedSend]) -> dict[int, str]:
        """Of these claimed sends, those to a suppressed address, with the error that names
        the suppression: one indexed lookup per send."""
        keyed = {}
        for send in sends:
            address = send.address
            if address:
                keyed[send.id] = (send.account_id, send.channel, address.lower())
        if not keyed:
            return {}
        found = {
            (r["account_id"], r["channel"], r["address"]): (
                f"suppressed: {r['address']} is on the suppression list ({r['reason']},"
                f" since {r['created_at']}); nothing was sent"
            )
            for r in self.conn.execute(
                "SELECT account_id, channel, address, reason, created_at FROM suppressions"
                " WHERE (account_id, channel, address) IN"
                f" (VALUES {', '.join(['(?, ?, ?)'] * len(keyed))})",
                [v for key in keyed.values() for v in key],
            )
        }
        return {row_id: found[key] for row_id, key in keyed.items() if key in found}

    def fail_suppressed(
        self, sends: list[ClaimedSend], token: str, now: str
    ) -> tuple[list[ClaimedSend], list[ClaimedSend]]:
        """Sends just started (their lead still in the stage and not do-not-contact) to a
        suppressed address fail at once: a permanent error naming the suppression, nothing on
        the wire, then `on_failure`. Returns (the sends to make, the sends failed)."""
        errors = self.suppressed_sends(sends)
        if not errors:
            return sends, []
        start, failed = [], []
        for send in sends:
            error = errors.get(send.id)
            if error is None:
                start.append(send)
                continue
            cur = self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'failed', performed_at = ?,"
                " last_error = ? WHERE id = ? AND claim_token = ? AND status = 'running'",
                (now, error, send.id, token),
            )
            if not cur.rowcount:
                continue
            failed.append(send)
            self.store.lifecycle.action_failed(send, now)
            if self.store.scheduler.left_stage(send):
                self.store.lifecycle.resume_enrollment(send.enrollment_id, now)
            else:
                self.store.scheduler.on_failure(send, now)
        return start, failed


def _normal(account: Any, address: str) -> tuple[str, str]:
    """The channel an address belongs to and its normal form; a clear error if invalid."""
    channel = channel_of_address(address)
    try:
        return channel, normal_address(channel, address, account["country"])
    except ValueError as e:
        raise PipectlError(str(e)) from None
