"""All SQL lives in this package: one Store whose methods read like the scheduler's vocabulary.

Each submodule holds the SQL of one part of the product; `Store` combines them. A second
backend (PostgreSQL) would be a second package with the same methods.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from ..errors import DiskFull, PipectlError
from .config_sql import ConfigSQL
from .funnel_sql import FunnelSQL
from .health_sql import HealthSQL
from .inbound_sql import InboundSQL
from .leads_sql import LeadsSQL
from .migrations import migrate
from .operator_sql import OperatorSQL
from .replies_sql import RepliesSQL
from .reports_sql import ReportsSQL
from .scheduler_sql import SchedulerSQL
from .stages_sql import StagesSQL

BUSY_TIMEOUT_MS = 10_000


def busy_timeout_ms() -> int:
    """How long to wait for another process's write: 10 s, or `PIPECTL_BUSY_TIMEOUT_MS`."""
    value = os.environ.get("PIPECTL_BUSY_TIMEOUT_MS", "")
    return int(value) if value.isdigit() else BUSY_TIMEOUT_MS


# Less free space than this beside the database makes an I/O error a full disk: in WAL mode
# SQLite reports a shared-memory file that cannot grow as "disk I/O error", not as full.
LOW_SPACE = 1 << 20


def is_disk_full(error: sqlite3.Error, path: str | os.PathLike[str]) -> bool:
    """SQLite's "database or disk is full", or an I/O error where no space is left."""
    code = getattr(error, "sqlite_errorcode", None) or 0
    if code == sqlite3.SQLITE_FULL:
        return True
    if code & 0xFF != sqlite3.SQLITE_IOERR:
        return False
    try:
        disk = os.statvfs(Path(path).resolve().parent)
    except OSError:
        return False
    return disk.f_bavail * disk.f_frsize < LOW_SPACE


def default_db_path() -> Path:
    return Path(os.environ.get("PIPECTL_DB", "pipectl.db"))


class Store(
    ConfigSQL,
    LeadsSQL,
    SchedulerSQL,
    HealthSQL,
    StagesSQL,
    ReportsSQL,
    RepliesSQL,
    OperatorSQL,
    InboundSQL,
    FunnelSQL,
):
    """One SQLite file in WAL mode; writes go through `transaction()` (BEGIN IMMEDIATE)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.parent.exists():
            raise PipectlError(f"{self.path}: directory {self.path.parent} does not exist")
        busy_ms = busy_timeout_ms()
        try:
            self.conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_ms / 1000,
            )
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            migrate(self.conn)
        except sqlite3.DatabaseError as e:
            if is_disk_full(e, self.path):
                raise DiskFull(self.path, str(e)) from None
            raise PipectlError(f"{self.path}: cannot open the database: {e}") from None

    @cached_property
    def instance(self) -> str:
        """This database's random id (set when it was created)."""
        return self.conn.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]

    @cached_property
    def db(self):  # noqa: ANN201  (sqlite_utils is imported only when this is used)
        """The same connection as a sqlite-utils Database, for ad-hoc queries and tests."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE so waiting for the lock honours busy_timeout.
        Inside another transaction it is a savepoint, so `rolled_back()` can wrap anything."""
        if self.conn.in_transaction:
            self._savepoints = getattr(self, "_savepoints", 0) + 1
            name = f"sp{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLite rolls back by itself on a full disk
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            # After some errors (a full disk) SQLite has already rolled back: rolling back
            # again would hide the real error behind "no transaction is active".
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def rolled_back(self) -> Iterator[sqlite3.Connection]:
        """Run anything and then undo it all: `--dry-run` uses the real code paths."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
