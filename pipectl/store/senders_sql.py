"""Sender mailboxes: applied from the YAML, their room today, the sender each lead keeps, the
sends each made per local day; and the previous email of a thread.

A sender's use today is read from `sender_days` (one row per sender and account-local day,
written in the transaction that records each send) plus its sends in flight (`running`
rows): never a scan of deliveries, and the same for every runner.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from .. import defaults
from ..channels.addresses import mailbox_address as sender_address
from ..scheduler.limits import local_day, next_day_opens, sender_cap
from .database import Part
from .rows import ClaimedSend, Result

SENDER_OWN = defaults.SENDER_OWN


@dataclass
class Mailbox:
    """One sender as the claim sees it today."""

    id: int
    address: str
    settings: dict[str, Any]  # the email channel keys it overrides, ${VAR} kept
    cap: int  # today's: min(daily_limit, warm-up)
    sent: int  # really sent today
    in_flight: int = 0  # claimed, result not written yet
    room: int = field(init=False)  # what it may still send today

    def __post_init__(self) -> None:
        self.room = max(0, self.cap - self.sent - self.in_flight)

    def take(self) -> None:
        """One more email claimed from this sender."""
        self.in_flight += 1
        self.room -= 1


class SendersSQL(Part):
    """Sender mailboxes: apply, room today, assignment, counters; threads."""

    # --- apply ------------------------------------------------------------------------

    def apply_senders(
        self, account_id: int, senders: Iterable[dict[str, Any]], now: str
    ) -> list[tuple[str, str, str]]:
        """Make the account's senders match the YAML (inside `apply`'s transaction); a sender
        gone from it is marked removed and its leads move on at their next email. Returns
        (address, created|changed|unchanged|removed, detail) per sender."""
        existing = {
            r["address"]: r
            for r in self.conn.execute("SELECT * FROM senders WHERE account_id = ?", (account_id,))
        }
        changes: list[tuple[str, str, str]] = []
        senders = list(senders)
        for sender in senders:
            address = sender_address(str(sender.get("from") or ""))
            warmup = sender.get("warmup") or {}
            values = {
                "sender": str(sender["from"]),
                "settings": json.dumps(
                    {k: v for k, v in sender.items() if k not in SENDER_OWN}, sort_keys=True
                ),
                "daily_limit": int(sender["daily_limit"]),
                "warmup_start": warmup.get("start"),
                "warmup_step": warmup.get("step"),
                "removed_at": None,
            }
            row = existing.pop(address, None)
            if row is None:
                self.conn.execute(
                    "INSERT INTO senders (account_id, address, sender, settings, daily_limit,"
                    " warmup_start, warmup_step, removed_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account_id, address, *values.values(), now, now),
                )
                changes.append((address, "created", ""))
                continue
            changed = [k for k, v in values.items() if row[k] != v]
            if changed:
                assignments = ", ".join(f"{k} = ?" for k in values)
                self.conn.execute(
                    f"UPDATE senders SET {assignments}, updated_at = ? WHERE id = ?",
                    (*values.values(), now, row["id"]),
                )
                detail = "back in the YAML" if row["removed_at"] else ", ".join(changed)
                changes.append((address, "changed", detail))
            else:
                changes.append((address, "unchanged", ""))
        for address, row in existing.items():
            if row["removed_at"] is not None:
                continue
            self.conn.execute(
                "UPDATE senders SET removed_at = ?, updated_at = ? WHERE id = ?",
                (now, now, row["id"]),
            )
            leads = self.conn.execute(
                "SELECT count(*) FROM leads WHERE sender_id = ?", (row["id"],)
            ).fetchone()[0]
            moving = "1 lead" if leads == 1 else f"{leads} leads"
            to = "another sender" if senders else "the email channel's from"
            changes.append((address, "removed", f"{moving} will move to {to}"))
        return changes

    # --- the claim --------------------------------------------------------------------

    def mailboxes(self, account_id: int, timezone: str, now: str) -> list[Mailbox]:
        """The account's senders in the YAML, with today's cap, sends and sends in flight."""
        today = local_day(now, timezone)
        rows = self.conn.execute(
            "SELECT s.id, s.address, s.settings, s.daily_limit, s.warmup_start, s.warmup_step,"
            " s.first_sent_on, d.sent FROM senders s"
            " LEFT JOIN sender_days d ON d.sender_id = s.id AND d.day = ?"
            " WHERE s.account_id = ? AND s.removed_at IS NULL ORDER BY s.id",
            (today, account_id),
        ).fetchall()
        in_flight = dict(
            self.conn.execute(
                "SELECT l.sender_id, count(*) FROM lead_stage_actions a"
                " JOIN leads l ON l.id = a.lead_id WHERE a.status = 'running'"
                " AND a.account_id = ? AND a.channel = 'email' AND l.sender_id IS NOT NULL"
                " GROUP BY l.sender_id",
                (account_id,),
            ).fetchall()
        )
        boxes = []
        for r in rows:
            warmup = (r[4], r[5]) if r[4] is not None else None
            cap, _ = sender_cap(r[3], warmup, r[6], today)
            boxes.append(
                Mailbox(r[0], r[1], json.loads(r[2]), cap, r[7] or 0, in_flight.get(r[0], 0))
            )
        return boxes

    @staticmethod
    def full_filter(boxes: list[Mailbox]) -> tuple[str, tuple[int, ...]]:
        """SQL on `l` (leads) leaving out leads whose sender has no room today."""
        full = tuple(b.id for b in boxes if b.room <= 0)
        if not full:
            return "", ()
        return (
            f"AND (l.sender_id IS NULL OR l.sender_id NOT IN ({', '.join('?' * len(full))})) ",
            full,
        )

    def assign(self, sends: list[ClaimedSend], boxes: list[Mailbox]) -> list[ClaimedSend]:
        """The due emails their senders have room for, in order, each from its sender (its
        settings; a broken mailbox holds only its own): a lead keeps its sender; a lead
        without one (or whose sender was removed) gets the one with the most room left. The
        rest stay pending, held back."""
        by_id = {b.id: b for b in boxes}
        by_room = attrgetter("room")  # boxes are in id order: a tie goes to the oldest sender
        chosen: dict[int, int] = {}  # lead id -> sender id, for leads met in this batch
        kept, assigned = [], []
        for send in sends:
            box = by_id.get(chosen.get(send.lead_id, send.sender_id or 0))
            if box is None:
                box = max(boxes, key=by_room, default=None)
                if box is None or box.room <= 0:
                    continue  # every sender is full: a new lead's first email waits too
                assigned.append((box.id, send.lead_id))
            if box.room <= 0:
                continue
            chosen[send.lead_id] = box.id
            box.take()
            kept.append(send.from_sender(box.id, box.address, box.settings))
        if assigned:
            self.conn.executemany("UPDATE leads SET sender_id = ? WHERE id = ?", assigned)
        return kept

    def previous_emails(self, sends: list[ClaimedSend]) -> dict[int, dict[str, Any]]:
        """Each enrollment's last email sent, what a `thread: true` follow-up answers, for
        many claimed sends at once (one read): by enrollment id."""
        if not sends:
            return {}
        leads = sorted({send.lead_id for send in sends})
        wanted = {send.enrollment_id for send in sends}
        latest: dict[int, tuple[Any, ...]] = {}
        for enrollment_id, *found in self.conn.execute(
            "SELECT a.enrollment_id, d.sent_at, d.id, d.message_id, d.subject, "
            "d.thread_references FROM deliveries d "
            "JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id "
            f"WHERE d.lead_id IN ({', '.join('?' * len(leads))}) AND d.channel = 'email' "
            "AND d.message_id IS NOT NULL",
            leads,
        ).fetchall():
            if enrollment_id in wanted and tuple(found) > latest.get(enrollment_id, ()):
                latest[enrollment_id] = tuple(found)
        return {
            e: {"message_id": f[2], "subject": f[3], "references": f[4]} for e, f in latest.items()
        }

    # --- results ----------------------------------------------------------------------

    def count_sent(self, done: list[Result]) -> None:
        """Add the emails sent to their sender's day (account-local), in the transaction
        that records them; a sender's first send starts its warm-up."""
        days: dict[tuple[int, str], int] = {}
        for r in done:
            if r.action.sender_id:
                day = local_day(r.finished_at, r.action.account_timezone)
                key = (r.action.sender_id, day)
                days[key] = days.get(key, 0) + 1
        if not days:
            return
        self.conn.executemany(
            "INSERT INTO sender_days (sender_id, day, sent) VALUES (?, ?, ?)"
            " ON CONFLICT (sender_id, day) DO UPDATE SET sent = sender_days.sent + excluded.sent",
            [(s, d, n) for (s, d), n in days.items()],
        )
        first: dict[int, str] = {}
        for s, d in days:
            first[s] = min(d, first.get(s, d))
        self.conn.executemany(
            "UPDATE senders SET first_sent_on = ? WHERE id = ? AND first_sent_on IS NULL",
            [(d, s) for s, d in first.items()],
        )

    # --- status -----------------------------------------------------------------------

    def sender_status(self, account: Any, now: str) -> list[dict[str, Any]]:
        """Each sender's use today against its cap and warm-up, and the leads it holds."""
        today = local_day(now, account["timezone"])
        rows = self.conn.execute(
            "SELECT s.*, d.sent FROM senders s"
            " LEFT JOIN sender_days d ON d.sender_id = s.id AND d.day = ?"
            " WHERE s.account_id = ? ORDER BY s.id",
            (today, account["id"]),
        ).fetchall()
        report = []
        for r in rows:
            if r["removed_at"] is not None and not r["sent"]:
                continue
            warmup = (r["warmup_start"], r["warmup_step"]) if r["warmup_start"] else None
            cap, day = sender_cap(r["daily_limit"], warmup, r["first_sent_on"], today)
            leads = self.conn.execute(
                "SELECT count(*) FROM leads WHERE sender_id = ?", (r["id"],)
            ).fetchone()[0]
            report.append(
                {
                    "sender": r["address"],
                    "day": today,
                    "sent_today": r["sent"] or 0,
                    "cap_today": cap,
                    "daily_limit": r["daily_limit"],
                    "warmup": None
                    if warmup is None
                    else {"start": warmup[0], "step": warmup[1], "day": day},
                    "leads": leads,
                    "removed": r["removed_at"] is not None,
                    "next_day_at": next_day_opens(now, account["timezone"]),
                }
            )
        return report

    def waiting_for_sender(self, account: Any, now: str, before: str) -> int:
        """Due emails (perform_at <= `before`) held back because their sender (or, for a new
        lead, every sender) is full today: they wait for the next day, not overdue."""
        boxes = self.mailboxes(account["id"], account["timezone"], now)
        if not boxes:
            return 0
        full = [b.id for b in boxes if b.room <= 0]
        if not full:
            return 0
        live = [b.id for b in boxes]
        new_lead_waits = len(full) == len(boxes)
        held = f"l.sender_id IN ({', '.join('?' * len(full))})"
        params: list[Any] = [account["id"], before, *full]
        if new_lead_waits:
            held += f" OR l.sender_id IS NULL OR l.sender_id NOT IN ({', '.join('?' * len(live))})"
            params += live
        return self.conn.execute(
            "SELECT count(*) FROM lead_stage_actions a"
            " JOIN leads l ON l.id = a.lead_id WHERE a.account_id = ? AND a.channel = 'email'"
            f" AND a.status = 'pending' AND a.perform_at <= ? AND ({held})",
            params,
        ).fetchone()[0]

    def held_by_failing(self, account_id: int, channel: str, now: str) -> tuple[int, str | None]:
        """A failing sender's (`email:<address>`) due emails held back, and its last send."""
        row = self.conn.execute(
            "SELECT id FROM senders WHERE account_id = ? AND address = ?",
            (account_id, channel.split(":", 1)[1]),
        ).fetchone()
        if row is None:
            return 0, None
        held = self.conn.execute(
            "SELECT count(*) FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id"
            " WHERE a.account_id = ? AND a.channel = 'email' AND a.status = 'pending'"
            " AND a.perform_at <= ? AND l.sender_id = ?",
            (account_id, now, row[0]),
        ).fetchone()[0]
        last = self.conn.execute(
            "SELECT max(sent_at) FROM deliveries WHERE sender_id = ?", (row[0],)
        ).fetchone()[0]
        return held, last
