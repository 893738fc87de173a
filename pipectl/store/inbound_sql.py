"""What arrived by itself: record each inbound message once, match it to a send or a lead,
apply its effect; list what arrived.

`record_inbound` is one short transaction per message: the reply row (at most once, by
external_id), the source's cursor and the effect commit together, so a sync killed half-way
and run again neither loses a message nor applies one twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..durations import add_seconds
from ..errors import PipectlError
from ..statuses import ReplyKind
from .database import Part
from .suppressions_sql import channel_of_address

if TYPE_CHECKING:
    from ..inbound import Cursor, InboundMessage


# A reply typed by hand and the same reply read from the mailbox: one steers, not both.
SAME_REPLY_SECONDS = 86400
MANUAL_SOURCES = ("manual", "csv")


@dataclass(frozen=True)
class Recorded:
    """What recording one inbound message did: `new` is False when it was already recorded."""

    new: bool
    kind: str
    matched: bool
    effect: str = ""
    reply_id: int | None = None


class InboundSQL(Part):
    """Inbound messages: recorded once, matched, their effect applied (bounces:
    `store.delivery_status`; sources and cursors: `store.sync_sources`)."""

    # --- one inbound message ------------------------------------------------------------

    def record_inbound(
        self,
        account_id: int,
        message: InboundMessage,
        cursor: Cursor | None,
        source_id: int | None,
        now: str,
    ) -> Recorded:
        """Record one message at most once, advance the cursor, and apply its effect, in one
        transaction."""
        with self.transaction():
            if cursor is not None and source_id is not None:
                self.store.sync_sources.save_cursor(source_id, cursor)
            account = self.conn.execute(
                "SELECT * FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            if message.kind in (ReplyKind.BOUNCE, ReplyKind.SOFT_BOUNCE):
                return self.store.delivery_status.record_bounce(account, message, now)
            delivery = self.answered_delivery(account_id, message.references)
            if delivery is not None:
                leads = [self._lead(delivery["lead_id"])]
            else:
                leads = self._leads_of_sender(account, message.channel, message.sender)
            if not leads:
                return self.record_unmatched(
                    account,
                    channel=message.channel,
                    sender=message.sender,
                    body=message.body,
                    received_at=message.received_at,
                    source=message.source,
                    kind=message.kind,
                    now=now,
                    subject=message.subject,
                    external_id=message.external_id,
                )
            result = self.store.replies.record_for_leads(
                account_id,
                leads,
                message.channel,
                message.body,
                message.received_at,
                source=message.source,
                kind=message.kind,
                sender=message.sender,
                subject=message.subject,
                external_id=message.external_id,
                delivery_id=delivery["id"] if delivery else None,
                enrollment_id=delivery["enrollment_id"] if delivery else None,
            )
            if result is None:
                return Recorded(False, message.kind, True)
            effects = "; ".join(r["effect"] for r in result["replies"])
            return Recorded(True, message.kind, True, effects)

    def _lead(self, lead_id: int) -> sqlite3.Row:
        return self.conn.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()

    def answered_delivery(self, account_id: int, message_ids: Iterable[str]) -> sqlite3.Row | None:
        """The send a message names (In-Reply-To first, then each References id), if pipectl
        sent it for this account."""
        for message_id in message_ids:
            if not message_id or not message_id.strip("<> "):
                continue
            row = self.conn.execute(
                "SELECT d.*, a.enrollment_id FROM deliveries d"
                " JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id"
                " WHERE d.account_id = ? AND d.message_id = ? ORDER BY d.id DESC LIMIT 1",
                (account_id, f"<{message_id.strip().strip('<>')}>"),
            ).fetchone()
            if row is not None:
                return row
        return None

    def _leads_of_sender(
        self, account: sqlite3.Row, channel: str, sender: str
    ) -> list[sqlite3.Row]:
        """The account's leads with this address: email case-insensitive, phone as E.164."""
        if not sender:
            return []
        try:
            if channel == "email":
                return self.store.replies.sender_leads(account, email=sender, phone=None)
            return self.store.replies.sender_leads(account, email=None, phone=sender)
        except PipectlError:  # a sender number that is no phone number matches no lead
            return []

    def same_reply_recorded(
        self, lead_id: int, channel: str, body: str, received_at: str, source: str
    ) -> bool:
        """The same reply arrived the other way too: typed in by hand (`pipectl reply`,
        `replies import`) and read from the mailbox or the provider, within a day of each
        other, the typed one with the same text or none."""
        typed_here = source in MANUAL_SOURCES
        others = ("imap", "twilio") if typed_here else MANUAL_SOURCES
        text = " ".join((body or "").split()).casefold()
        for r in self.conn.execute(
            "SELECT body FROM replies INDEXED BY replies_lead WHERE lead_id = ? AND channel = ?"
            f" AND kind = 'reply' AND source IN {tuple(others)}"
            " AND received_at >= ? AND received_at <= ?",
            (
                lead_id,
                channel,
                add_seconds(received_at, -SAME_REPLY_SECONDS),
                add_seconds(received_at, SAME_REPLY_SECONDS),
            ),
        ):
            other = " ".join((r["body"] or "").split()).casefold()
            if other == text or not (text if typed_here else other):
                return True
        return False

    def record_unmatched(
        self,
        account: sqlite3.Row,
        *,
        channel: str,
        sender: str,
        body: str,
        received_at: str,
        source: str,
        kind: str,
        now: str,
        subject: str | None = None,
        external_id: str | None = None,
    ) -> Recorded:
        """Kept with no lead, for `replies list --unmatched`; an opt-out still suppresses its
        sender for the account (on the sender's channel), whatever lead has it later. The
        sync, `pipectl reply` and `replies import` all keep unmatched opt-outs here."""
        effect = "unmatched: no send and no lead of the account"
        reply_id = self.store.replies.insert_reply(
            account["id"],
            None,
            channel,
            body,
            received_at,
            source=source,
            kind=kind,
            sender=sender,
            subject=subject,
            external_id=external_id,
        )
        if reply_id is None:
            return Recorded(False, kind, False)
        if (
            kind == ReplyKind.OPT_OUT
            and sender
            and self.store.suppressions.suppress_quietly(
                account, channel_of_address(sender), sender, "opt_out", now
            )
        ):
            effect += f"; {sender} suppressed"
        self.set_effect(reply_id, effect)
        return Recorded(True, kind, False, effect, reply_id)

    def set_effect(self, reply_id: int, effect: str) -> None:
        """What recording a message did, for `replies list`."""
        self.conn.execute("UPDATE replies SET effect = ? WHERE id = ?", (effect, reply_id))

    # --- what arrived -------------------------------------------------------------------

    def list_replies(
        self,
        *,
        account_id: int | None = None,
        kind: str | None = None,
        unmatched: bool = False,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Inbound messages, newest first, with their lead (none when unmatched)."""
        index = "INDEXED BY replies_unmatched " if unmatched else ""
        rows = self.conn.execute(
            "SELECT r.id, a.key AS account, r.lead_id, l.email AS lead_email,"
            " l.phone AS lead_phone, r.channel, r.kind, r.sender, r.source, r.subject, r.body,"
            " r.received_at, r.delivery_id, r.effect"
            f" FROM replies r {index}JOIN accounts a ON a.id = r.account_id"
            " LEFT JOIN leads l ON l.id = r.lead_id"
            " WHERE (? IS NULL OR r.account_id = ?) AND (? IS NULL OR r.kind = ?)"
            f" {'AND r.lead_id IS NULL' if unmatched else ''}"
            " ORDER BY r.received_at DESC, r.id DESC LIMIT ?",
            (account_id, account_id, kind, kind, limit),
        ).fetchall()
        return [dict(r) for r in rows]
