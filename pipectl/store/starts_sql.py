"""Claimed sends starting, or going back: the step between the claim and a worker thread.

A claimed send starts (an attempt from here) only if its lead is still in the stage, may
be contacted, and its send window is open; else it is skipped or due again. Claimed sends not
started go back as they were when the tick stops claiming or their channel fails. Every
write is fenced by the claim token; all run inside the turn's transaction
(`scheduler_sql.py`).
"""

from __future__ import annotations

from ..statuses import ActionStatus, EnrollmentStatus
from .claim_sql import send_window_opens
from .database import Part
from .results_sql import PENDING_UNLESS_LEFT
from .rows import Claim, ClaimedSend, Ledger
from .stages_sql import marks


class StartsSQL(Part):
    """Starting claimed sends, skipping those that may not go, putting the rest back."""

    def start(self, sends: list[ClaimedSend], token: str, now: str, claim: Claim) -> None:
        """Start claimed sends: an attempt from here (`claimed_at` is when it began), unless
        the lead was stopped, moved on or marked do-not-contact since the claim (skipped), or
        the send window closed while it waited (due again when the window opens). Adds them
        to `claim.started` or `claim.dropped`."""
        closed = {send.id: opens for send in sends if (opens := send_window_opens(send, now))}
        for action_id, opens in closed.items():  # its send window closed while it waited
            skipped = self._put_back([action_id], token, now, perform_at=opens)
            claim.skipped += skipped
            claim.deferred += 1 - skipped
        claim.dropped += [send for send in sends if send.id in closed]
        sends = self._within_concurrency([send for send in sends if send.id not in closed])
        if not sends:
            return
        ids = [send.id for send in sends]
        attempt = dict(
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
        claim.started += [send.started(attempt[send.id]) for send in sends if send.id in attempt]
        dropped = [send for send in sends if send.id not in attempt]
        if dropped:
            claim.dropped += dropped
            self._skip_unstartable(dropped, token, now, claim)
        claim.started, suppressed = self.store.suppressions.fail_suppressed(
            claim.started, token, now
        )
        claim.dropped += suppressed
        claim.suppressed += len(suppressed)

    def _within_concurrency(self, sends: list[ClaimedSend]) -> list[ClaimedSend]:
        """The sends that may start now: an account's sends on the wire, started by any runner,
        stay within its concurrency. The rest wait, still claimed. (One tick alone has
        already chosen within it; with many runners each knows only its own.)"""
        if not sends or not self.database.postgres:  # SQLite: one tick, which chose within it
            return sends
        on_wire = dict(
            self.conn.execute(
                "SELECT account_id, count(*) FROM lead_stage_actions WHERE status = 'running'"
                " AND claimed_at IS NOT NULL GROUP BY account_id"
            ).fetchall()
        )
        room: dict[int, int] = {}
        starting = []
        for send in sends:
            account = send.account_id
            left = room.get(account, send.concurrency - on_wire.get(account, 0))
            if left > 0:
                starting.append(send)
            room[account] = left - 1
        return starting

    def _skip_unstartable(
        self, sends: list[ClaimedSend], token: str, now: str, claim: Claim
    ) -> None:
        """Claimed sends that may not start (in one statement): skipped. A lead that left the
        stage goes on in its current one; one that opted out of the channel only goes on to
        its next action; one marked do-not-contact since the claim is stopped."""
        ids = [send.id for send in sends]
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
        for send in sends:
            if send.id not in skipped:
                continue  # no longer ours: recovered by another runner, which sends it
            _, exited_at, do_not_contact = skipped[send.id]
            claim.skipped += 1
            if exited_at is not None:
                self.store.lifecycle.resume_enrollment(send.enrollment_id, now)
            elif do_not_contact == 0:  # opted out of this channel only: the next action goes on
                self.skip_opted_out(send, now)
            else:  # marked do-not-contact (by an import) since the claim
                self.store.lifecycle.stop_enrollment(
                    send.enrollment_id, send.lead_id, EnrollmentStatus.STOPPED, now
                )

    def skip_opted_out(self, send: ClaimedSend, now: str) -> None:
        """A send on a channel the lead opted out of is skipped; the stage goes on."""
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'skipped', claim_token = NULL, "
            "last_error = ?, performed_at = ? WHERE id = ?",
            (f"the lead opted out of {send.channel}", now, send.id),
        )
        self.store.lifecycle.advance(send, now)

    def release(self, sends: list[ClaimedSend], token: str, now: str, claim: Claim) -> None:
        """Claimed sends never started are due again, as they were (no attempt was made)."""
        if sends:
            self._put_back([send.id for send in sends], token, now)
        claim.dropped = sends

    def hold_failing(self, ledger: Ledger, token: str, now: str) -> list[ClaimedSend]:
        """Claimed sends not started whose channel has just failed go back, due as they were
        (no attempt was made); a probe still goes. Returns them."""
        health = self.store.health.channel_health()
        if not health:
            return []
        held = [send for send in ledger.waiting if send.health_key in health and not send.probe]
        if held:
            self._put_back([send.id for send in held], token, now)
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
