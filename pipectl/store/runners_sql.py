"""Runners: every process that ticks records itself, and heartbeats while it works.

On SQLite one tick runs at a time (the file lock), so whatever a tick left `running` when
it died is recovered by the next. Against PostgreSQL many runners tick at once: a runner's
claims carry its id (the first `RUNNER_ID_LENGTH` characters of the claim token), and the
others recover them only once its heartbeat is older than the lease, longer than the
slowest send may take. Heartbeats use the real clock, never `--now`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import defaults
from ..durations import add_seconds, format_time, utcnow
from .database import Part

RUNNER_ID_LENGTH = 12
# The server's clock in the stored format (PostgreSQL only): the time now, not the time its
# transaction began (`now()`), which may be seconds earlier after a wait for the write lock.
SERVER_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
# A runner gone this long with no heartbeat, and not stopped, went quiet: its sends are
# recovered by the others. Tests shorten it with PIPECTL_LEASE_SECONDS.
LEASE_SECONDS = 2 * (defaults.SEND_TIMEOUT + defaults.CONNECT_TIMEOUT)
HEARTBEAT_SECONDS = 5.0  # at most: a quarter of the lease when the lease is shorter
KEEP_STOPPED_SECONDS = 3600  # a runner's row once it stopped (cron starts one a minute)
LISTED_IDLE_SECONDS = 600  # `status` lists idle runners seen this recently


def lease_seconds() -> float:
    value = os.environ.get("PIPECTL_LEASE_SECONDS", "")
    try:
        return max(1.0, float(value)) if value else LEASE_SECONDS
    except ValueError:
        return LEASE_SECONDS


def heartbeat_seconds() -> float:
    return min(HEARTBEAT_SECONDS, lease_seconds() / 4)


def new_runner_id() -> str:
    return uuid.uuid4().hex[:RUNNER_ID_LENGTH]


def claim_token(runner_id: str) -> str:
    """A tick's claim token: the runner's id, then the tick's own."""
    return runner_id + uuid.uuid4().hex[: 32 - RUNNER_ID_LENGTH]


def machine() -> str:
    """This kernel and process-id namespace: a pid means the same process only on the same
    machine (two containers can share a host name, not a pid namespace)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        space = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""  # unknown: the lease alone decides
    return f"{socket.gethostname()}:{boot}:{space}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class RunnersSQL(Part):
    """Record runners, heartbeat, and say which runners' claims are orphans."""

    _last_beat = 0.0

    def start(self, runner_id: str) -> None:
        """This runner is working (a row per process: `pipectl run` keeps its id across ticks)."""
        now = self.now()
        with self.transaction():
            self.conn.execute(
                "INSERT INTO runners (id, host, machine, pid, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
                (runner_id, socket.gethostname(), machine(), os.getpid(), now, now),
            )
            self.conn.execute(
                "DELETE FROM runners WHERE stopped_at < ?",
                (add_seconds(now, -KEEP_STOPPED_SECONDS),),
            )

    def beat(self, token: str) -> None:
        """Inside the tick's own transactions: a heartbeat when one is due (a runner that
        writes is alive, even one the others had given up on)."""
        now = time.monotonic()
        if now - self._last_beat >= heartbeat_seconds():
            self._last_beat = now
            self.conn.execute(
                "UPDATE runners SET heartbeat_at = ?, stopped_at = NULL WHERE id = ?",
                (self.now(), token[:RUNNER_ID_LENGTH]),
            )

    def now(self) -> str:
        """The time heartbeats and leases are measured in: the database server's clock
        against PostgreSQL (hosts' clocks drift apart), this host's on SQLite."""
        if not self.database.postgres:
            return format_time(utcnow())
        return str(self.conn.execute(f"SELECT {SERVER_NOW}").fetchone()[0])

    @contextmanager
    def keeping_alive(self, runner_id: str) -> Iterator[None]:
        """While the tick works, against PostgreSQL: a heartbeat every few seconds from a
        thread with its own connection, outside the write lock, so a long transaction of
        another process (an import) never makes this runner look dead. Its only write is
        its own heartbeat row."""
        if not self.database.postgres or self.database.url is None:
            yield
            return
        from .postgres import PgConnection

        stop = threading.Event()
        conn = PgConnection(self.database.url)

        def beat() -> None:
            while not stop.wait(heartbeat_seconds()):
                try:
                    conn.execute(
                        # Not `stopped_at`: the tick's own writes say it works again (`beat`),
                        # and its end stops it while this thread may still beat once.
                        f"UPDATE runners SET heartbeat_at = {SERVER_NOW} WHERE id = ?",
                        (runner_id,),
                    )
                except Exception:  # the next beat tries again; the lease covers the gap
                    continue

        thread = threading.Thread(target=beat, name="pipectl-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
            conn.close()

    def stop(self, runner_id: str) -> None:
        """The runner finished its tick with nothing in flight."""
        now = self.now()
        with self.transaction():
            self.conn.execute(
                "UPDATE runners SET heartbeat_at = ?, stopped_at = ? WHERE id = ?",
                (now, now, runner_id),
            )

    def live_others(self, runner_id: str) -> list[str]:
        """Other runners working now, within their lease: their claims are theirs."""
        if not self.database.postgres:
            return []  # the file lock: no other tick runs, whatever its row says
        since = add_seconds(self.now(), -lease_seconds())
        here = machine()
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT id, machine, pid FROM runners WHERE id != ? AND stopped_at IS NULL"
                " AND heartbeat_at >= ?",
                (runner_id, since),
            )
            if not here or r[1] != here or _alive(r[2])  # one here that died needs no lease
        ]

    def listing(self) -> list[dict[str, Any]]:
        """For `status`: runners working now, those that went quiet (no heartbeat within the
        lease while working: dead, hung or cut off; their sends wait for the lease), and
        those idle since their last tick in the last ten minutes."""
        now = self.now()
        quiet_since = add_seconds(now, -lease_seconds())
        rows = self.conn.execute(
            "SELECT id, host, pid, started_at, heartbeat_at, stopped_at FROM runners "
            "WHERE stopped_at IS NULL OR heartbeat_at >= ? ORDER BY started_at, id",
            (add_seconds(now, -LISTED_IDLE_SECONDS),),
        ).fetchall()
        listed = []
        for r in rows:
            row = dict(r)
            if r["stopped_at"]:
                row["state"] = "idle"
            elif r["heartbeat_at"] < quiet_since:
                row["state"] = "quiet"
            else:
                row["state"] = "working"
            listed.append(row)
        return listed

    def mark_recovered(self, live: list[str], runner_id: str) -> None:
        """Runners whose claims were just recovered are not working any more (one that is,
        after all, says so at its next heartbeat)."""
        now = self.now()
        self.conn.execute(
            "UPDATE runners SET stopped_at = ? WHERE stopped_at IS NULL AND id != ?"
            f"{' AND id NOT IN (' + ', '.join('?' for _ in live) + ')' if live else ''}",
            (now, runner_id, *live),
        )
