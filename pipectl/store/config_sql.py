"""Pipelines from the YAML: apply, plan, lookups."""

from __future__ import annotations


class ConfigSQL:
    """Pipelines from the YAML: apply, plan, lookups."""
