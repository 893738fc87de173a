"""Read-only reports: status, timelines, actions list."""

from __future__ import annotations


class ReportsSQL:
    """Read-only reports: status, timelines, actions list."""
