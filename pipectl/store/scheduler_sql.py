"""The tick: recover, admit, claim, record results, replies."""

from __future__ import annotations


class SchedulerSQL:
    """The tick: recover, admit, claim, record results, replies."""
