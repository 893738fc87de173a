"""Leads and the enrollment queue: import, list, find, stop."""

from __future__ import annotations


class LeadsSQL:
    """Leads and the enrollment queue: import, list, find, stop."""
