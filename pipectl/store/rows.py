"""What the store hands the scheduler and takes back: typed rows, not dictionaries to guess at.

The scheduler imports these; the store never imports the scheduler's own objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Claim:
    """What one turn's transaction did: sends claimed, sends started (and dropped: skipped
    as they were about to start, or released), and internal work done in place."""

    sends: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    internal: int = 0
    deferred: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class Result:
    """The outcome of one send, computed by a worker thread and written by the tick."""

    action: dict[str, Any]  # the claimed row
    outcome: str  # "done" | "retry" | "failed" | "held" (its channel failed: not an attempt)
    finished_at: str
    error: str | None = None
    retry_at: str | None = None  # "retry": when; "held": the channel's next probe, if delayed
    reached: bool = False  # the send reached the server: its channel works
    recipient: str | None = None
    message_id: str | None = None
    provider_id: str | None = None
