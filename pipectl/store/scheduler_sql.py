"""The tick's SQL: recover, admit, claim due work, record results, move leads between stages.

Public methods open their own transaction; `_` helpers run inside the caller's. Every
completion is fenced by the claim token, so a late or repeated write cannot overwrite a
newer state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..durations import format_time, parse_time
from ..limits import next_opening, rate_room, share

OPEN_STATUSES = ("waiting", "pending", "awaiting_reply")
FINISHED = ("won", "lost", "idle", "stopped", "failed")
INTERNAL_BATCH = 500


def channel_of(action_type: str) -> str:
    return action_type if action_type in ("email", "sms") else "internal"


def activation(action_type: str, params: dict[str, Any], now: str) -> tuple[str, str]:
    """The status and perform_at an action takes when the one before it is done."""
    if action_type == "wait":
        return "pending", _plus(now, params.get("seconds", 0))
    if action_type == "wait_for_reply":
        return "awaiting_reply", _plus(now, params.get("timeout", 0))
    return "pending", now


def _plus(t: str, seconds: float) -> str:
    return format_time(parse_time(t) + timedelta(seconds=seconds))


@dataclass
class Claim:
    """What one claim transaction did: sends to perform, and internal work done in place."""

    sends: list[dict[str, Any]] = field(default_factory=list)
    internal: int = 0
    deferred: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class Result:
    """The outcome of one send, computed by a worker thread and written by the tick."""

    action: dict[str, Any]  # the claimed row
    outcome: str  # "done" | "retry" | "failed"
    finished_at: str
    error: str | None = None
    retry_at: str | None = None
    recipient: str | None = None
    message_id: str | None = None
    provider_id: str | None = None


class SchedulerSQL:
    conn: sqlite3.Connection

    # --- start of a tick --------------------------------------------------------------

    def recover_running(self) -> int:
        """Rows left `running` by a tick that died are due again (the lock proves it died)."""
        self.__dict__.pop("_stage_cache", None)  # the YAML may have changed since last tick
        self.__dict__.pop("_actions_cache", None)
        with self.transaction():
            return self.conn.execute(
                "UPDATE lead_stage_actions SET status = 'pending', claim_token = NULL "
                "WHERE status = 'running'"
            ).rowcount

    def admit_queued(self, now: str, cap: int = 5000) -> int:
        """Start queued enrollments, oldest first, up to each account's `active_leads`."""
        admitted = 0
        with self.transaction():
            accounts = self.conn.execute("SELECT id, active_leads FROM accounts").fetchall()
            for account in accounts:
                room = cap - admitted
                if account["active_leads"] is not None:
                    active = self.conn.execute(
                        "SELECT count(*) FROM enrollments "
                        "WHERE account_id = ? AND status = 'active'",
                        (account["id"],),
                    ).fetchone()[0]
                    room = min(room, account["active_leads"] - active)
                if room <= 0:
                    continue
                queued = self.conn.execute(
                    "SELECT * FROM enrollments WHERE account_id = ? AND status = 'queued' "
                    "ORDER BY id LIMIT ?",
                    (account["id"], room),
                ).fetchall()
                for enrollment in queued:
                    self._start_enrollment(enrollment, now)
                admitted += len(queued)
        return admitted

    # --- the claim --------------------------------------------------------------------

    def claim_due(
        self, now: str, token: str, capacity: int, in_flight: dict[tuple[int, str], int]
    ) -> Claim:
        """One short write transaction: do due internal work in place, and claim due sends
        fairly across accounts within their concurrency and rates."""
        claim = Claim()
        with self.transaction():
            self._expire_reply_waits(now, claim)
            accounts = self.conn.execute("SELECT * FROM accounts ORDER BY id").fetchall()
            candidates: dict[int, list[dict[str, Any]]] = {}
            for account in accounts:
                self._internal_due(account["id"], now, claim)
                candidates[account["id"]] = self._send_candidates(account, now, in_flight, claim)
            given = share(capacity, {k: len(v) for k, v in candidates.items()})
            chosen = [row for k, rows in candidates.items() for row in rows[: given[k]]]
            if chosen:
                ids = [row["id"] for row in chosen]
                self.conn.execute(
                    "UPDATE lead_stage_actions SET status = 'running', claim_token = ?, "
                    "claimed_at = ?, due_at = perform_at, attempts = attempts + 1 "
                    f"WHERE id IN ({','.join('?' * len(ids))})",
                    (token, now, *ids),
                )
                for row in chosen:
                    row["attempts"] += 1
                    row["claim_token"] = token
                claim.sends = chosen
        return claim

    def _send_candidates(
        self,
        account: sqlite3.Row,
        now: str,
        in_flight: dict[tuple[int, str], int],
        claim: Claim,
    ) -> list[dict[str, Any]]:
        """Due sends of one account that its concurrency and rates allow now, oldest first."""
        account_id = account["id"]
        busy = sum(n for (a, _), n in in_flight.items() if a == account_id)
        room = account["concurrency"] - busy
        if room <= 0:
            return []
        rates = {k: tuple(v) for k, v in json.loads(account["rates"] or "{}").items()}
        sent = self._sent_in_windows(account_id, rates, now)
        for (a, ch), n in in_flight.items():
            if a == account_id:
                sent[ch] = sent.get(ch, 0) + n
                sent["all"] = sent.get("all", 0) + n
        rows: list[dict[str, Any]] = []
        for channel in ("email", "sms"):
            limit = rate_room(rates, sent, channel)
            limit = room if limit is None else min(room, limit)
            if limit > 0:
                rows += self._due_sends(account, channel, now, limit, claim)
        rows.sort(key=lambda r: (r["perform_at"], r["id"]))
        all_room = rate_room({"all": rates["all"]}, sent, "all") if "all" in rates else None
        return rows[: min(room, all_room if all_room is not None else room)]

    def _sent_in_windows(
        self, account_id: int, rates: dict[str, tuple[int, int]], now: str
    ) -> dict[str, int]:
        """Deliveries in each rate's rolling window: the limits count what was really sent."""
        sent = {}
        for name, (_, seconds) in rates.items():
            since = _plus(now, -seconds)
            channels = ("email", "sms") if name == "all" else (name,)
            sent[name] = sum(
                self.conn.execute(
                    "SELECT count(*) FROM deliveries "
                    "WHERE account_id = ? AND channel = ? AND sent_at > ?",
                    (account_id, ch, since),
                ).fetchone()[0]
                for ch in channels
            )
        return sent

    def _due_sends(
        self, account: sqlite3.Row, channel: str, now: str, limit: int, claim: Claim
    ) -> list[dict[str, Any]]:
        """Up to `limit` due sends; do-not-contact leads are stopped and windows deferred."""
        rows = self.conn.execute(
            "SELECT a.id, a.lead_id, a.account_id, a.enrollment_id, a.lead_stage_id, "
            "a.sequence_number, a.type, a.channel, a.params, a.attempts, a.perform_at, "
            "l.email, l.phone, l.first_name, l.last_name, l.fields, l.timezone, "
            "l.do_not_contact "
            "FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id "
            "WHERE a.account_id = ? AND a.channel = ? AND a.status = 'pending' "
            "AND a.perform_at <= ? ORDER BY a.perform_at LIMIT ?",
            (account["id"], channel, now, limit),
        ).fetchall()
        due = []
        for r in rows:
            row = dict(r)
            row["params"] = json.loads(row["params"])
            row["account_key"] = account["key"]
            row["channel_config"] = json.loads(account["channels"] or "{}").get(channel, {})
            if row["do_not_contact"]:
                self._stop_enrollment(row["enrollment_id"], row["lead_id"], "stopped", now)
                claim.skipped += 1
                continue
            window = row["params"].get("send_window")
            if window:
                # A window's own time zone is deliberate; else the lead's, else the account's.
                tz = window.get("timezone") or row["timezone"] or account["timezone"]
                opens = next_opening(window, tz, parse_time(now))
                if opens is not None:
                    self.conn.execute(
                        "UPDATE lead_stage_actions SET perform_at = ? WHERE id = ?",
                        (format_time(opens), row["id"]),
                    )
                    claim.deferred += 1
                    continue
            due.append(row)
        return due

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
            error = self._move(
                row["enrollment_id"], row["lead_id"], row["lead_stage_id"], target, now
            )
            if error:
                self.conn.execute(
                    "UPDATE lead_stage_actions SET status = 'failed', last_error = ? WHERE id = ?",
                    (error, row["id"]),
                )
                claim.failed += 1
                self._stop_enrollment(row["enrollment_id"], row["lead_id"], "failed", now)
        else:
            self._advance(row, now)

    # --- results ----------------------------------------------------------------------

    def record_results(self, results: Iterable[Result]) -> dict[str, int]:
        """Write a batch of send results in one transaction; each fenced by its claim."""
        counts = {"done": 0, "retry": 0, "failed": 0, "stale": 0}
        with self.transaction():
            for r in results:
                a = r.action
                fence = (a["id"], a["claim_token"])
                if r.outcome == "done":
                    cur = self.conn.execute(
                        "UPDATE lead_stage_actions SET status = 'done', performed_at = ?, "
                        "last_error = NULL WHERE id = ? AND claim_token = ? AND status = 'running'",
                        (r.finished_at, *fence),
                    )
                    if cur.rowcount:
                        self.conn.execute(
                            "INSERT INTO deliveries (account_id, lead_id, lead_stage_action_id, "
                            "channel, recipient, message_id, provider_id, sent_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                a["account_id"],
                                a["lead_id"],
                                a["id"],
                                a["channel"],
                                r.recipient or "",
                                r.message_id,
                                r.provider_id,
                                r.finished_at,
                            ),
                        )
                        self._advance(a, r.finished_at)
                elif r.outcome == "retry":
                    cur = self.conn.execute(
                        "UPDATE lead_stage_actions SET status = 'pending', perform_at = ?, "
                        "last_error = ?, claim_token = NULL "
                        "WHERE id = ? AND claim_token = ? AND status = 'running'",
                        (r.retry_at, r.error, *fence),
                    )
                else:
                    cur = self.conn.execute(
                        "UPDATE lead_stage_actions SET status = 'failed', performed_at = ?, "
                        "last_error = ? WHERE id = ? AND claim_token = ? AND status = 'running'",
                        (r.finished_at, r.error, *fence),
                    )
                    if cur.rowcount:
                        self._on_failure(a, r.finished_at)
                counts[r.outcome if cur.rowcount else "stale"] += 1
        return counts

    def _on_failure(self, action: dict[str, Any], now: str) -> None:
        """The stage's `on_failure`: stop the lead, continue with the next action, or move."""
        params = action["params"]
        if isinstance(params, str):
            params = json.loads(params)
        policy = params.get("on_failure") or "stop"
        if policy == "continue":
            self._advance(action, now)
        elif policy == "stop" or self._move(
            action["enrollment_id"], action["lead_id"], action["lead_stage_id"], policy, now
        ):
            self._stop_enrollment(action["enrollment_id"], action["lead_id"], "failed", now)

    # --- moving through stages --------------------------------------------------------

    def _start_enrollment(self, enrollment: sqlite3.Row, now: str) -> None:
        stage_id = (
            enrollment["entry_stage_id"]
            or self.conn.execute(
                "SELECT id FROM pipeline_stages WHERE pipeline_id = ? AND removed_at IS NULL "
                "ORDER BY position LIMIT 1",
                (enrollment["pipeline_id"],),
            ).fetchone()[0]
        )
        self.conn.execute(
            "UPDATE enrollments SET status = 'active', started_at = ?, finished_at = NULL "
            "WHERE id = ?",
            (now, enrollment["id"]),
        )
        self._enter_stage(
            enrollment["id"], enrollment["lead_id"], enrollment["account_id"], stage_id, now
        )

    def _enter_stage(
        self, enrollment_id: int, lead_id: int, account_id: int, stage_id: int, now: str
    ) -> None:
        """Open a lead_stage and snapshot the stage's actions; the first becomes due."""
        stage = self._stage(stage_id)
        lead_stage_id = self.conn.execute(
            "INSERT INTO lead_stages (lead_id, enrollment_id, pipeline_stage_id, entered_at) "
            "VALUES (?, ?, ?, ?)",
            (lead_id, enrollment_id, stage_id, now),
        ).lastrowid
        actions = self._stage_actions(stage_id)
        if stage["outcome"] or not actions:
            self._set_enrollment(enrollment_id, lead_id, stage["outcome"] or "idle", now)
            return
        self._set_enrollment(enrollment_id, lead_id, "active", now)
        rows = []
        for i, action in enumerate(actions):
            status, perform_at = (
                activation(action["type"], json.loads(action["params"]), now)
                if i == 0
                else ("waiting", None)
            )
            rows.append(
                (
                    lead_stage_id,
                    lead_id,
                    account_id,
                    enrollment_id,
                    action["sequence_number"],
                    action["type"],
                    channel_of(action["type"]),
                    action["params"],
                    status,
                    perform_at,
                )
            )
        self.conn.executemany(
            "INSERT INTO lead_stage_actions (lead_stage_id, lead_id, account_id, enrollment_id, "
            "sequence_number, type, channel, params, status, perform_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _advance(self, action: Any, now: str) -> None:
        """The lead's next action in the stage becomes due; after the last, the lead is idle."""
        lead_stage = self.conn.execute(
            "SELECT exited_at FROM lead_stages WHERE id = ?", (action["lead_stage_id"],)
        ).fetchone()
        if lead_stage["exited_at"] is not None:
            return  # the lead moved on (a reply, a stop) while this action ran
        nxt = self.conn.execute(
            "SELECT id, type, params FROM lead_stage_actions "
            "WHERE lead_stage_id = ? AND sequence_number > ? ORDER BY sequence_number LIMIT 1",
            (action["lead_stage_id"], action["sequence_number"]),
        ).fetchone()
        if nxt is None:
            self._set_enrollment(action["enrollment_id"], action["lead_id"], "idle", now)
            return
        status, perform_at = activation(nxt["type"], json.loads(nxt["params"]), now)
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = ?, perform_at = ? "
            "WHERE id = ? AND status = 'waiting'",
            (status, perform_at, nxt["id"]),
        )

    def _move(
        self, enrollment_id: int, lead_id: int, lead_stage_id: int, stage_key: str, now: str
    ) -> str | None:
        """Leave the current stage (its open actions skipped) and enter `stage_key`.
        Returns an error message when that stage no longer exists."""
        target = self.conn.execute(
            "SELECT s.id, e.account_id FROM enrollments e JOIN pipeline_stages s "
            "ON s.pipeline_id = e.pipeline_id AND s.key = ? AND s.removed_at IS NULL "
            "WHERE e.id = ?",
            (stage_key, enrollment_id),
        ).fetchone()
        if target is None:
            return f"cannot move to stage {stage_key!r}: it no longer exists in the pipeline"
        self._close_stage(lead_stage_id, now)
        self._enter_stage(enrollment_id, lead_id, target["account_id"], target["id"], now)
        return None

    def _close_stage(self, lead_stage_id: int, now: str) -> None:
        self.conn.execute(
            "UPDATE lead_stage_actions SET status = 'skipped' "
            f"WHERE lead_stage_id = ? AND status IN {OPEN_STATUSES}",
            (lead_stage_id,),
        )
        self.conn.execute(
            "UPDATE lead_stages SET exited_at = ? WHERE id = ? AND exited_at IS NULL",
            (now, lead_stage_id),
        )

    def _stop_enrollment(self, enrollment_id: int, lead_id: int, status: str, now: str) -> None:
        """End an enrollment (`stopped` or `failed`): its open actions are skipped."""
        for (lead_stage_id,) in self.conn.execute(
            "SELECT id FROM lead_stages WHERE enrollment_id = ? AND exited_at IS NULL",
            (enrollment_id,),
        ).fetchall():
            self._close_stage(lead_stage_id, now)
        self._set_enrollment(enrollment_id, lead_id, status, now)

    def _set_enrollment(self, enrollment_id: int, lead_id: int, status: str, now: str) -> None:
        """An enrollment's state; the lead's status shows its latest enrollment's."""
        self.conn.execute(
            "UPDATE enrollments SET status = ?, finished_at = ? WHERE id = ?",
            (status, now if status in FINISHED else None, enrollment_id),
        )
        self.conn.execute(
            "UPDATE leads SET status = (SELECT status FROM enrollments WHERE lead_id = ? "
            "ORDER BY id DESC LIMIT 1) WHERE id = ?",
            (lead_id, lead_id),
        )

    def _stage(self, stage_id: int) -> sqlite3.Row:
        cache = self.__dict__.setdefault("_stage_cache", {})
        if stage_id not in cache:
            cache[stage_id] = self.conn.execute(
                "SELECT * FROM pipeline_stages WHERE id = ?", (stage_id,)
            ).fetchone()
        return cache[stage_id]

    def _stage_actions(self, stage_id: int) -> list[sqlite3.Row]:
        cache = self.__dict__.setdefault("_actions_cache", {})
        if stage_id not in cache:
            cache[stage_id] = self.conn.execute(
                "SELECT sequence_number, type, params FROM pipeline_stage_actions "
                "WHERE pipeline_stage_id = ? ORDER BY sequence_number",
                (stage_id,),
            ).fetchall()
        return cache[stage_id]

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
            placeholders = ", ".join("?" * len(columns))
            self.conn.execute(
                f"INSERT INTO ticks ({', '.join(columns)}) VALUES ({placeholders})",
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
