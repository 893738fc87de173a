"""Replies and opt-outs: match an inbound message to its lead, record it, and let it steer.

A reply completes the lead's `wait_for_reply` (its `on_reply` move, else the pipeline's, else
the next action) or takes the pipeline's `on_reply`; an opt-out keyword stops everything.
The state changes reuse the scheduler's helpers, inside one transaction per call.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..durations import add_seconds, format_time, utcnow
from ..errors import NotFound, PipectlError
from ..statuses import EnrollmentStatus, HookEvent, ReplyKind, sql_list
from .database import Part
from .rows import ActionRow
from .suppressions_sql import channel_of_address, normal_address

OPT_OUT = re.compile(r"[\W_]*(stop|stopall|unsubscribe|cancel|end|quit)[\W_]*", re.IGNORECASE)
# A stop (by hand or by an opt-out) ends these; a failed run too, so `retry` cannot restart it.
STOPPABLE_STATES = sql_list(
    (
        EnrollmentStatus.QUEUED,
        EnrollmentStatus.ACTIVE,
        EnrollmentStatus.IDLE,
        EnrollmentStatus.FAILED,
    )
)


def is_opt_out(body: str | None) -> bool:
    """Only an opt-out keyword, any case, with nothing around it but spaces and punctuation."""
    return bool(body) and OPT_OUT.fullmatch(body) is not None  # type: ignore[arg-type]


@dataclass
class ReplyRow:
    """One reply to import (from a CSV row); `line` names it in the summary."""

    line: int
    channel: str
    received_at: str
    email: str | None = None
    phone: str | None = None
    body: str = ""


class RepliesSQL(Part):
    """Record replies, apply opt-outs, stop leads by hand."""

    # --- public verbs -------------------------------------------------------------------

    def record_reply(
        self,
        account_key: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        channel: str,
        body: str | None,
        received_at: str,
    ) -> dict[str, Any]:
        """Record one inbound reply and what it did; NotFound when no lead has that address."""
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            leads = self.sender_leads(account, email=email, phone=phone)
            if not leads and is_opt_out(body):
                return self._opt_out_unmatched(
                    account, channel, email or phone or "", body or "", received_at, "manual"
                )
            if not leads:
                sender = f"email {email!r}" if email else f"phone {phone!r}"
                raise NotFound(
                    f"no lead of account '{account_key}' has {sender}; the reply was not recorded"
                )
            result = self.record_for_leads(
                account["id"], leads, channel, body or "", received_at, source="manual"
            )
            assert result is not None  # only a repeated external id is skipped
            return result

    def import_replies(self, account_key: str, replies: Iterable[ReplyRow]) -> dict[str, Any]:
        """Record many replies in time order, in one transaction; unmatched rows are reported."""
        summary: dict[str, Any] = {
            "rows": 0,
            "matched": 0,
            "opt_outs": 0,
            "unmatched": [],
            "unmatched_opt_outs": 0,
            "senders_suppressed": 0,
        }
        with self.transaction():
            account = self.store.config.account_by_key(account_key)
            for reply in sorted(replies, key=lambda r: (r.received_at, r.line)):
                summary["rows"] += 1
                try:
                    leads = self.sender_leads(account, email=reply.email, phone=reply.phone)
                    reason = f"no lead has {reply.email or reply.phone!r}"
                except PipectlError as e:
                    leads, reason = [], str(e)
                if not leads:
                    summary["unmatched"].append(
                        self._import_unmatched(account, reply, reason, summary)
                    )
                    continue
                result = self.record_for_leads(
                    account["id"], leads, reply.channel, reply.body, reply.received_at, source="csv"
                )
                assert result is not None  # only a repeated external id is skipped
                summary["matched"] += 1
                summary["opt_outs"] += result["opt_out"]
        summary["unmatched"].sort(key=lambda u: u["line"])
        return summary

    def _import_unmatched(
        self, account: sqlite3.Row, reply: ReplyRow, reason: str, summary: dict[str, Any]
    ) -> dict[str, Any]:
        """A row that matches no lead is reported; an opt-out is also kept unmatched and its
        sender suppressed, as the sync does: a STOP binds whoever has the address later."""
        if not is_opt_out(reply.body):
            return {"line": reply.line, "reason": reason}
        sender = _sender(reply.channel, reply.email, reply.phone)
        before = self.store.suppressions.is_suppressed(account, sender)
        result = self._opt_out_unmatched(
            account, reply.channel, sender, reply.body, reply.received_at, "csv"
        )
        summary["unmatched_opt_outs"] += 1
        suppressed = self.store.suppressions.is_suppressed(account, result["sender"])
        summary["senders_suppressed"] += suppressed and not before  # newly, once an address
        sender = result["sender"]
        state = f"{sender} suppressed" if suppressed else f"{sender!r} cannot be suppressed"
        return {
            "line": reply.line,
            "reason": f"{reason}; opt-out kept unmatched, {state}",
            "opt_out": True,
            "suppressed": sender if suppressed else None,
        }

    def _opt_out_unmatched(
        self,
        account: sqlite3.Row,
        channel: str,
        sender: str,
        body: str,
        received_at: str,
        source: str,
    ) -> dict[str, Any]:
        """An opt-out from an address no lead has: kept unmatched, the address suppressed,
        by the sync's own path (`store.inbound.record_unmatched`)."""
        with contextlib.suppress(ValueError):  # as the sync keeps one: lower-case, E.164
            sender = normal_address(channel_of_address(sender), sender, account["country"])
        recorded = self.store.inbound.record_unmatched(
            account,
            channel=channel,
            sender=sender,
            body=body,
            received_at=received_at,
            source=source,
            kind=ReplyKind.OPT_OUT,
            now=received_at,
        )
        return {
            "channel": channel,
            "received_at": received_at,
            "opt_out": True,
            "unmatched": True,
            "sender": sender,
            "replies": [
                {
                    "reply_id": recorded.reply_id,
                    "lead_id": None,
                    "lead": None,
                    "effect": recorded.effect,
                }
            ],
        }

    def stop_lead(
        self, lead_ref: str, *, account_key: str | None = None, now: str | None = None
    ) -> dict[str, Any]:
        """Stop a lead's automation by hand: every running or failed enrollment ends `stopped`
        (the lead's status follows its latest enrollment's)."""
        now = now or format_time(utcnow())
        with self.transaction():
            lead = self.resolve_lead(lead_ref, account_key=account_key)
            stopped = self._stop_all(lead["id"], now)
        return {
            "lead_id": lead["id"],
            "email": lead["email"],
            "phone": lead["phone"],
            "stopped": stopped,
        }

    def resolve_lead(self, ref: str, *, account_key: str | None = None) -> sqlite3.Row:
        """A lead named by id, email or phone (optionally within one account)."""
        ref = ref.strip()
        where, params = "", []
        if account_key is not None:
            account = self.store.config.account_by_key(account_key)
            where, params = " AND account_id = ?", [account["id"]]
        found: list[sqlite3.Row] = []
        if ref.isdigit() and int(ref) < 2**63:  # larger is no id SQLite can hold
            found = self.conn.execute(
                f"SELECT * FROM leads WHERE id = ?{where}", (int(ref), *params)
            ).fetchall()
        if not found and "@" in ref:
            found = self.conn.execute(
                f"SELECT * FROM leads WHERE email = ?{where}", (ref.lower(), *params)
            ).fetchall()
        elif not found:
            phones = self._phone_candidates(ref, account_key)
            found = self.conn.execute(
                "SELECT * FROM leads WHERE phone IN (SELECT value FROM json_each(?))"
                f"{where} ORDER BY id",
                (json.dumps(sorted(phones)), *params),
            ).fetchall()
        if not found:
            scope = f" in account '{account_key}'" if account_key else ""
            raise NotFound(f"no lead {ref!r}{scope}: give the lead's id, email or phone")
        if len(found) > 1:
            ids = ", ".join(str(r["id"]) for r in found)
            raise PipectlError(
                f"{ref!r} names {len(found)} leads (ids {ids}); give the lead's id"
                + ("" if account_key else " or --account")
            )
        return found[0]

    # --- inside the caller's transaction --------------------------------------------------

    def sender_leads(
        self, account: sqlite3.Row, *, email: str | None, phone: str | None
    ) -> list[sqlite3.Row]:
        """The account's leads with this email (case-insensitive) or this phone (E.164)."""
        if email:
            return self.conn.execute(
                "SELECT * FROM leads WHERE account_id = ? AND email = ?",
                (account["id"], email.strip().lower()),
            ).fetchall()
        if not phone:
            raise PipectlError("a reply needs the sender's email or phone")
        try:
            from ..lead_values import normalise_phone  # phonenumbers is slow to import

            e164 = normalise_phone(phone, account["country"])
        except ValueError as e:
            raise PipectlError(str(e)) from None
        # A shared number (a family, an office) matches every lead that has it.
        return self.conn.execute(
            "SELECT * FROM leads WHERE account_id = ? AND phone = ? ORDER BY id",
            (account["id"], e164),
        ).fetchall()

    def _phone_candidates(self, ref: str, account_key: str | None) -> set[str]:
        """`ref` in E.164 as each account's country reads it (one account's, if given)."""
        countries = {
            r[0]
            for r in self.conn.execute(
                "SELECT country FROM accounts WHERE ? IS NULL OR key = ?",
                (account_key, account_key),
            )
        } or {None}
        phones = set()
        for country in countries:
            try:
                from ..lead_values import normalise_phone

                phones.add(normalise_phone(ref, country))
            except ValueError:
                continue
        return phones

    def record_for_leads(
        self,
        account_id: int,
        leads: list[sqlite3.Row],
        channel: str,
        body: str,
        received_at: str,
        *,
        source: str,
        kind: str | None = None,
        sender: str | None = None,
        subject: str | None = None,
        external_id: str | None = None,
        delivery_id: int | None = None,
        enrollment_id: int | None = None,
    ) -> dict[str, Any] | None:
        """Record a reply of each lead and let it act: a reply steers (only `enrollment_id`'s
        run when it names the send it answers), an opt-out stops, an auto-reply changes
        nothing. None when `external_id` was recorded before (then nothing acts again)."""
        kind = kind or (ReplyKind.OPT_OUT if is_opt_out(body) else ReplyKind.REPLY)
        opt_out = kind == ReplyKind.OPT_OUT
        replies = []
        for i, lead in enumerate(leads):
            reply_id = self.insert_reply(
                account_id,
                lead["id"],
                channel,
                body,
                received_at,
                source=source,
                kind=kind,
                sender=sender or (lead["phone"] if channel == "sms" else lead["email"]),
                subject=subject,
                # A number shared by several leads: the first row carries the message's id.
                external_id=external_id if i == 0 else None,
                delivery_id=delivery_id,
            )
            if reply_id is None:
                return None
            hooked = {"reply_id": reply_id, "enrollment_id": enrollment_id}
            if opt_out:
                effect = self._opt_out(lead["id"], received_at)
                self.store.hooks.emit(HookEvent.OPTED_OUT, lead["id"], received_at, **hooked)
            elif kind == ReplyKind.AUTO_REPLY:
                effect = "auto-reply: recorded; changes nothing"
            elif self.store.inbound.same_reply_recorded(
                lead["id"], channel, body, received_at, source
            ):
                effect = "the same reply was recorded before; not acted on again"
            else:  # `replied` first: the stage it names is the one the lead replied in
                self.store.hooks.emit(HookEvent.REPLIED, lead["id"], received_at, **hooked)
                effect = self._steer(lead["id"], received_at, enrollment_id)
            self.conn.execute("UPDATE replies SET effect = ? WHERE id = ?", (effect, reply_id))
            replies.append(
                {
                    "reply_id": reply_id,
                    "lead_id": lead["id"],
                    "lead": lead["email"] or lead["phone"],
                    "effect": effect,
                }
            )
        return {
            "channel": channel,
            "received_at": received_at,
            "opt_out": opt_out,
            "replies": replies,
        }

    def insert_reply(
        self,
        account_id: int,
        lead_id: int | None,
        channel: str,
        body: str,
        received_at: str,
        *,
        source: str,
        kind: str,
        sender: str | None,
        subject: str | None = None,
        external_id: str | None = None,
        delivery_id: int | None = None,
    ) -> int | None:
        """One replies row; None when this source's `external_id` is already recorded."""
        row = self.conn.execute(
            "INSERT INTO replies (account_id, lead_id, channel, sender, kind, subject, body,"
            " received_at, source, external_id, delivery_id, opt_out, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (account_id, source, external_id) WHERE external_id IS NOT NULL"
            " DO NOTHING RETURNING id",
            (account_id, lead_id, channel, sender, kind, subject, body, received_at, source,
             external_id, delivery_id, int(kind == ReplyKind.OPT_OUT), format_time(utcnow())),
        ).fetchone()  # fmt: skip
        return None if row is None else row[0]

    def _opt_out(self, lead_id: int, now: str) -> str:
        """Do-not-contact from now on, and every running enrollment stopped."""
        self.conn.execute(
            "UPDATE leads SET do_not_contact = 1, updated_at = ? WHERE id = ?", (now, lead_id)
        )
        stopped = self._stop_all(lead_id, now)
        suppressed = self.store.suppressions.suppress_lead(lead_id, "opt_out", now)
        also = f"; suppressed {', '.join(suppressed)}" if suppressed else ""
        if not stopped:
            return f"opt-out: marked do-not-contact; no automation was running{also}"
        return f"opt-out: marked do-not-contact; stopped {', '.join(stopped)}{also}"

    def _stop_all(self, lead_id: int, now: str) -> list[str]:
        """End every queued, active, idle or failed enrollment of the lead; returns their
        pipelines. Won, lost and stopped ones stay as they are."""
        enrollments = self.conn.execute(
            "SELECT e.id, p.key FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
            f" WHERE e.lead_id = ? AND e.status IN {STOPPABLE_STATES} ORDER BY e.id",
            (lead_id,),
        ).fetchall()
        for enrollment in enrollments:
            self.store.lifecycle.stop_enrollment(
                enrollment["id"], lead_id, EnrollmentStatus.STOPPED, now
            )
        return [e["key"] for e in enrollments]

    def _steer(self, lead_id: int, received_at: str, enrollment_id: int | None = None) -> str:
        """A reply completes the open wait_for_reply, or takes the pipeline's `on_reply`."""
        effects = []
        enrollments = self.conn.execute(
            "SELECT e.id, e.started_at, p.key AS pipeline, p.on_reply, ls.id AS lead_stage_id,"
            " ls.entered_at, s.key AS stage FROM enrollments e"
            " JOIN pipelines p ON p.id = e.pipeline_id"
            " JOIN lead_stages ls ON ls.enrollment_id = e.id AND ls.exited_at IS NULL"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " WHERE e.lead_id = ? AND e.status IN ('active', 'idle')"
            " AND (? IS NULL OR e.id = ?) ORDER BY e.id",
            (lead_id, enrollment_id, enrollment_id),
        ).fetchall()
        for e in enrollments:
            if e["started_at"] and received_at < e["started_at"]:
                # An old message (an inbox export, `--at` in the past) belongs to an earlier
                # run, or to none: it never steers a run that began after it.
                effects.append(f"{e['pipeline']}: dated before this run began; not acted on")
                continue
            effect = self._steer_enrollment(e, lead_id, received_at)
            if effect:
                effects.append(f"{e['pipeline']}: {effect}")
        return "; ".join(effects) or "recorded; no automation was waiting for it"

    def _steer_enrollment(self, e: sqlite3.Row, lead_id: int, received_at: str) -> str | None:
        wait = self.conn.execute(
            "SELECT * FROM lead_stage_actions WHERE lead_stage_id = ?"
            " AND status = 'awaiting_reply'",
            (e["lead_stage_id"],),
        ).fetchone()
        if wait is not None and self._within_wait(wait, received_at):
            self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'done', performed_at = ? WHERE id = ?",
                (received_at, wait["id"]),
            )
            target = json.loads(wait["params"]).get("on_reply") or e["on_reply"]
            if not target:
                self.store.lifecycle.advance(ActionRow.from_row(wait), received_at)
                return f"wait for reply in {e['stage']} done; the next action follows"
            return self._move_on_reply(e, lead_id, wait, target, received_at)
        if e["on_reply"] and e["on_reply"] != e["stage"]:
            # Never leave a stage before the lead entered it: a reply dated earlier in the run
            # moves the lead now, from the stage it is in.
            moved_at = max(received_at, e["entered_at"])
            return self._move_on_reply(e, lead_id, None, e["on_reply"], moved_at)
        return None

    @staticmethod
    def _within_wait(wait: sqlite3.Row, received_at: str) -> bool:
        """A reply counts for a wait it arrived during; after the timeout, the timeout won."""
        started = add_seconds(wait["perform_at"], -json.loads(wait["params"]).get("timeout", 0))
        return started <= received_at < wait["perform_at"]

    def _move_on_reply(
        self,
        e: sqlite3.Row,
        lead_id: int,
        wait: sqlite3.Row | None,
        target: str,
        received_at: str,
    ) -> str:
        error = self.store.lifecycle.move(e["id"], lead_id, e["lead_stage_id"], target, received_at)
        if error is None:
            return f"moved from {e['stage']} to {target}"
        if wait is not None:
            self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'failed', last_error = ? WHERE id = ?",
                (error, wait["id"]),
            )
            self.store.lifecycle.action_failed(ActionRow.from_row(wait), received_at)
        self.store.lifecycle.stop_enrollment(e["id"], lead_id, EnrollmentStatus.FAILED, received_at)
        return f"failed: {error}"


def _sender(channel: str, email: str | None, phone: str | None) -> str:
    """The address a reply came from: the one of its channel, else the one it has."""
    first, other = (email, phone) if channel == "email" else (phone, email)
    return first or other or ""
