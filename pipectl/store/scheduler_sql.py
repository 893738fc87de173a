"""The tick's SQL: recover, admit, claim due work, record results, move leads between stages.

Public methods open their own transaction; `_` helpers run inside the caller's. Every
completion is fenced by the claim token, so a late or repeated write cannot overwrite a
newer state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, cast

from .. import defaults
from ..durations import add_seconds
from ..scheduler.limits import rate_room, share
from ..scheduler.windows import window_opens
from ..statuses import ActionStatus, EnrollmentStatus
from .admission_sql import admit_batch_size
from .batches import chunks, joined
from .database import Part
from .results_sql import PENDING_UNLESS_LEFT
from .rows import Choose, Claim, Late, Ledger, Result, health_key
from .runners_sql import RUNNER_ID_LENGTH
from .senders_sql import Mailbox
from .stages_sql import marks, snapshot

INTERNAL_BATCH = 500


def _window_opens(row: dict[str, Any], now: str) -> str | None:
    """When a send outside its send window may go: plain values to the scheduler's rule."""
    window = row["params"].get("send_window")
    zones = (window and window.get("timezone"), row["timezone"], row["account_timezone"])
    return window_opens(window, zones, now)


class SchedulerSQL(Part):
    # --- start of a tick --------------------------------------------------------------

    def recover_running(self, runner_id: str = "") -> int:
        """Rows left `running` by a tick that died are due again: on SQLite every such row (the
        lock proves its tick died); against PostgreSQL those of runners that are not working
        within their lease (this runner's own leftovers included)."""
        self.store.lifecycle.forget_config()  # the YAML may have changed since last tick
        self.store.hooks.forget()
        with self.transaction():  # read under the write lock: a runner claims only once recorded
            live = self.store.runners.live_others(runner_id)
            orphan = "a.status = 'running'"
            params: tuple[Any, ...] = ()
            if live:
                orphan += (
                    f" AND substr(a.claim_token, 1, {RUNNER_ID_LENGTH}) NOT IN ({marks(live)})"
                )
                params = tuple(live)
            moved_on = self.conn.execute(
                "SELECT DISTINCT a.enrollment_id, s.exited_at FROM lead_stage_actions a "
                f"JOIN lead_stages s ON s.id = a.lead_stage_id WHERE {orphan} "
                "AND s.exited_at IS NOT NULL",
                params,
            ).fetchall()
            recovered = self.conn.execute(
                f"UPDATE lead_stage_actions SET status = {PENDING_UNLESS_LEFT}, claim_token = NULL "
                f"WHERE id IN (SELECT a.id FROM lead_stage_actions a WHERE {orphan})",
                params,
            ).rowcount
            for enrollment_id, left_at in moved_on:
                self.store.lifecycle.resume_enrollment(enrollment_id, left_at)
            if self.database.postgres:
                self.store.runners.mark_recovered(live, runner_id)
            return recovered

    def admit_queued(self, now: str, cap: int | None = None) -> int:
        """Start queued enrollments, oldest first, up to each account's `active_leads` and
        `cap` (a batch)."""
        with self.transaction():
            return self._admit(now, cap or admit_batch_size())

    def step(
        self,
        now: str,
        token: str,
        results: list[Result],
        ledger: Ledger,
        choose: Choose,
        *,
        claiming: bool = True,
        claim_now: bool = True,
        late: Late | None = None,
    ) -> tuple[dict[str, int], int, Claim]:
        """One transaction per turn of the tick: write the results that came in; admit queued
        leads and claim what is due (`claim_now`); start the claimed sends that workers are
        free for (results, admitted count, claim). When the tick stops claiming, its claimed
        sends not started are released instead, due again as they were.

        `late()` gives the results that came in while the transaction waited for the write
        lock (another runner's turn): they are written in this turn too, so under contention
        turns grow instead of queueing up."""
        with self.transaction():
            if late is not None:
                results = [*results, *late()]
            counts = self._record_results(results)
            claim, admitted = Claim(), 0
            if not claiming:
                self._release(list(ledger.waiting), token, now, claim)
                return counts, 0, claim
            held = self._hold_failing(ledger, token, now) if results else []
            if claim_now:
                admitted = self._admit(now, admit_batch_size())
                claim = self._claim(now, token, ledger)
            skip = {row["id"] for row in held}
            self._start(choose(claim.sends, skip), token, now, claim)
            claim.dropped += held
            # Last, so the others read it fresh however long this took: its claims are its own.
            self.store.runners.beat(token)
            return counts, admitted, claim

    def _admit(self, now: str, cap: int) -> int:
        return self.store.admission.admit(now, cap)

    # --- the claim --------------------------------------------------------------------

    def claim_due(self, now: str, token: str, ledger: Ledger) -> Claim:
        """One short write transaction: do due internal work in place, and claim due sends
        fairly across accounts within their concurrency and rates."""
        with self.transaction():
            return self._claim(now, token, ledger)

    def _claim(self, now: str, token: str, ledger: Ledger) -> Claim:
        claim = Claim()
        self._expire_reply_waits(now, claim)
        accounts = self.conn.execute("SELECT * FROM accounts ORDER BY id").fetchall()
        health = self.store.health.channel_health()
        others = self._others_in_flight(token)
        candidates: dict[int, list[dict[str, Any]]] = {}
        for account in accounts:
            self._internal_due(account["id"], now, claim)
            candidates[account["id"]] = self._send_candidates(
                account, now, token, ledger, claim, health, others
            )
        # Accounts in turns across claims too: the least recently served first, so when
        # fewer sends may be claimed than accounts are waiting, the same ones do not win.
        order = sorted(candidates, key=lambda k: (ledger.served.get(k, -1), k))
        given = share(ledger.capacity, {k: len(candidates[k]) for k in order})
        chosen = [row for k, rows in candidates.items() for row in rows[: given[k]]]
        if chosen:
            ids = [row["id"] for row in chosen]
            self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'running', claim_token = ?, "
                f"claimed_at = NULL, due_at = perform_at WHERE id IN ({marks(ids)})",
                (token, *ids),
            )
            for row in chosen:  # new dicts: a rolled back claim leaves nothing behind
                row["claim_token"] = token
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

    def _start(self, rows: list[dict[str, Any]], token: str, now: str, claim: Claim) -> None:
        """Start claimed sends: an attempt from here (`claimed_at` is when it began), unless
        the lead was stopped, moved on or marked do-not-contact since the claim (skipped), or
        the send window closed while it waited (due again when the window opens)."""
        closed = {row["id"]: opens for row in rows if (opens := _window_opens(row, now))}
        for action_id, opens in closed.items():  # its send window closed while it waited
            skipped = self._put_back([action_id], token, now, perform_at=opens)
            claim.skipped += skipped
            claim.deferred += 1 - skipped
        claim.dropped += [row for row in rows if row["id"] in closed]
        rows = self._within_concurrency([row for row in rows if row["id"] not in closed])
        if not rows:
            return
        ids = [row["id"] for row in rows]
        attempts = dict(
            self.conn.execute(
                "UPDATE lead_stage_actions SET attempts = attempts + 1, claimed_at = ? "
                f"WHERE id IN ({marks(ids)}) AND claim_token = ? AND status = 'running' "
                "AND (SELECT exited_at FROM lead_stages s WHERE s.id = lead_stage_id) IS NULL "
                "AND (SELECT do_not_contact + CASE channel WHEN 'email' THEN email_opt_out "
                "WHEN 'sms' THEN sms_opt_out ELSE 0 END FROM leads l WHERE l.id = lead_id) = 0 "
                "RETURNING id, attempts",
                (now, *ids, token),
            ).fetchall()
        )
        claim.started += [
            {**row, "attempts": attempts[row["id"]]} for row in rows if row["id"] in attempts
        ]
        dropped = [row for row in rows if row["id"] not in attempts]
        if dropped:
            claim.dropped += dropped
            self._skip_unstartable(dropped, token, now, claim)
        claim.started, suppressed = self.store.inbound.fail_suppressed(claim.started, token, now)
        claim.dropped += suppressed
        claim.suppressed += len(suppressed)

    def _within_concurrency(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The sends that may start now: an account's sends on the wire, started by any runner,
        stay within its concurrency. The rest wait, still claimed. (One tick alone has
        already chosen within it; with many runners each knows only its own.)"""
        if not rows or not self.database.postgres:  # SQLite: one tick, which chose within it
            return rows
        on_wire = dict(
            self.conn.execute(
                "SELECT account_id, count(*) FROM lead_stage_actions WHERE status = 'running'"
                " AND claimed_at IS NOT NULL GROUP BY account_id"
            ).fetchall()
        )
        room: dict[int, int] = {}
        starting = []
        for row in rows:
            account = row["account_id"]
            left = room.get(account, row["concurrency"] - on_wire.get(account, 0))
            if left > 0:
                starting.append(row)
            room[account] = left - 1
        return starting

    def _skip_unstartable(
        self, rows: list[dict[str, Any]], token: str, now: str, claim: Claim
    ) -> None:
        """Claimed sends that may not start (in one statement): skipped. A lead that left the
        stage goes on in its current one; one that opted out of the channel only goes on to
        its next action; one marked do-not-contact since the claim is stopped."""
        ids = [row["id"] for row in rows]
        skipped = {
            r[0]: r
            for r in self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'skipped', claim_token = NULL "
                f"WHERE id IN ({marks(ids)}) AND claim_token = ? AND status = 'running' "
                "RETURNING id, (SELECT exited_at FROM lead_stages s "
                "WHERE s.id = lead_stage_actions.lead_stage_id), (SELECT do_not_contact "
                "FROM leads l WHERE l.id = lead_stage_actions.lead_id)",
                (*ids, token),
            ).fetchall()
        }
        for row in rows:
            if row["id"] not in skipped:
                continue  # no longer ours: recovered by another runner, which sends it
            _, exited_at, do_not_contact = skipped[row["id"]]
            claim.skipped += 1
            if exited_at is not None:
                self.store.lifecycle.resume_enrollment(row["enrollment_id"], now)
            elif do_not_contact == 0:  # opted out of this channel only: the next action goes on
                self._skip_opted_out(row, now)
            else:  # marked do-not-contact (by an import) since the claim
                self.store.lifecycle.stop_enrollment(
                    row["enrollment_id"], row["lead_id"], EnrollmentStatus.STOPPED, now
                )

    def _skip_opted_out(self, action: dict[str, Any], now: str) -> None:
        """A send on a channel the lead opted out of is skipped; the stage goes on."""
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'skipped', claim_token = NULL, "
            "last_error = ?, performed_at = ? WHERE id = ?",
            (f"the lead opted out of {action['channel']}", now, action["id"]),
        )
        self.store.lifecycle.advance(action, now)

    def _release(self, rows: list[dict[str, Any]], token: str, now: str, claim: Claim) -> None:
        """Claimed sends never started are due again, as they were (no attempt was made)."""
        if rows:
            self._put_back([row["id"] for row in rows], token, now)
        claim.dropped = rows

    def _hold_failing(self, ledger: Ledger, token: str, now: str) -> list[dict[str, Any]]:
        """Claimed sends not started whose channel has just failed go back, due as they were
        (no attempt was made); a probe still goes. Returns them."""
        health = self.store.health.channel_health()
        if not health:
            return []
        held = [row for row in ledger.waiting if health_key(row) in health and not row.get("probe")]
        if held:
            self._put_back([row["id"] for row in held], token, now)
        return held

    def _put_back(self, ids: list[int], token: str, now: str, perform_at: str | None = None) -> int:
        """Claimed sends not started go back to `pending` (at `perform_at`, if given), or to
        `skipped` when their lead left the stage meanwhile, whose current stage then goes
        on. Returns how many were skipped."""
        left = self.conn.execute(
            f"UPDATE lead_stage_actions SET status = {PENDING_UNLESS_LEFT}, claim_token = NULL, "
            f"perform_at = coalesce(?, perform_at) WHERE id IN ({marks(ids)}) "
            "AND claim_token = ? AND status = 'running' RETURNING enrollment_id, status",
            (perform_at, *ids, token),
        ).fetchall()
        skipped = [
            enrollment_id for enrollment_id, status in left if status == ActionStatus.SKIPPED
        ]
        for enrollment_id in skipped:
            self.store.lifecycle.resume_enrollment(enrollment_id, now)
        return len(skipped)

    def _send_candidates(
        self,
        account: sqlite3.Row,
        now: str,
        token: str,
        ledger: Ledger,
        claim: Claim,
        health: dict[tuple[int, str], sqlite3.Row],
        others: dict[tuple[int, str], int],
    ) -> list[dict[str, Any]]:
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
        rows: list[dict[str, Any]] = []
        channels = json.loads(account["channels"] or "{}")
        boxes = None
        if (channels.get("email") or {}).get("senders"):
            boxes = self.store.senders.mailboxes(account_id, account["timezone"], now)
        for channel in ("email", "sms"):
            limit = rate_room(rates, sent, channel)
            limit = room if limit is None else min(room, limit)
            if channel == "email" and boxes is not None:
                rows += self._sender_sends(
                    account, channels, now, limit, claim, boxes, health, token
                )
                continue
            failing = health.get((account_id, channel))
            if failing is None:
                if limit > 0:
                    rows += self._due_sends(
                        account, channel, channels, now, limit, claim, boxes=boxes
                    )
            elif (
                limit > 0
                and not ledger.held.get((account_id, channel), 0)
                and self.store.health.may_probe(failing, token, now)
            ):
                rows += self._probe(account, channel, channels, now, claim, failing)
        rows.sort(key=lambda r: (r["perform_at"], r["id"]))
        all_room = rate_room({"all": rates["all"]}, sent, "all") if "all" in rates else None
        return rows[: min(room, all_room if all_room is not None else room)]

    def _sender_sends(
        self,
        account: sqlite3.Row,
        channels: dict[str, Any],
        now: str,
        limit: int,
        claim: Claim,
        boxes: list[Mailbox],
        health: dict[tuple[int, str], sqlite3.Row],
        token: str,
    ) -> list[dict[str, Any]]:
        """Due emails of an account with sender mailboxes, each sender within its room today.
        A failing sender (its login refused, say) holds its own leads' emails, not attempts,
        and sends one of them a tick as a probe; the other senders go on."""
        rows: list[dict[str, Any]] = []
        for box in boxes:
            failing = health.get((account["id"], f"email:{box.address}"))
            if failing is None:
                continue
            had_room, box.room = box.room, 0
            if had_room > 0 and limit > 0 and self.store.health.may_probe(failing, token, now):
                probe = Mailbox(box.id, box.address, box.settings, box.cap, box.sent, box.in_flight)
                probed = self._probe(account, "email", channels, now, claim, failing, [probe])
                rows += probed
                limit -= len(probed)
        limit = min(limit, sum(b.room for b in boxes))
        if limit > 0:  # else every sender is full today: its emails wait for tomorrow
            rows += self._due_sends(account, "email", channels, now, limit, claim, boxes=boxes)
        return rows

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
        account: sqlite3.Row,
        channel: str,
        channels: dict[str, Any],
        now: str,
        claim: Claim,
        health: sqlite3.Row,
        boxes: list[Mailbox] | None = None,
    ) -> list[dict[str, Any]]:
        """The failing channel's probe: the due send after the last one tried (else the
        oldest), so one send that fails alone does not hold its channel for good. `boxes`:
        the one failing sender mailbox whose leads' emails are probed."""
        after = self.store.health.probe_cursor(health)
        one = boxes is not None
        rows = self._due_sends(account, channel, channels, now, 1, claim, after, boxes, one)
        if not rows and after:
            rows = self._due_sends(account, channel, channels, now, 1, claim, None, boxes, one)
        for row in rows:
            row["probe"] = True
        return rows

    def _due_sends(
        self,
        account: sqlite3.Row,
        channel: str,
        channels: dict[str, Any],
        now: str,
        limit: int,
        claim: Claim,
        after: tuple[str, int] | None = None,
        boxes: list[Mailbox] | None = None,
        probing: bool = False,
    ) -> list[dict[str, Any]]:
        """Up to `limit` due sends (after `after`, a (perform_at, id), if given);
        do-not-contact leads are stopped and windows deferred. With sender mailboxes
        (`boxes`), emails whose sender is full today stay pending, held back."""
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples, made into dicts below: thousands a second
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
            "SELECT a.id, a.lead_id, a.account_id, a.enrollment_id, a.lead_stage_id, "
            "(SELECT e.pipeline_id FROM enrollments e WHERE e.id = a.enrollment_id) "
            "AS pipeline_id, "
            "a.sequence_number, a.type, a.channel, a.params, a.attempts, a.perform_at, "
            "l.email, l.phone, l.first_name, l.last_name, l.fields, l.timezone, "
            "l.do_not_contact, l.email_opt_out, l.sms_opt_out, l.sender_id "
            "FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id "
            "WHERE a.account_id = ? AND a.channel = ? AND a.status = 'pending' "
            f"AND a.perform_at <= ? {where}ORDER BY a.perform_at, a.id LIMIT ?"
            + self.database.dialect.claim_lock,
            (account["id"], channel, now, *params, limit),
        ).fetchall()
        names = [d[0] for d in cursor.description]
        shared = {
            "account_key": account["key"],
            "instance": self.instance,
            # What the send needs: the inbound settings (and their ${VAR}s) are sync's.
            "channel_config": {
                k: v
                for k, v in channels.get(channel, {}).items()
                if k not in ("inbox", "inbound", "senders")
            },
            "concurrency": account["concurrency"],
            "account_timezone": account["timezone"],
        }
        due, deferred = [], []
        for r in rows:
            row = dict(zip(names, r, strict=True))
            row.update(shared)
            row["params"] = snapshot(row["params"])
            if row["do_not_contact"]:
                self.store.lifecycle.stop_enrollment(
                    row["enrollment_id"], row["lead_id"], EnrollmentStatus.STOPPED, now
                )
                claim.skipped += 1
                continue
            if row[f"{channel}_opt_out"]:
                self._skip_opted_out(row, now)
                claim.skipped += 1
                continue
            opens = _window_opens(row, now)
            if opens:
                deferred.append((row["id"], opens))
                continue
            due.append(row)
        threads = [row for row in due if row["params"].get("thread")]
        previous = self.store.senders.previous_emails(threads)  # one read for them all
        for row in threads:
            row["thread"] = previous.get(row["enrollment_id"])
        for batch in chunks(deferred):  # outside their send window: due when it opens
            batch_from, opening = joined("lead_stage_actions", batch)
            self.conn.execute(
                f"UPDATE lead_stage_actions SET perform_at = v.column2 {batch_from}", opening
            )
        claim.deferred += len(deferred)
        return due if boxes is None else self.store.senders.assign(due, boxes)

    def _internal_due(self, account_id: int, now: str, claim: Claim) -> None:
        """Waits and moves need no thread: they are done here, in the claim transaction."""
        rows = self.conn.execute(
            "SELECT * FROM lead_stage_actions WHERE account_id = ? AND channel = 'internal' "
            "AND status = 'pending' AND perform_at <= ? ORDER BY perform_at LIMIT ?",
            (account_id, now, INTERNAL_BATCH),
        ).fetchall()
        for row in rows:
            self._finish_internal(row, now, claim)

    def _expire_reply_waits(self, now: str, claim: Claim) -> None:
        """A wait_for_reply past its timeout takes its `on_timeout` path."""
        rows = self.conn.execute(
            "SELECT * FROM lead_stage_actions WHERE status = 'awaiting_reply' "
            "AND perform_at <= ? ORDER BY perform_at LIMIT ?",
            (now, INTERNAL_BATCH),
        ).fetchall()
        for row in rows:
            self._finish_internal(row, now, claim)

    def _finish_internal(self, row: sqlite3.Row, now: str, claim: Claim) -> None:
        params = json.loads(row["params"])
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'done', performed_at = ?, "
            "due_at = perform_at, claimed_at = ?, attempts = attempts + 1 WHERE id = ?",
            (now, now, row["id"]),
        )
        claim.internal += 1
        target = None
        if row["type"] == "move":
            target = params.get("stage")
        elif row["type"] == "wait_for_reply":
            target = params.get("on_timeout")
        if target:
            error = self.store.lifecycle.move(
                row["enrollment_id"], row["lead_id"], row["lead_stage_id"], target, now
            )
            if error:
                self.conn.execute(
                    "UPDATE lead_stage_actions SET status = 'failed', last_error = ? WHERE id = ?",
                    (error, row["id"]),
                )
                self.store.lifecycle.action_failed(row, now)
                claim.failed += 1
                self.store.lifecycle.stop_enrollment(
                    row["enrollment_id"], row["lead_id"], EnrollmentStatus.FAILED, now
                )
        else:
            self.store.lifecycle.advance(row, now)

    # --- results ----------------------------------------------------------------------

    def record_results(self, results: Iterable[Result]) -> dict[str, int]:
        """Write a batch of send results in one transaction; each fenced by its claim."""
        with self.transaction():
            return self._record_results(results)

    def fail_claimed(self, action: dict[str, Any], error: str, now: str) -> None:
        """The last resort when a result cannot be written: fail the action (fenced), so a bug
        after a send never makes every later tick send it again."""
        with self.transaction():
            if self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'failed', performed_at = ?, "
                "last_error = ? WHERE id = ? AND claim_token = ? AND status = 'running'",
                (now, error, action["id"], action["claim_token"]),
            ).rowcount:
                self.store.lifecycle.action_failed(action, now)

    def _record_results(self, results: Iterable[Result]) -> dict[str, int]:
        return self.store.results.record(list(results))

    def left_stage(self, action: dict[str, Any]) -> bool:
        """The lead left the action's stage (a reply, a stop) while the action ran."""
        return (
            self.conn.execute(
                "SELECT exited_at FROM lead_stages WHERE id = ?", (action["lead_stage_id"],)
            ).fetchone()["exited_at"]
            is not None
        )

    def on_failure(self, action: dict[str, Any], now: str) -> None:
        """The stage's `on_failure`: stop the lead, continue with the next action, or move."""
        params = action["params"]
        if isinstance(params, str):
            params = json.loads(params)
        policy = params.get("on_failure") or defaults.ON_FAILURE
        if policy == "continue":
            self.store.lifecycle.advance(action, now)
            return
        error = None
        if policy != defaults.ON_FAILURE:
            error = self.store.lifecycle.move(
                action["enrollment_id"], action["lead_id"], action["lead_stage_id"], policy, now
            )
            if error is None:
                return
            self.conn.execute(
                "UPDATE lead_stage_actions SET last_error = last_error || '; on_failure: ' || ? "
                "WHERE id = ?",
                (error, action["id"]),
            )
        self.store.lifecycle.stop_enrollment(
            action["enrollment_id"], action["lead_id"], EnrollmentStatus.FAILED, now
        )

    # --- reporting the tick -----------------------------------------------------------

    def count_due(self, now: str) -> int:
        """Due rows still pending: what the limits (or the time budget) held back."""
        return self.conn.execute(
            "SELECT count(*) FROM lead_stage_actions WHERE status = 'pending' AND perform_at <= ?",
            (now,),
        ).fetchone()[0]

    def record_tick(self, summary: dict[str, Any]) -> None:
        """Keep a row per tick, for `status` and the operator."""
        columns = [k for k in summary if k in TICK_COLUMNS]
        with self.transaction():
            self.conn.execute(
                f"INSERT INTO ticks ({', '.join(columns)}) VALUES ({marks(columns)})",
                [summary[k] for k in columns],
            )


TICK_COLUMNS = (
    "started_at",
    "now",
    "seconds",
    "claimed",
    "done",
    "retried",
    "failed",
    "held_back",
    "admitted",
    "recovered",
    "pid",
)
