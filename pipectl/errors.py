"""The product's errors: each carries what the user needs to fix the input."""

from __future__ import annotations


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
