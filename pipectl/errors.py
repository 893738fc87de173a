"""The product's errors: each carries what the user needs to fix the input."""

from __future__ import annotations

import errno
import os


class PipectlError(Exception):
    """An error shown to the user as a message with exit code 1, never a traceback."""

    exit_code = 1


class ConfigError(PipectlError):
    """One or more problems in the YAML, each as `file:line: message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class CsvError(PipectlError):
    """A CSV that cannot be imported; `problems` names rows and values."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or []
        super().__init__(message)


class NotFound(PipectlError):
    """An account, pipeline, stage, lead or action that does not exist."""


class LockHeld(PipectlError):
    """Another tick holds the lock."""

    exit_code = 75


class DurationError(ValueError):
    """A duration or rate that does not parse; the message says what is accepted."""


# A write refused for want of space: a full disk, a quota, a file-size limit (RLIMIT_FSIZE).
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(PipectlError):
    """A file could not be written for want of space: said plainly, naming the file."""

    def __init__(self, path: str | os.PathLike[str] | None, error: str = ""):
        where = f"cannot write {path}" if path else "cannot write"
        detail = f" ({error})" if error else ""
        super().__init__(f"disk full: {where}{detail}; free some space and run it again")


def is_no_space(error: BaseException) -> bool:
    """An OSError that means the disk (or the quota, or the file-size limit) is full."""
    return isinstance(error, OSError) and error.errno in NO_SPACE
