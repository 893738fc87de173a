"""Channel health: which account's channel is failing for reasons that are not the lead's.

A row in `channel_health` exists while a channel fails that way (the server down, the login
or the sender refused, a ${VAR} missing, a wrong URL). The claim then holds the channel's
sends, still `pending` and due, and takes one of them as a probe, at most once a tick and
backing off as the failures in a row grow (`next_probe_at`); any send that reaches the server
(delivered, or refused for its recipient) ends the row. The tick thread writes it, inside the
transaction that records the results.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..durations import add_seconds, seconds_between
from ..scheduler.retry import probe_delay
from .database import Part
from .rows import ClaimedSend, Result

Key = tuple[int, str]  # (account id, channel), the channel `email:<address>` for a sender


class HealthSQL(Part):
    """Record channel failures and recoveries; say which channels fail and may be probed."""

    def failing_channels(self) -> list[dict[str, Any]]:
        """Every failing channel with its account's key: for the tick's summary."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT a.key AS account, h.channel, h.failing_since AS since, h.last_error"
                " AS error, h.failures FROM channel_health h JOIN accounts a"
                " ON a.id = h.account_id ORDER BY a.key, h.channel"
            )
        ]

    _read: tuple[int, dict[Key, sqlite3.Row]] | None = None

    def channel_health(self) -> dict[Key, sqlite3.Row]:
        """The failing channels (usually none: one read of an empty table). Read once per
        write transaction: only this part writes the table, and only in the tick's (or a
        command's) write transactions, which exclude each other."""
        generation = self.database.generation
        if self._read is not None and self._read[0] == generation and self.conn.in_transaction:
            return dict(self._read[1])
        failing = {
            (r["account_id"], r["channel"]): r
            for r in self.conn.execute("SELECT * FROM channel_health")
        }
        if self.conn.in_transaction:
            self._read = (generation, failing)
        return dict(failing)

    def _wrote(self) -> None:
        self._read = None

    def record_health(self, results: Iterable[Result]) -> None:
        """A channel error starts (or goes on with) a failure of its channel; a send that
        reached the server ends it. In the order the results came, the last one wins."""
        held: dict[Key, list[Result]] = {}
        reached: set[Key] = set()
        for r in results:
            key = r.action.health_key
            if r.channel_failed:
                held.setdefault(key, []).append(r)
                reached.discard(key)
            elif r.reached:
                held.pop(key, None)
                reached.add(key)
        if not held and not reached:
            return
        # A sender mailbox that works also ends a failure of its account's whole channel
        # (one recorded before the account had senders).
        reached |= {(a, ch.split(":", 1)[0]) for a, ch in reached if ":" in ch}
        failing = self.channel_health()
        if held or reached & failing.keys():
            self._wrote()
        for key in reached & failing.keys():
            self.conn.execute(
                "DELETE FROM channel_health WHERE account_id = ? AND channel = ?", key
            )
        for key, failures in held.items():
            last = failures[-1]
            since = failing[key]["failing_since"] if key in failing else failures[0].finished_at
            down_for = seconds_between(since, last.finished_at)
            next_probe_at = add_seconds(last.finished_at, probe_delay(down_for, last.retry_after))
            self.conn.execute(
                "INSERT INTO channel_health (account_id, channel, failing_since, last_error,"
                " failures, last_probe_at, next_probe_at, probe_action_id, probe_token)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (account_id, channel) DO UPDATE SET"
                " last_error = excluded.last_error,"
                " failures = channel_health.failures + excluded.failures,"
                " last_probe_at = excluded.last_probe_at,"
                " next_probe_at = excluded.next_probe_at,"
                " probe_action_id = excluded.probe_action_id,"
                " probe_token = excluded.probe_token",
                (
                    *key,
                    failures[0].finished_at,
                    last.error or "failed",
                    len(failures),
                    last.finished_at,
                    next_probe_at,
                    last.action.id,
                    last.action.claim_token,
                ),
            )

    def may_probe(self, health: sqlite3.Row, token: str, now: str) -> bool:
        """One probe per tick (the tick that saw the failure has had its try), and none
        before its backoff (`probe_delay`) or the server's Retry-After."""
        if health["probe_token"] == token:
            return False
        return health["next_probe_at"] is None or health["next_probe_at"] <= now

    def probe_cursor(self, health: sqlite3.Row) -> tuple[str, int] | None:
        """Where the last probe was among the due sends: the next probe is the one after it,
        so a send that fails alone cannot hold its channel for good."""
        if health["probe_action_id"] is None:
            return None
        row = self.conn.execute(
            "SELECT perform_at FROM lead_stage_actions WHERE id = ?", (health["probe_action_id"],)
        ).fetchone()
        return (row["perform_at"], health["probe_action_id"]) if row and row["perform_at"] else None

    def mark_probes(self, sends: Iterable[ClaimedSend], token: str) -> None:
        """The claimed probes: their channels have had this tick's try."""
        for send in sends:
            if send.probe:
                self._wrote()
                self.conn.execute(
                    "UPDATE channel_health SET probe_token = ?, probe_action_id = ?"
                    " WHERE account_id = ? AND channel = ?",
                    (token, send.id, *send.health_key),
                )
