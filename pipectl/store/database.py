"""The one connection: opening, `transaction()`, `rolled_back()`, a busy or full disk, the dialect.

Every part of the store holds this object; none opens a connection of its own. What a
PostgreSQL backend would change is named in `Dialect` and kept here, not spread over the parts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DiskFull, PipectlError
from .migrations import migrate
from .pg_schema import WRITE_LOCK, migrate_postgres
from .postgres import PgConnection, is_postgres_url, redact

if TYPE_CHECKING:
    from . import Store

BUSY_TIMEOUT_MS = 10_000
# Less free space than this beside the database makes an I/O error a full disk: in WAL mode
# SQLite reports a shared-memory file that cannot grow as "disk I/O error", not as full.
LOW_SPACE = 1 << 20


@dataclass(frozen=True)
class Dialect:
    """Where SQL differs between backends; the parts write portable SQL and ask this for the rest.

    SQLite today. PostgreSQL would use `%s` placeholders, `BEGIN` plus `SELECT ... FOR UPDATE
    SKIP LOCKED` in the claim (SQLite's `BEGIN IMMEDIATE` locks the whole file instead), and
    the same `RETURNING` and `ON CONFLICT ... DO UPDATE` upserts (both since SQLite 3.35).
    """

    name: str = "sqlite"
    placeholder: str = "?"
    begin_write: str = "BEGIN IMMEDIATE"  # PostgreSQL: "BEGIN"
    claim_lock: str = ""  # PostgreSQL: " FOR UPDATE SKIP LOCKED", appended to the claim's SELECT
    returning: bool = True  # `INSERT ... RETURNING id`
    upsert: bool = True  # `INSERT ... ON CONFLICT (...) DO UPDATE SET ...`


SQLITE = Dialect()
# One write transaction at a time across every runner (the rule SQLite's file lock keeps), so
# limits read and claims written in a transaction hold for all runners together; the claim's
# SELECT also skips rows another transaction holds.
POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    begin_write=f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})",
    claim_lock=" FOR UPDATE OF a SKIP LOCKED",
)


def busy_timeout_ms() -> int:
    """How long to wait for another process's write: 10 s, or `PIPECTL_BUSY_TIMEOUT_MS`."""
    value = os.environ.get("PIPECTL_BUSY_TIMEOUT_MS", "")
    return int(value) if value.isdigit() else BUSY_TIMEOUT_MS


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


# What a write raises when another process holds the database, or the write fails outright.
WriteError = sqlite3.OperationalError


def is_busy(error: Exception) -> bool:
    """Another process holds the database (SQLITE_BUSY / SQLITE_LOCKED): worth waiting for."""
    code = getattr(error, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Database:
    """One SQLite file in WAL mode, or a PostgreSQL database named by a `postgresql://` URL;
    writes go through `transaction()` (SQLite: BEGIN IMMEDIATE)."""

    dialect = SQLITE
    # Counts write transactions begun (and savepoints rolled back): what a part read inside
    # one transaction holds while the count stays the same and the part wrote nothing since.
    generation = 0
    # Tests set this to make a write from any thread but the writer's an error (one writer).
    check_writer = os.environ.get("PIPECTL_CHECK_WRITER") == "1"

    def __init__(self, path: str | os.PathLike[str]):
        self.url: str | None = None
        if is_postgres_url(str(path)):
            self._open_postgres(str(path))
            return
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.parent.exists():
            raise PipectlError(f"{self.path}: directory {self.path.parent} does not exist")
        self.writer = threading.get_ident()  # the thread that opened it is the one writer
        self._savepoints = 0
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

    def _open_postgres(self, url: str) -> None:
        self.url = url
        self.name = redact(url)
        self.path = Path.cwd() / "pipectl.db"  # where files beside a database go (the outbox)
        self.dialect = POSTGRES
        self.writer = threading.get_ident()
        self._savepoints = 0
        self.conn = PgConnection(url)  # type: ignore[assignment]
        try:
            migrate_postgres(self.conn)
        except Exception as e:
            self.conn.close()
            raise PipectlError(f"{self.name}: cannot open the database: {e}") from None

    def ids_given(self, table: str) -> None:
        """Rows were inserted with ids of our choosing: PostgreSQL's identity must move past
        them (SQLite takes the largest id plus one by itself)."""
        if self.postgres:
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )

    @property
    def postgres(self) -> bool:
        return self.url is not None

    @cached_property
    def instance(self) -> str:
        """This database's random id (set when it was created)."""
        return self.conn.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE so waiting for the lock honours busy_timeout.
        Inside another transaction it is a savepoint, so `rolled_back()` can wrap anything."""
        if self.check_writer:
            assert threading.get_ident() == self.writer, "only the tick thread writes"
        if self.conn.in_transaction:
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException:
                self.generation += 1
                if self.conn.in_transaction:  # SQLite rolls back by itself on a full disk
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            return
        try:
            # Inside the try: a wait for PostgreSQL's write lock that is interrupted must not
            # leave the transaction open.
            self.conn.execute(self.dialect.begin_write)
            self.generation += 1
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
        self.conn.execute(self.dialect.begin_write)
        self.generation += 1
        try:
            yield self.conn
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")


class Part:
    """A part of the store: holds the one Database, and the facade to reach other parts'
    public verbs (never their private helpers)."""

    def __init__(self, database: Database, store: Store):
        self.database = database
        self.store = store

    @property
    def conn(self) -> sqlite3.Connection:
        return self.database.conn

    @property
    def instance(self) -> str:
        return self.database.instance

    def transaction(self):  # noqa: ANN201  (the Database's context manager)
        """A write transaction on the one connection (a savepoint when nested)."""
        return self.database.transaction()

    def rolled_back(self):  # noqa: ANN201
        """Everything inside is undone: dry runs."""
        return self.database.rolled_back()
