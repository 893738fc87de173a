"""The tick lock: a kernel flock on `<db>.lock`, taken without waiting.

The kernel releases it when the process dies, so a crashed tick never blocks the next one,
and it cannot expire while its holder lives (the bug that made Mautic send six copies).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from contextlib import AbstractContextManager
from pathlib import Path

from ..durations import format_time, utcnow
from ..errors import DiskFull, LockHeld, PipectlError, is_no_space
from ..store import one_tick_at_a_time


def tick_lock(db: str | os.PathLike[str]) -> AbstractContextManager[object]:
    """The file lock of a SQLite database; none against PostgreSQL, where many runners tick
    at once (claims skip each other's rows, and leases recover a dead runner's)."""
    return TickLock(db) if one_tick_at_a_time(db) else contextlib.nullcontext()


class TickLock:
    def __init__(self, db_path: str | os.PathLike[str]):
        self.path = Path(f"{db_path}.lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockHeld naming the holder; never waits."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            db = self.path.with_name(self.path.name.removesuffix(".lock"))
            raise PipectlError(f"{db}: directory {self.path.parent} does not exist") from None
        except OSError as e:
            raise PipectlError(f"{self.path}: cannot open the lock file: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = f" (pid {holder[0]}, since {holder[1]})" if len(holder) >= 2 else ""
            raise LockHeld(f"another tick is running{who}; {self.path} is locked") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {format_time(utcnow())}\n".encode(), 0)
        except OSError as e:
            os.close(fd)  # and the lock with it
            if is_no_space(e):
                raise DiskFull(self.path, e.strerror or str(e)) from None
            raise PipectlError(f"{self.path}: cannot write the lock file: {e.strerror}") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> TickLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
