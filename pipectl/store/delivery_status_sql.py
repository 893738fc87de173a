"""What became of a send after it left: a bounce (DSN) read from the mailbox, a text's final
status from the provider. A hard bounce or an undelivered text fails the send and follows
the stage's `on_failure` while the lead is still in that stage.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from .. import defaults
from ..durations import add_seconds
from ..statuses import ActionStatus, DeliveryStatus, EnrollmentStatus, HookEvent, ReplyKind
from .database import Part
from .inbound_sql import Recorded
from .rows import ActionRow

if TYPE_CHECKING:
    from ..inbound import InboundMessage, TextStatus

STATUS_DAYS = 3  # texts sent this recently, still `sent`, are asked for their final status
FAILED_TEXT = (DeliveryStatus.UNDELIVERED, "failed")  # the provider's words
PROVIDER_OPT_OUT = "21610"  # Twilio: the person replied STOP to the provider


class DeliveryStatusSQL(Part):
    """Bounces and text statuses: a delivery's fate, and the send's when it failed."""

    def record_bounce(self, account: sqlite3.Row, message: InboundMessage, now: str) -> Recorded:
        """A DSN: the send it returns (by its Message-ID, else the failed recipient's latest
        delivery); a hard bounce fails that send, suppresses the address and follows
        `on_failure` while the lead is still in that stage. A soft bounce changes nothing."""
        ids = (message.bounced_message_id, *message.references)
        delivery = self.store.inbound.answered_delivery(account["id"], [i for i in ids if i])
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
        self.store.inbound.set_effect(reply_id, effect)
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
        if address and self.store.suppressions.suppress_quietly(
            account, "email", address, "bounce", now, detail
        ):
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
                self.store.suppressions.suppress_quietly(
                    account, "sms", delivery["recipient"], "provider", now, detail
                )
                self.conn.execute(
                    "UPDATE leads SET sms_opt_out = 1, updated_at = ? WHERE id = ?",
                    (now, delivery["lead_id"]),
                )
            self._fail_sent(delivery, f"sms {detail}", now)
            return DeliveryStatus.UNDELIVERED


def _status_text(message: InboundMessage) -> str:
    """`5.1.1 (user unknown)`: the DSN's status and diagnostic, as last_error shows them."""
    status = message.status or "no status"
    return f"{status} ({message.diagnostic})" if message.diagnostic else status
