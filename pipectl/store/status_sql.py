"""`pipectl status`: per account, what is queued, active, due, overdue, failing; the last tick;
the limits in use; inbound sources, senders and hooks that need attention.

Every query reads due, open or recent rows through their partial indexes, so a status costs
in proportion to the work in flight, never to the number of leads stored.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..durations import add_seconds, seconds_between
from ..statuses import NOT_ENROLLED, ActionStatus
from ..wording import counted
from .database import Part

SLA_SECONDS = 120  # an action more than this past its perform_at is overdue
STALE_TICK_SECONDS = 300  # no tick for longer than this: cron is not running it
LATENESS_WINDOW = 3600
STATUS_INDEX = {
    ActionStatus.RUNNING: "lsa_running",
    ActionStatus.AWAITING_REPLY: "lsa_awaiting_account",
    ActionStatus.FAILED: "lsa_failed",
}


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return round(ordered[int(rank) - 1], 1)


class StatusSQL(Part):
    """`status`: read-only, per account."""

    def status_report(self, now: str, account_id: int | None = None) -> dict[str, Any]:
        """Whether the promises hold: the last tick, and per account its leads, due, overdue
        and failed work, lateness, limit use and failing channels."""
        accounts = self.conn.execute(
            "SELECT * FROM accounts WHERE ? IS NULL OR id = ? ORDER BY key",
            (account_id, account_id),
        ).fetchall()
        last_tick = self._last_tick(now)
        warnings: list[str] = []
        if last_tick is None:
            warnings.append("no tick has ever run: set up cron or the systemd timer")
        elif last_tick["stale"]:
            warnings.append(
                f"no tick for {_age(last_tick['age_seconds'])} (last at {last_tick['now']}):"
                " is cron or the systemd timer running?"
            )
        runners = self.store.runners.listing()
        warnings += [
            f"runner {r['id']} on {r['host']} (pid {r['pid']}) went quiet: no heartbeat since"
            f" {r['heartbeat_at']}; the other runners take over its sends once its lease ends"
            for r in runners
            if r["state"] == "quiet"
        ]
        report = [self._account_status(account, now) for account in accounts]
        for entry in report:
            warnings += [f"{entry['account']}: {w}" for w in entry["warnings"]]
        hooks = self.store.hooks.hooks_status(account_id)
        warnings += [
            f"hook {h['url']} failing since {h['failing_since']}"
            f" ({counted(h['waiting'], 'event')} waiting): {h['last_error']}"
            for h in hooks
            if h["last_error"]
        ]
        return {
            "now": now,
            "last_tick": last_tick,
            "runners": runners,
            "warnings": warnings,
            "accounts": report,
            "hooks": hooks,
        }

    def _last_tick(self, now: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM ticks ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        tick = {k: v for k, v in dict(row).items() if k not in ("id", "pid")}
        tick["age_seconds"] = int(seconds_between(row["now"], now))
        tick["stale"] = tick["age_seconds"] > STALE_TICK_SECONDS
        return tick

    def _account_status(self, account: sqlite3.Row, now: str) -> dict[str, Any]:
        account_id = account["id"]
        leads = {
            (state or NOT_ENROLLED): n
            for state, n in self.conn.execute(
                "SELECT status, count(*) FROM leads WHERE account_id = ?"
                " GROUP BY status ORDER BY coalesce(status, '')",
                (account_id,),
            )
        }
        pipelines: dict[str, dict[str, int]] = {}
        for key, state, n in self.conn.execute(
            "SELECT p.key, e.status, count(*) FROM enrollments e"
            " JOIN pipelines p ON p.id = e.pipeline_id WHERE e.account_id = ?"
            " GROUP BY p.key, e.status ORDER BY p.key, e.status",
            (account_id,),
        ):
            pipelines.setdefault(key, {})[state] = n
        do_not_contact = self.conn.execute(
            "SELECT count(*) FROM leads INDEXED BY leads_do_not_contact"
            " WHERE account_id = ? AND do_not_contact = 1",
            (account_id,),
        ).fetchone()[0]
        overdue_before = add_seconds(now, -SLA_SECONDS)
        late_in_tick, _ = self._claimed_waiting(account_id, overdue_before)
        _, oldest_in_tick = self._claimed_waiting(account_id, now)
        oldest = [t for t in (self._oldest_due(account_id, now), oldest_in_tick) if t]
        # Emails whose sender is full today wait for the next day: held back, not overdue.
        senders = self.store.senders.sender_status(account, now)
        late_for_sender = (
            self.store.senders.waiting_for_sender(account, now, overdue_before) if senders else 0
        )
        actions: dict[str, Any] = {
            "due_now": self._pending_count(account_id, now),
            "overdue": self._pending_count(account_id, overdue_before)
            + late_in_tick
            - late_for_sender,
            "waiting_for_sender": (
                self.store.senders.waiting_for_sender(account, now, now) if senders else 0
            ),
            "oldest_due": min(oldest, default=None),
            "running": self._count_status(account_id, ActionStatus.RUNNING),
            "awaiting_reply": self._count_status(account_id, ActionStatus.AWAITING_REPLY),
            "failed": self._count_status(account_id, ActionStatus.FAILED),
        }
        lateness = self._lateness(account_id, now)
        limits = self._limit_use(account, now, self._sending_now(account_id))
        failing = self._failing_channels(account_id, now)
        warnings = []
        if actions["overdue"]:
            warnings.append(
                f"{counted(actions['overdue'], 'action')} overdue (due more than"
                f" {SLA_SECONDS // 60} minutes ago; oldest due {actions['oldest_due']})"
            )
        for f in failing:
            warnings.append(
                f"{f['channel']} failing since {f['since']}"
                f" ({counted(f['held_back'], 'send')} held back, one tried each tick): {f['error']}"
            )
        return {
            "account": account["key"],
            "name": account["name"],
            "leads": sum(leads.values()),
            "leads_by_state": leads,
            "do_not_contact": do_not_contact,
            "pipelines": pipelines,
            "actions": actions,
            "lateness": lateness,
            "limits": limits,
            "failing_channels": failing,
            "senders": senders,
            "inbound": (inbound := self.store.sync_sources.inbound_status(account_id)),
            "warnings": warnings + [w for s in inbound if (w := s["warning"])],
        }

    def _pending_count(self, account_id: int, before: str) -> int:
        """Pending rows with perform_at <= `before`: reads the due range of `lsa_due` only."""
        return self.conn.execute(
            "SELECT count(*) FROM lead_stage_actions INDEXED BY lsa_due"
            " WHERE account_id = ? AND channel IN ('email', 'sms', 'internal')"
            " AND status = 'pending' AND perform_at <= ?",
            (account_id, before),
        ).fetchone()[0]

    def _claimed_waiting(self, account_id: int, before: str) -> tuple[int, str | None]:
        """Sends a tick has claimed but not started yet (they wait in it for a worker), due at
        or before `before`: how many, and the oldest's due time. They are late all the same."""
        row = self.conn.execute(
            "SELECT count(*), min(due_at) FROM lead_stage_actions INDEXED BY lsa_running"
            " WHERE account_id = ? AND status = 'running' AND claimed_at IS NULL"
            " AND due_at <= ?",
            (account_id, before),
        ).fetchone()
        return row[0], row[1]

    def _oldest_due(self, account_id: int, now: str) -> str | None:
        return self.conn.execute(
            "SELECT min(perform_at) FROM lead_stage_actions INDEXED BY lsa_due"
            " WHERE account_id = ? AND channel IN ('email', 'sms', 'internal')"
            " AND status = 'pending' AND perform_at <= ?",
            (account_id, now),
        ).fetchone()[0]

    def _count_status(self, account_id: int, status: ActionStatus) -> int:
        """Rows of one status, read through that status's partial index only."""
        index = STATUS_INDEX[status]
        return self.conn.execute(
            f"SELECT count(*) FROM lead_stage_actions INDEXED BY {index}"
            f" WHERE account_id = ? AND status = '{status}'",  # a literal: the index's WHERE
            (account_id,),
        ).fetchone()[0]

    def _sending_now(self, account_id: int) -> int:
        """Claimed sends a tick has started (`claimed_at` set): what `concurrency` counts.
        The rest of the `running` rows wait in the tick, claimed ahead of the workers."""
        return self.conn.execute(
            "SELECT count(*) FROM lead_stage_actions INDEXED BY lsa_running"
            " WHERE account_id = ? AND status = 'running' AND claimed_at IS NOT NULL",
            (account_id,),
        ).fetchone()[0]

    def _lateness(self, account_id: int, now: str) -> dict[str, Any]:
        """Seconds from due to claimed, of the actions performed in the last hour."""
        rows = self.conn.execute(
            "SELECT due_at, claimed_at FROM lead_stage_actions INDEXED BY lsa_performed_at"
            " WHERE performed_at > ? AND performed_at <= ? AND account_id = ?"
            " AND due_at IS NOT NULL AND claimed_at IS NOT NULL",
            (add_seconds(now, -LATENESS_WINDOW), now, account_id),
        ).fetchall()
        late = [max(0.0, seconds_between(r["due_at"], r["claimed_at"])) for r in rows]
        return {
            "window_seconds": LATENESS_WINDOW,
            "performed": len(late),
            "p50_seconds": percentile(late, 50),
            "p95_seconds": percentile(late, 95),
        }

    def _limit_use(self, account: sqlite3.Row, now: str, running: int) -> dict[str, Any]:
        """Each limit and what is using it now, counted as the claim counts it."""
        rates = {k: tuple(v) for k, v in json.loads(account["rates"] or "{}").items()}
        sent = self.store.claim.sent_in_windows(account["id"], rates, now)
        active = self.conn.execute(
            "SELECT count(*) FROM enrollments WHERE account_id = ? AND status = 'active'",
            (account["id"],),
        ).fetchone()[0]
        queued = self.conn.execute(
            "SELECT count(*) FROM enrollments WHERE account_id = ? AND status = 'queued'",
            (account["id"],),
        ).fetchone()[0]
        return {
            "concurrency": {"limit": account["concurrency"], "used": running},
            "active_leads": {"limit": account["active_leads"], "used": active, "queued": queued},
            "rates": {
                name: {"limit": count, "window_seconds": seconds, "used": sent.get(name, 0)}
                for name, (count, seconds) in sorted(rates.items())
            },
        }

    def _failing_channels(self, account_id: int, now: str) -> list[dict[str, Any]]:
        """Channels failing for reasons that are not the leads' (from the first failure):
        the error, since when, the sends held back, the last probe and last delivery."""
        failing = []
        for row in self.conn.execute(
            "SELECT * FROM channel_health WHERE account_id = ? ORDER BY channel", (account_id,)
        ).fetchall():
            channel = row["channel"]
            if ":" in channel:  # a sender mailbox, `email:<address>`
                held, last_sent = self.store.senders.held_by_failing(account_id, channel, now)
            else:
                held = self.conn.execute(
                    "SELECT count(*) FROM lead_stage_actions INDEXED BY lsa_due WHERE account_id"
                    " = ? AND channel = ? AND status = 'pending' AND perform_at <= ?",
                    (account_id, channel, now),
                ).fetchone()[0]
                last_sent = self.conn.execute(
                    "SELECT max(sent_at) FROM deliveries WHERE account_id = ? AND channel = ?",
                    (account_id, channel),
                ).fetchone()[0]
            failing.append(
                {
                    "channel": channel,
                    "error": row["last_error"],
                    "failures": row["failures"],
                    "since": row["failing_since"],
                    "last_probe_at": row["last_probe_at"],
                    "next_probe_at": row["next_probe_at"],
                    "held_back": held,
                    "last_delivery": last_sent,
                }
            )
        return failing


def _age(seconds: int) -> str:
    if seconds < 3600:
        return counted(seconds // 60, "minute")
    if seconds < 172800:
        return counted(seconds // 3600, "hour")
    return counted(seconds // 86400, "day")
