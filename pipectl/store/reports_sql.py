"""Read-only reports: status per account, one lead's timeline, actions by status.

Every query reads due, open or recent rows through their partial indexes, so a report costs
in proportion to the work in flight, never to the number of leads stored.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from ..durations import add_seconds, parse_time
from ..errors import PipectlError
from ..statuses import NOT_ENROLLED, ActionStatus, values
from ..wording import counted
from .database import Part

SLA_SECONDS = 120  # an action more than this past its perform_at is overdue
STALE_TICK_SECONDS = 300  # no tick for longer than this: cron is not running it
LATENESS_WINDOW = 3600
ACTION_STATUSES = values(ActionStatus)
STATUS_INDEX = {
    ActionStatus.RUNNING: "lsa_running",
    ActionStatus.AWAITING_REPLY: "lsa_awaiting_account",
    ActionStatus.FAILED: "lsa_failed",
}
KIND_NAMES = {"opt_out": "opt-out", "auto_reply": "auto-reply", "soft_bounce": "soft bounce"}
_GAVE_UP = re.compile(r"^gave up after \d+ attempts?: ")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return round(ordered[int(rank) - 1], 1)


def _seconds_between(earlier: str, later: str) -> float:
    return (parse_time(later) - parse_time(earlier)).total_seconds()


class ReportsSQL(Part):
    """Read-only reports: status, lead timelines, action lists."""

    # --- status -------------------------------------------------------------------------

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
        tick["age_seconds"] = int(_seconds_between(row["now"], now))
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
            "inbound": (inbound := self.store.inbound.inbound_status(account_id)),
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
        late = [max(0.0, _seconds_between(r["due_at"], r["claimed_at"])) for r in rows]
        return {
            "window_seconds": LATENESS_WINDOW,
            "performed": len(late),
            "p50_seconds": percentile(late, 50),
            "p95_seconds": percentile(late, 95),
        }

    def _limit_use(self, account: sqlite3.Row, now: str, running: int) -> dict[str, Any]:
        """Each limit and what is using it now, counted as the claim counts it."""
        rates = {k: tuple(v) for k, v in json.loads(account["rates"] or "{}").items()}
        sent = self.store.scheduler.sent_in_windows(account["id"], rates, now)
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

    # --- one lead -----------------------------------------------------------------------

    def lead_timeline(self, ref: str, *, account_key: str | None = None) -> dict[str, Any]:
        """One lead with, per enrollment, its stages, actions and deliveries, and its replies;
        `timeline` lists all of it in time order."""
        lead = self.store.replies.resolve_lead(ref, account_key=account_key)
        account = self.conn.execute(
            "SELECT key FROM accounts WHERE id = ?", (lead["account_id"],)
        ).fetchone()
        result: dict[str, Any] = {
            "id": lead["id"],
            "account": account["key"],
            "email": lead["email"],
            "phone": lead["phone"],
            "first_name": lead["first_name"],
            "last_name": lead["last_name"],
            "timezone": lead["timezone"],
            "status": lead["status"],
            "do_not_contact": bool(lead["do_not_contact"]),
            "sender": self._sender_of(lead["sender_id"]),
            "fields": json.loads(lead["fields"] or "{}"),
            "created_at": lead["created_at"],
            "updated_at": lead["updated_at"],
            "enrollments": [],
            "replies": [],
        }
        deliveries: dict[int, list[dict[str, Any]]] = {}
        for d in self.conn.execute(
            "SELECT lead_stage_action_id, channel, recipient, message_id, provider_id, sent_at"
            " FROM deliveries WHERE lead_stage_action_id IN"
            " (SELECT a.id FROM lead_stages ls JOIN lead_stage_actions a"
            " ON a.lead_stage_id = ls.id WHERE ls.lead_id = ?) ORDER BY sent_at, id",
            (lead["id"],),
        ):
            deliveries.setdefault(d["lead_stage_action_id"], []).append(
                {k: v for k, v in dict(d).items() if k != "lead_stage_action_id"}
            )
        actions: dict[int, list[dict[str, Any]]] = {}
        for a in self.conn.execute(
            "SELECT id, lead_stage_id, sequence_number, type, status, perform_at, due_at,"
            " claimed_at, performed_at, attempts, last_error FROM lead_stage_actions"
            " WHERE lead_stage_id IN (SELECT id FROM lead_stages WHERE lead_id = ?)"
            " ORDER BY lead_stage_id, sequence_number",
            (lead["id"],),
        ):
            action = {k: v for k, v in dict(a).items() if k != "lead_stage_id"}
            action["deliveries"] = deliveries.get(a["id"], [])
            actions.setdefault(a["lead_stage_id"], []).append(action)
        stages: dict[int, list[dict[str, Any]]] = {}
        for s in self.conn.execute(
            "SELECT ls.id, ls.enrollment_id, s.key, s.name, s.outcome, ls.entered_at,"
            " ls.exited_at FROM lead_stages ls JOIN pipeline_stages s"
            " ON s.id = ls.pipeline_stage_id WHERE ls.lead_id = ? ORDER BY ls.id",
            (lead["id"],),
        ):
            stages.setdefault(s["enrollment_id"], []).append(
                {
                    "stage": s["key"],
                    "name": s["name"],
                    "outcome": s["outcome"],
                    "entered_at": s["entered_at"],
                    "exited_at": s["exited_at"],
                    "actions": actions.get(s["id"], []),
                }
            )
        for e in self.conn.execute(
            "SELECT e.id, p.key AS pipeline, e.status, e.queued_at, e.started_at,"
            " e.finished_at FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
            " WHERE e.lead_id = ? ORDER BY e.id",
            (lead["id"],),
        ):
            result["enrollments"].append(
                {
                    "pipeline": e["pipeline"],
                    "state": e["status"],
                    "queued_at": e["queued_at"],
                    "started_at": e["started_at"],
                    "finished_at": e["finished_at"],
                    "stages": stages.get(e["id"], []),
                }
            )
        result["replies"] = [
            {**dict(r), "opt_out": bool(r["opt_out"])}
            for r in self.conn.execute(
                "SELECT received_at, channel, kind, sender, source, body, opt_out, effect"
                " FROM replies"
                " WHERE lead_id = ? ORDER BY received_at, id",
                (lead["id"],),
            )
        ]
        result["timeline"] = _timeline(result)
        return result

    # --- actions ------------------------------------------------------------------------

    def _sender_of(self, sender_id: int | None) -> str | None:
        """The mailbox a lead's emails come from (its `from` as written), if it has one."""
        if sender_id is None:
            return None
        row = self.conn.execute(
            "SELECT sender, removed_at FROM senders WHERE id = ?", (sender_id,)
        ).fetchone()
        if row is None:
            return None
        return row["sender"] + (" (removed: the next email moves)" if row["removed_at"] else "")

    def list_actions(
        self, *, status: str | None = None, account_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Actions of one status (newest first), with their lead, pipeline and stage."""
        if status is not None and status not in ACTION_STATUSES:
            raise PipectlError(
                f"unknown status '{status}'; use one of {', '.join(ACTION_STATUSES)}"
            )
        rows = self.conn.execute(
            "SELECT a.id, acc.key AS account, a.lead_id, l.email, l.phone, p.key AS pipeline,"
            " s.key AS stage, a.sequence_number, a.type, a.channel, a.status, a.perform_at,"
            " a.performed_at, a.attempts, a.last_error"
            " FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id"
            " JOIN accounts acc ON acc.id = a.account_id"
            " JOIN lead_stages ls ON ls.id = a.lead_stage_id"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " JOIN pipelines p ON p.id = s.pipeline_id"
            " WHERE (? IS NULL OR a.status = ?) AND (? IS NULL OR a.account_id = ?)"
            " ORDER BY a.id DESC LIMIT ?",
            (status, status, account_id, account_id, limit),
        ).fetchall()
        return [dict(r) for r in rows]


def _timeline(lead: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dated event of the lead, oldest first: a readable history."""
    events: list[dict[str, Any]] = []

    def add(at: str | None, pipeline: str | None, event: str) -> None:
        if at:
            events.append({"at": at, "pipeline": pipeline, "event": event})

    for e in lead["enrollments"]:
        p = e["pipeline"]
        add(e["queued_at"], p, "queued for enrollment")
        for s in e["stages"]:
            add(s["entered_at"], p, f"entered stage {s['stage']}")
            for a in s["actions"]:
                what = f"action {a['id']} {a['type']}"
                for d in a["deliveries"]:
                    sent = f"{what}: sent to {d['recipient']}"
                    if d["message_id"]:  # what the lead's mail server and replies refer to
                        sent += f", Message-ID {d['message_id']}"
                    if d["provider_id"]:
                        sent += f", provider id {d['provider_id']}"
                    add(d["sent_at"], p, sent)
                if a["status"] == ActionStatus.FAILED:
                    add(a["performed_at"], p, f"{what}: failed: {a['last_error']}")
                elif a["status"] == ActionStatus.DONE and not a["deliveries"]:
                    add(a["performed_at"], p, f"{what}: done")
            add(s["exited_at"], p, f"left stage {s['stage']}")
        if e["finished_at"]:
            add(e["finished_at"], p, f"finished: {e['state']}")
    for r in lead["replies"]:
        kind = KIND_NAMES.get(r["kind"], r["kind"])
        add(r["received_at"], None, f"{kind} by {r['channel']}: {r['effect']}")
    events.sort(key=lambda ev: ev["at"])  # stable: same-time events keep their order
    return events


def _age(seconds: int) -> str:
    if seconds < 3600:
        return counted(seconds // 60, "minute")
    if seconds < 172800:
        return counted(seconds // 3600, "hour")
    return counted(seconds // 86400, "day")
