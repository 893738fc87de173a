"""What arrived by itself: record each inbound message once, match it, apply its effect;
suppressions; where each sync source left off and whether it worked.

`record_inbound` is one short transaction per message: the reply row (at most once, by
external_id), the source's cursor and the effect commit together, so a sync killed half-way
and run again neither loses a message nor applies one twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import defaults
from ..durations import add_seconds
from ..errors import NotFound, PipectlError
from ..statuses import ActionStatus, DeliveryStatus, EnrollmentStatus, HookEvent, ReplyKind
from .database import Part
from .pg_schema import SYNC_LOCK
from .rows import ActionRow, ClaimedSend

if TYPE_CHECKING:
    from ..inbound import Cursor, InboundMessage, TextStatus


REASONS = ("bounce", "opt_out", "provider", "manual", "complaint")
STATUS_DAYS = 3  # texts sent this recently, still `sent`, are asked for their final status
FAILED_TEXT = (DeliveryStatus.UNDELIVERED, "failed")  # the provider's words
PROVIDER_OPT_OUT = "21610"  # Twilio: the person replied STOP to the provider
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


def normal_address(channel: str, address: str, country: str | None) -> str:
    """A suppression's address: lower-case email, or E.164; ValueError names a bad one."""
    address = address.strip()
    if channel == "email":
        if "@" not in address or any(c.isspace() for c in address):
            raise ValueError(f"{address!r} is not an email address")
        return address.lower()
    from ..leads import normalise_phone  # phonenumbers is slow to import

    return normalise_phone(address, country)


def channel_of_address(address: str) -> str:
    """An address with an @ is an email; anything else a phone number."""
    return "email" if "@" in address else "sms"


class InboundSQL(Part):
    """Inbound messages, their effects, suppressions, and sync sources."""

    # --- sync sources -------------------------------------------------------------------

    def sync_source(self, account_id: int, kind: str, name: str) -> int:
        """The id of this account's source (created on first use)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO sync_sources (account_id, kind, name) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id, kind, name) DO NOTHING",
                (account_id, kind, name),
            )
            return self.conn.execute(
                "SELECT id FROM sync_sources WHERE account_id = ? AND kind = ? AND name = ?",
                (account_id, kind, name),
            ).fetchone()[0]

    @contextmanager
    def reading(self, source_id: int) -> Iterator[bool]:
        """Whether this process may read the source now: against PostgreSQL one runner at a
        time (a session advisory lock, let go at the end or when the connection drops); on
        SQLite always (the tick lock, and cursors that never go back)."""
        if not self.database.postgres:
            yield True
            return
        key = f"{SYNC_LOCK}, CAST(? AS INTEGER)"
        mine = bool(
            self.conn.execute(f"SELECT pg_try_advisory_lock({key})", (source_id,)).fetchone()[0]
        )
        try:
            yield mine
        finally:
            if mine:
                self.conn.execute(f"SELECT pg_advisory_unlock({key})", (source_id,))

    def sync_cursors(self, source_id: int) -> dict[str, Cursor]:
        """Where the source stands, per folder."""
        from ..inbound import Cursor

        return {
            r["folder"]: Cursor(r["folder"], r["uidvalidity"], r["last_uid"], r["position"])
            for r in self.conn.execute(
                "SELECT * FROM sync_cursors WHERE source_id = ?", (source_id,)
            )
        }

    def sync_finished(self, source_id: int, now: str, error: str | None) -> None:
        """The outcome of one sync of a source: a success clears its error; a failure keeps
        when the failing began."""
        with self.transaction():
            if error is None:
                self.conn.execute(
                    "UPDATE sync_sources SET last_attempt_at = ?, last_success_at = ?,"
                    " last_error = NULL, failing_since = NULL WHERE id = ?",
                    (now, now, source_id),
                )
            else:
                self.conn.execute(
                    "UPDATE sync_sources SET last_attempt_at = ?, last_error = ?,"
                    " failing_since = coalesce(failing_since, ?) WHERE id = ?",
                    (now, error, now, source_id),
                )

    def retire_sources(self, account_id: int, kept: list[int]) -> None:
        """Forget the account's sources no longer configured (an inbox removed or renamed),
        so `status` does not warn about them forever."""
        gone = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM sync_sources WHERE account_id = ?", (account_id,)
            )
            if r[0] not in kept
        ]
        if not gone:
            return  # the usual case: no write
        with self.transaction():
            for source_id in gone:
                self.conn.execute("DELETE FROM sync_cursors WHERE source_id = ?", (source_id,))
                self.conn.execute("DELETE FROM sync_sources WHERE id = ?", (source_id,))

    def inbound_status(self, account_id: int) -> list[dict[str, Any]]:
        """The account's sources, their last successful sync, and a warning while the last
        sync of one failed (for `status`)."""
        sources = []
        for r in self.conn.execute(
            "SELECT kind, name, last_attempt_at, last_success_at, last_error, failing_since"
            " FROM sync_sources WHERE account_id = ? ORDER BY kind, name",
            (account_id,),
        ):
            source = dict(r)
            source["warning"] = None
            if r["last_error"]:
                last = r["last_success_at"] or "never"
                error = r["last_error"].split(f"{r['name']}: ", 1)[-1]  # named already
                source["warning"] = (
                    f"{r['kind']} source {r['name']} failing since {r['failing_since']}"
                    f" (last successful sync: {last}): {error}"
                )
            sources.append(source)
        return sources

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
                self._save_cursor(source_id, cursor)
            account = self.conn.execute(
                "SELECT * FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            if message.kind in (ReplyKind.BOUNCE, ReplyKind.SOFT_BOUNCE):
                return self._record_bounce(account, message, now)
            delivery = self._answered_delivery(account_id, message.references)
            if delivery is not None:
                leads = [self._lead(delivery["lead_id"])]
            else:
                leads = self._leads_of_sender(account, message.channel, message.sender)
            if not leads:
                return self._record_unmatched(account, message, now)
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

    def _save_cursor(self, source_id: int, cursor: Cursor) -> None:
        self.conn.execute(
            "INSERT INTO sync_cursors (source_id, folder, uidvalidity, last_uid, position)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source_id, folder) DO UPDATE SET"
            " uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,"
            " position = excluded.position"
            # Never backwards: two syncs of one source at once (cron's tick and a `sync`).
            " WHERE sync_cursors.uidvalidity IS NOT excluded.uidvalidity"
            " OR coalesce(excluded.last_uid, 0) >= coalesce(sync_cursors.last_uid, 0)"
            " AND coalesce(excluded.position, '') >= coalesce(sync_cursors.position, '')",
            (source_id, cursor.folder, cursor.uidvalidity, cursor.last_uid, cursor.position),
        )

    def _lead(self, lead_id: int) -> sqlite3.Row:
        return self.conn.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()

    def _answered_delivery(self, account_id: int, message_ids: Iterable[str]) -> sqlite3.Row | None:
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

    def _record_unmatched(
        self, account: sqlite3.Row, message: InboundMessage, now: str
    ) -> Recorded:
        """Kept with no lead, for `replies list --unmatched`; an opt-out still suppresses."""
        effect = "unmatched: no send and no lead of the account"
        reply_id = self.store.replies.insert_reply(
            account["id"],
            None,
            message.channel,
            message.body,
            message.received_at,
            source=message.source,
            kind=message.kind,
            sender=message.sender,
            subject=message.subject,
            external_id=message.external_id,
        )
        if reply_id is None:
            return Recorded(False, message.kind, False)
        if (
            message.kind == ReplyKind.OPT_OUT
            and message.sender
            and self._suppress_quietly(account, message.channel, message.sender, "opt_out", now)
        ):
            effect += f"; {message.sender} suppressed"
        self._set_effect(reply_id, effect)
        return Recorded(True, message.kind, False, effect)

    def _set_effect(self, reply_id: int, effect: str) -> None:
        self.conn.execute("UPDATE replies SET effect = ? WHERE id = ?", (effect, reply_id))

    # --- bounces ------------------------------------------------------------------------

    def _record_bounce(self, account: sqlite3.Row, message: InboundMessage, now: str) -> Recorded:
        """A DSN: the send it returns (by its Message-ID, else the failed recipient's latest
        delivery); a hard bounce fails that send, suppresses the address and follows
        `on_failure` while the lead is still in that stage. A soft bounce changes nothing."""
        ids = (message.bounced_message_id, *message.references)
        delivery = self._answered_delivery(account["id"], [i for i in ids if i])
        if delivery is None and message.failed_recipient:
            delivery = self.conn.execute(
                "SELECT d.*, a.enrollment_id FROM deliveries d"
                " JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id"
                " WHERE d.account_id = ? AND d.channel = 'email'"
                " AND lower(d.recipient) = lower(?) ORDER BY d.sent_at DESC, d.id DESC LIMIT 1",
                (account["id"], message.failed_recipient.strip()),
            ).fetchone()
        reply_id = self.store.replies.insert_reply(
            account["id"],
            delivery["lead_id"] if delivery else None,
            message.channel,
            message.body,
            message.received_at,
            source=message.source,
            kind=message.kind,
            sender=message.sender,
            subject=message.subject,
            external_id=message.external_id,
            delivery_id=delivery["id"] if delivery else None,
        )
        if reply_id is None:
            return Recorded(False, message.kind, delivery is not None)
        if delivery is None:
            effect = "unmatched: returns no send of the account"
        elif message.kind == ReplyKind.SOFT_BOUNCE:
            effect = f"delayed ({_status_text(message)}): recorded; nothing changes"
        else:
            effect = self._bounced(account, delivery, message, now, reply_id)
        self._set_effect(reply_id, effect)
        return Recorded(True, message.kind, delivery is not None, effect)

    def _bounced(
        self,
        account: sqlite3.Row,
        delivery: sqlite3.Row,
        message: InboundMessage,
        now: str,
        reply_id: int,
    ) -> str:
        detail = _status_text(message)
        address = delivery["recipient"] or message.failed_recipient or ""
        effects = []
        if delivery["status"] == DeliveryStatus.BOUNCED:
            effects.append("the send had already bounced")
        else:
            self.conn.execute(
                "UPDATE deliveries SET status = 'bounced', status_detail = ?, status_at = ?"
                " WHERE id = ?",
                (detail, now, delivery["id"]),
            )
            effects.append(f"delivery {delivery['id']} bounced")
            self.store.hooks.emit(
                HookEvent.BOUNCED,
                delivery["lead_id"],
                now,
                lead_stage_id=self._lead_stage_of(delivery),
                reply_id=reply_id,
            )
        if address and self._suppress_quietly(account, "email", address, "bounce", now, detail):
            effects.append(f"{address.lower()} suppressed")
        effects.append(self._fail_sent(delivery, f"bounced: {detail}", now))
        return "; ".join(effects)

    def _lead_stage_of(self, delivery: sqlite3.Row) -> int:
        return self.conn.execute(
            "SELECT lead_stage_id FROM lead_stage_actions WHERE id = ?",
            (delivery["lead_stage_action_id"],),
        ).fetchone()[0]

    def _fail_sent(self, delivery: sqlite3.Row, error: str, now: str) -> str:
        """A send that went out but never arrived becomes `failed`; while the lead is still in
        its stage, the stage's `on_failure` follows. Only a `done` send changes: one failed
        already stays as it is, and one running again is left to the tick that runs it."""
        action = self.conn.execute(
            "SELECT * FROM lead_stage_actions WHERE id = ?", (delivery["lead_stage_action_id"],)
        ).fetchone()
        if action["status"] != ActionStatus.DONE:
            return f"action {action['id']} is {action['status']}: left as it is"
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'failed', last_error = ? WHERE id = ?",
            (error, action["id"]),
        )
        row = ActionRow.from_row(action)
        self.store.lifecycle.action_failed(row, now)
        if self.store.scheduler.left_stage(row):
            return f"action {action['id']} failed; the lead had left that stage"
        enrollment = self.conn.execute(
            "SELECT status FROM enrollments WHERE id = ?", (action["enrollment_id"],)
        ).fetchone()
        if enrollment["status"] not in (EnrollmentStatus.ACTIVE, EnrollmentStatus.IDLE):
            return f"action {action['id']} failed; the run had ended ({enrollment['status']})"
        self.store.scheduler.on_failure(row, now)
        policy = json.loads(action["params"]).get("on_failure") or defaults.ON_FAILURE
        return f"action {action['id']} failed; on_failure: {policy}"

    # --- SMS delivery reports -----------------------------------------------------------

    def texts_awaiting_status(self, account_id: int, now: str) -> list[str]:
        """Provider ids of the texts sent in the last 3 days whose fate is not known yet."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT provider_id FROM deliveries INDEXED BY deliveries_window"
                " WHERE account_id = ? AND channel = 'sms' AND sent_at >= ? AND sent_at <= ?"
                " AND status = 'sent' AND provider_id IS NOT NULL ORDER BY sent_at",
                (account_id, add_seconds(now, -STATUS_DAYS * 86400), now),
            )
        ]

    def record_text_status(self, account_id: int, status: TextStatus, now: str) -> str | None:
        """A text's final status: delivered, or undelivered/failed (the send fails, then
        `on_failure`; 21610 also suppresses the number). Returns what changed, if anything."""
        with self.transaction():
            delivery = self.conn.execute(
                "SELECT d.*, a.enrollment_id FROM deliveries d"
                " JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id"
                " WHERE d.account_id = ? AND d.provider_id = ? AND d.channel = 'sms'"
                " ORDER BY d.id DESC LIMIT 1",
                (account_id, status.provider_id),
            ).fetchone()
            if delivery is None or delivery["status"] != "sent":
                return None
            if status.status == DeliveryStatus.DELIVERED:
                self.conn.execute(
                    "UPDATE deliveries SET status = 'delivered', status_at = ? WHERE id = ?",
                    (now, delivery["id"]),
                )
                return DeliveryStatus.DELIVERED
            if status.status not in FAILED_TEXT:
                return None
            code = status.error_code or "none"
            detail = f"{status.status} (error {code}" + (
                f": {status.error_message})" if status.error_message else ")"
            )
            self.conn.execute(
                "UPDATE deliveries SET status = 'undelivered', status_detail = ?, status_at = ?"
                " WHERE id = ?",
                (detail, now, delivery["id"]),
            )
            if status.error_code == PROVIDER_OPT_OUT:
                account = self.conn.execute(
                    "SELECT * FROM accounts WHERE id = ?", (account_id,)
                ).fetchone()
                # Only SMS: the person opted out of texts at the provider, not of email. The
                # lead's later texts are skipped (its stages go on); its email may go on.
                self._suppress_quietly(
                    account, "sms", delivery["recipient"], "provider", now, detail
                )
                self.conn.execute(
                    "UPDATE leads SET sms_opt_out = 1, updated_at = ? WHERE id = ?",
                    (now, delivery["lead_id"]),
                )
            self._fail_sent(delivery, f"sms {detail}", now)
            return DeliveryStatus.UNDELIVERED

    # --- suppressions -------------------------------------------------------------------

    def add_suppression(
        self, account_key: str, address: str, *, reason: str, now: str, detail: str | None = None
    ) -> dict[str, Any]:
        """Suppress one address by hand; the reason is one of REASONS or free text (manual)."""
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            channel = channel_of_address(address)
            try:
                normal = normal_address(channel, address, account["country"])
            except ValueError as e:
                raise PipectlError(str(e)) from None
            if reason not in REASONS:
                reason, detail = "manual", reason
            added = self._suppress(account["id"], channel, normal, reason, now, detail)
            return {"account": account_key, "channel": channel, "address": normal, "added": added}

    def remove_suppression(self, account_key: str, address: str) -> dict[str, Any]:
        """Allow sends to an address again; NotFound when it was not suppressed."""
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            channel = channel_of_address(address)
            try:
                normal = normal_address(channel, address, account["country"])
            except ValueError as e:
                raise PipectlError(str(e)) from None
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
                self._suppress(account["id"], ch, addr, reason, now, detail)
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

    def _suppress(
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

    def _suppress_quietly(
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
        return self._suppress(account["id"], channel, normal, reason, now, detail)

    def suppress_lead(self, lead_id: int, reason: str, now: str) -> list[str]:
        """Suppress every address of a lead (an opt-out); returns those newly suppressed."""
        lead = self.conn.execute(
            "SELECT l.email, l.phone, l.account_id, a.country FROM leads l"
            " JOIN accounts a ON a.id = l.account_id WHERE l.id = ?",
            (lead_id,),
        ).fetchone()
        added = []
        for channel, address in (("email", lead["email"]), ("sms", lead["phone"])):
            if address and self._suppress(lead["account_id"], channel, address, reason, now):
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


def _status_text(message: InboundMessage) -> str:
    """`5.1.1 (user unknown)`: the DSN's status and diagnostic, as last_error shows them."""
    status = message.status or "no status"
    return f"{status} ({message.diagnostic})" if message.diagnostic else status
