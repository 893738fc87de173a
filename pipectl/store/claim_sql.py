"""The claim: which due work this turn takes, read in the claim's transaction.

Waits and moves due are done in place; due sends are read per account and channel within
the account's concurrency, rates, send window and sender mailboxes (a failing channel gives
one probe), and marked `running` with the tick's claim token. What the claim hands back are
`ClaimedSend`s, built in one place (`ClaimedSend.from_row`). Starting, releasing and putting
sends back is `starts_sql.py`; the turn's transaction is `scheduler_sql.py`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, cast

from ..durations import add_seconds
from ..scheduler.limits import rate_room, share
from ..scheduler.windows import window_opens
from ..statuses import EnrollmentStatus
from .batches import chunks, joined
from .database import Part
from .rows import ActionRow, Claim, ClaimedSend, Ledger, SendAccount
from .runners_sql import RUNNER_ID_LENGTH
from .senders_sql import Mailbox
from .stages_sql import marks

INTERNAL_BATCH = 500
# What the claim reads of a due send, in `ClaimedSend.from_row`'s order; then whether the lead
# may be contacted (do-not-contact, opted out of the channel: `{channel}` is filled in).
SEND_COLUMNS = (
    "a.id, a.lead_id, a.account_id, a.enrollment_id, a.lead_stage_id, "
    "(SELECT e.pipeline_id FROM enrollments e WHERE e.id = a.enrollment_id), a.type, a.channel, "
    "a.params, a.attempts, a.perform_at, l.email, l.phone, l.first_name, l.last_name, "
    "l.fields, l.timezone, l.sender_id, l.do_not_contact, l.{channel}_opt_out"
)


def send_window_opens(send: ClaimedSend, now: str) -> str | None:
    """When a send outside its send window may go: plain values to the scheduler's rule."""
    window = send.params.get("send_window")
    zones = (window and window.get("timezone"), send.timezone, send.account_timezone)
    return window_opens(window, zones, now)


class ClaimSQL(Part):
    """The claim's reading of due work; runs inside the caller's transaction."""

    def claim(self, now: str, token: str, ledger: Ledger) -> Claim:
        """Do due internal work in place, and claim due sends fairly across accounts within
        their concurrency and rates (marked `running`, fenced by `token`)."""
        claim = Claim()
        self._expire_reply_waits(now, claim)
        accounts = self.conn.execute("SELECT * FROM accounts ORDER BY id").fetchall()
        health = self.store.health.channel_health()
        others = self._others_in_flight(token)
        candidates: dict[int, list[ClaimedSend]] = {}
        for account in accounts:
            self._internal_due(account["id"], now, claim)
            candidates[account["id"]] = self._send_candidates(
                account, now, token, ledger, claim, health, others
            )
        # Accounts in turns across claims too: the least recently served first, so when
        # fewer sends may be claimed than accounts are waiting, the same ones do not win.
        order = sorted(candidates, key=lambda k: (ledger.served.get(k, -1), k))
        given = share(ledger.capacity, {k: len(candidates[k]) for k in order})
        chosen = [send for k, sends in candidates.items() for send in sends[: given[k]]]
        if chosen:
            ids = [send.id for send in chosen]
            self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'running', claim_token = ?, "
                f"claimed_at = NULL, due_at = perform_at WHERE id IN ({marks(ids)})",
                (token, *ids),
            )
            if health:
                self.store.health.mark_probes(chosen, token)
            claim.sends = chosen
        return claim

    def _others_in_flight(self, token: str) -> dict[tuple[int, str], int]:
        """Sends other runners have claimed and not finished, per (account, channel): an
        account's concurrency and rates hold for all runners together (none on SQLite, where
        one tick runs at a time: no query)."""
        if not self.database.postgres:
            return {}
        return {
            (r[0], r[1]): r[2]
            for r in self.conn.execute(
                "SELECT account_id, channel, count(*) FROM lead_stage_actions "
                f"WHERE status = 'running' AND substr(claim_token, 1, {RUNNER_ID_LENGTH}) != ? "
                "GROUP BY account_id, channel",
                (token[:RUNNER_ID_LENGTH],),
            )
        }

    def _send_candidates(
        self,
        account: sqlite3.Row,
        now: str,
        token: str,
        ledger: Ledger,
        claim: Claim,
        health: dict[tuple[int, str], sqlite3.Row],
        others: dict[tuple[int, str], int],
    ) -> list[ClaimedSend]:
        """Due sends of one account that its concurrency and rates allow now, oldest first;
        of a failing channel, one probe a tick while none of its sends is in flight."""
        account_id = account["id"]
        elsewhere = {ch: n for (a, ch), n in others.items() if a == account_id}
        room = ledger.room(account_id, account["concurrency"]) - sum(elsewhere.values())
        if room <= 0:
            return []
        rates = {k: tuple(v) for k, v in json.loads(account["rates"] or "{}").items()}
        sent = self.sent_in_windows(account_id, rates, now)
        for (a, ch), n in [*ledger.held.items(), *others.items()]:
            if a == account_id:
                sent[ch] = sent.get(ch, 0) + n
                sent["all"] = sent.get("all", 0) + n
        sends: list[ClaimedSend] = []
        channels = json.loads(account["channels"] or "{}")
        boxes = None
        if (channels.get("email") or {}).get("senders"):
            boxes = self.store.senders.mailboxes(account_id, account["timezone"], now)
        for channel in ("email", "sms"):
            limit = rate_room(rates, sent, channel)
            limit = room if limit is None else min(room, limit)
            settings = self._send_account(account, channels, channel)
            if channel == "email" and boxes is not None:
                sends += self._sender_sends(
                    settings, account, now, limit, claim, boxes, health, token
                )
                continue
            failing = health.get((account_id, channel))
            if failing is None:
                if limit > 0:
                    sends += self._due_sends(
                        settings, account_id, channel, now, limit, claim, token
                    )
            elif (
                limit > 0
                and not ledger.held.get((account_id, channel), 0)
                and self.store.health.may_probe(failing, token, now)
            ):
                sends += self._probe(settings, account_id, channel, now, claim, token, failing)
        sends.sort(key=lambda s: (s.perform_at, s.id))
        all_room = rate_room({"all": rates["all"]}, sent, "all") if "all" in rates else None
        return sends[: min(room, all_room if all_room is not None else room)]

    def _send_account(
        self, account: sqlite3.Row, channels: dict[str, Any], channel: str
    ) -> SendAccount:
        """What each claimed send of this account and channel carries of it."""
        return SendAccount(
            key=account["key"],
            timezone=account["timezone"],
            concurrency=account["concurrency"],
            instance=self.instance,
            # What the send needs: the inbound settings (and their ${VAR}s) are sync's.
            channel_config={
                k: v
                for k, v in channels.get(channel, {}).items()
                if k not in ("inbox", "inbound", "senders")
            },
        )

    def _sender_sends(
        self,
        settings: SendAccount,
        account: sqlite3.Row,
        now: str,
        limit: int,
        claim: Claim,
        boxes: list[Mailbox],
        health: dict[tuple[int, str], sqlite3.Row],
        token: str,
    ) -> list[ClaimedSend]:
        """Due emails of an account with sender mailboxes, each sender within its room today.
        A failing sender (its login refused, say) holds its own leads' emails, not attempts,
        and sends one of them a tick as a probe; the other senders go on."""
        sends: list[ClaimedSend] = []
        account_id = account["id"]
        for box in boxes:
            failing = health.get((account_id, f"email:{box.address}"))
            if failing is None:
                continue
            had_room, box.room = box.room, 0
            if had_room > 0 and limit > 0 and self.store.health.may_probe(failing, token, now):
                probe = Mailbox(box.id, box.address, box.settings, box.cap, box.sent, box.in_flight)
                probed = self._probe(
                    settings, account_id, "email", now, claim, token, failing, [probe]
                )
                sends += probed
                limit -= len(probed)
        limit = min(limit, sum(b.room for b in boxes))
        if limit > 0:  # else every sender is full today: its emails wait for tomorrow
            sends += self._due_sends(
                settings, account_id, "email", now, limit, claim, token, boxes=boxes
            )
        return sends

    def sent_in_windows(
        self, account_id: int, rates: dict[str, tuple[int, int]], now: str
    ) -> dict[str, int]:
        """Deliveries in each rate's rolling window: the limits count what was really sent."""
        sent = {}
        for name, (_, seconds) in rates.items():
            since = add_seconds(now, -seconds)
            channels = ("email", "sms") if name == "all" else (name,)
            sent[name] = sum(
                self.conn.execute(
                    # No upper bound: a send another runner stamped a moment ahead of this
                    # runner's clock still counts.
                    "SELECT count(*) FROM deliveries "
                    "WHERE account_id = ? AND channel = ? AND sent_at > ?",
                    (account_id, ch, since),
                ).fetchone()[0]
                for ch in channels
            )
        return sent

    def _probe(
        self,
        settings: SendAccount,
        account_id: int,
        channel: str,
        now: str,
        claim: Claim,
        token: str,
        health: sqlite3.Row,
        boxes: list[Mailbox] | None = None,
    ) -> list[ClaimedSend]:
        """The failing channel's probe: the due send after the last one tried (else the
        oldest), so one send that fails alone does not hold its channel for good. `boxes`:
        the one failing sender mailbox whose leads' emails are probed."""
        after = self.store.health.probe_cursor(health)
        due = (settings, account_id, channel, now, 1, claim, token)
        one = boxes is not None
        sends = self._due_sends(*due, after=after, boxes=boxes, probing=one)
        if not sends and after:
            sends = self._due_sends(*due, boxes=boxes, probing=one)
        return [send.as_probe() for send in sends]

    def _due_sends(
        self,
        settings: SendAccount,
        account_id: int,
        channel: str,
        now: str,
        limit: int,
        claim: Claim,
        token: str,
        after: tuple[str, int] | None = None,
        boxes: list[Mailbox] | None = None,
        probing: bool = False,
    ) -> list[ClaimedSend]:
        """Up to `limit` due sends (after `after`, a (perform_at, id), if given);
        do-not-contact leads are stopped and windows deferred. With sender mailboxes
        (`boxes`), emails whose sender is full today stay pending, held back."""
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples, made into ClaimedSends: thousands a second
        where, params = "", cast(tuple[Any, ...], ())
        if after:
            where = "AND a.perform_at >= ? AND (a.perform_at > ? OR a.id > ?) "
            params = (after[0], after[0], after[1])
        if boxes is not None:
            full, full_ids = self.store.senders.full_filter(boxes)
            where, params = where + full, (*params, *full_ids)
            if probing:  # one failing sender's probe: only its own leads
                where, params = where + "AND l.sender_id = ? ", (*params, boxes[0].id)
        rows = cursor.execute(
            f"SELECT {SEND_COLUMNS.format(channel=channel)} "
            "FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id "
            "WHERE a.account_id = ? AND a.channel = ? AND a.status = 'pending' "
            f"AND a.perform_at <= ? {where}ORDER BY a.perform_at, a.id LIMIT ?"
            + self.database.dialect.claim_lock,
            (account_id, channel, now, *params, limit),
        ).fetchall()
        due, deferred = [], []
        for row in rows:
            send = ClaimedSend.from_row(row, settings, token)
            if row[-2]:  # the lead is do-not-contact
                self.store.lifecycle.stop_enrollment(
                    send.enrollment_id, send.lead_id, EnrollmentStatus.STOPPED, now
                )
                claim.skipped += 1
                continue
            if row[-1]:  # opted out of this channel
                self.store.starts.skip_opted_out(send, now)
                claim.skipped += 1
                continue
            opens = send_window_opens(send, now)
            if opens:
                deferred.append((send.id, opens))
                continue
            due.append(send)
        if any(send.params.get("thread") for send in due):
            threads = [send for send in due if send.params.get("thread")]
            previous = self.store.senders.previous_emails(threads)  # one read for them all
            due = [
                send.in_thread(previous.get(send.enrollment_id))
                if send.params.get("thread")
                else send
                for send in due
            ]
        for batch in chunks(deferred):  # outside their send window: due when it opens
            batch_from, opening = joined("lead_stage_actions", batch)
            self.conn.execute(
                f"UPDATE lead_stage_actions SET perform_at = v.column2 {batch_from}", opening
            )
        claim.deferred += len(deferred)
        return due if boxes is None else self.store.senders.assign(due, boxes)

    # --- internal work, done in the claim's transaction --------------------------------

    def _internal_due(self, account_id: int, now: str, claim: Claim) -> None:
        """Waits and moves need no thread: they are done here, in the claim transaction."""
        rows = self.conn.execute(
            "SELECT * FROM lead_stage_actions WHERE account_id = ? AND channel = 'internal' "
            "AND status = 'pending' AND perform_at <= ? ORDER BY perform_at LIMIT ?",
            (account_id, now, INTERNAL_BATCH),
        ).fetchall()
        for row in rows:
            self._finish_internal(ActionRow.from_row(row), now, claim)

    def _expire_reply_waits(self, now: str, claim: Claim) -> None:
        """A wait_for_reply past its timeout takes its `on_timeout` path."""
        rows = self.conn.execute(
            "SELECT * FROM lead_stage_actions WHERE status = 'awaiting_reply' "
            "AND perform_at <= ? ORDER BY perform_at LIMIT ?",
            (now, INTERNAL_BATCH),
        ).fetchall()
        for row in rows:
            self._finish_internal(ActionRow.from_row(row), now, claim)

    def _finish_internal(self, action: ActionRow, now: str, claim: Claim) -> None:
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'done', performed_at = ?, "
            "due_at = perform_at, claimed_at = ?, attempts = attempts + 1 WHERE id = ?",
            (now, now, action.id),
        )
        claim.internal += 1
        target = None
        if action.type == "move":
            target = action.params.get("stage")
        elif action.type == "wait_for_reply":
            target = action.params.get("on_timeout")
        if not target:
            self.store.lifecycle.advance(action, now)
            return
        lifecycle = self.store.lifecycle
        error = lifecycle.move(
            action.enrollment_id, action.lead_id, action.lead_stage_id, target, now
        )
        if error:
            self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'failed', last_error = ? WHERE id = ?",
                (error, action.id),
            )
            lifecycle.action_failed(action, now)
            claim.failed += 1
            lifecycle.stop_enrollment(
                action.enrollment_id, action.lead_id, EnrollmentStatus.FAILED, now
            )
