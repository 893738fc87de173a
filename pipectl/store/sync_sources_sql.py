"""Sync sources: each account's inboxes and text providers, where each one's sync left off
(cursors, per folder), whether it works, and one reader at a time against PostgreSQL.

The messages themselves are `inbound_sql.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .database import Part
from .pg_schema import SYNC_LOCK

if TYPE_CHECKING:
    from ..inbound import Cursor


class SyncSourcesSQL(Part):
    """Sync sources, their cursors and their last outcome."""

    def sync_source(self, account_id: int, kind: str, name: str) -> int:
        """The id of this account's source (created on first use)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO sync_sources (account_id, kind, name) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id, kind, name) DO NOTHING",
                (account_id, kind, name),
            )
            return self.conn.execute(
                "SELECT id FROM sync_sources WHERE account_id = ? AND kind = ? AND name = ?",
                (account_id, kind, name),
            ).fetchone()[0]

    @contextmanager
    def reading(self, source_id: int) -> Iterator[bool]:
        """Whether this process may read the source now: against PostgreSQL one runner at a
        time (a session advisory lock, let go at the end or when the connection drops); on
        SQLite always (the tick lock, and cursors that never go back)."""
        if not self.database.postgres:
            yield True
            return
        key = f"{SYNC_LOCK}, CAST(? AS INTEGER)"
        mine = bool(
            self.conn.execute(f"SELECT pg_try_advisory_lock({key})", (source_id,)).fetchone()[0]
        )
        try:
            yield mine
        finally:
            if mine:
                self.conn.execute(f"SELECT pg_advisory_unlock({key})", (source_id,))

    def sync_cursors(self, source_id: int) -> dict[str, Cursor]:
        """Where the source stands, per folder."""
        from ..inbound import Cursor

        return {
            r["folder"]: Cursor(r["folder"], r["uidvalidity"], r["last_uid"], r["position"])
            for r in self.conn.execute(
                "SELECT * FROM sync_cursors WHERE source_id = ?", (source_id,)
            )
        }

    def sync_finished(self, source_id: int, now: str, error: str | None) -> None:
        """The outcome of one sync of a source: a success clears its error; a failure keeps
        when the failing began."""
        with self.transaction():
            if error is None:
                self.conn.execute(
                    "UPDATE sync_sources SET last_attempt_at = ?, last_success_at = ?,"
                    " last_error = NULL, failing_since = NULL WHERE id = ?",
                    (now, now, source_id),
                )
            else:
                self.conn.execute(
                    "UPDATE sync_sources SET last_attempt_at = ?, last_error = ?,"
                    " failing_since = coalesce(failing_since, ?) WHERE id = ?",
                    (now, error, now, source_id),
                )

    def retire_sources(self, account_id: int, kept: list[int]) -> None:
        """Forget the account's sources no longer configured (an inbox removed or renamed),
        so `status` does not warn about them forever."""
        gone = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM sync_sources WHERE account_id = ?", (account_id,)
            )
            if r[0] not in kept
        ]
        if not gone:
            return  # the usual case: no write
        with self.transaction():
            for source_id in gone:
                self.conn.execute("DELETE FROM sync_cursors WHERE source_id = ?", (source_id,))
                self.conn.execute("DELETE FROM sync_sources WHERE id = ?", (source_id,))

    def inbound_status(self, account_id: int) -> list[dict[str, Any]]:
        """The account's sources, their last successful sync, and a warning while the last
        sync of one failed (for `status`)."""
        sources = []
        for r in self.conn.execute(
            "SELECT kind, name, last_attempt_at, last_success_at, last_error, failing_since"
            " FROM sync_sources WHERE account_id = ? ORDER BY kind, name",
            (account_id,),
        ):
            source = dict(r)
            source["warning"] = None
            if r["last_error"]:
                last = r["last_success_at"] or "never"
                error = r["last_error"].split(f"{r['name']}: ", 1)[-1]  # named already
                source["warning"] = (
                    f"{r['kind']} source {r['name']} failing since {r['failing_since']}"
                    f" (last successful sync: {last}): {error}"
                )
            sources.append(source)
        return sources

    def save_cursor(self, source_id: int, cursor: Cursor) -> None:
        """Where the source stands now, inside the caller's transaction."""
        self.conn.execute(
            "INSERT INTO sync_cursors (source_id, folder, uidvalidity, last_uid, position)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source_id, folder) DO UPDATE SET"
            " uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,"
            " position = excluded.position"
            # Never backwards: two syncs of one source at once (cron's tick and a `sync`).
            " WHERE sync_cursors.uidvalidity IS NOT excluded.uidvalidity"
            " OR coalesce(excluded.last_uid, 0) >= coalesce(sync_cursors.last_uid, 0)"
            " AND coalesce(excluded.position, '') >= coalesce(sync_cursors.position, '')",
            (source_id, cursor.folder, cursor.uidvalidity, cursor.last_uid, cursor.position),
        )
