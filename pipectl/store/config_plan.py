"""What `apply` did, or would do: a plan of changes to accounts, pipelines, stages and hooks,
shown by the CLI as a table or JSON. No SQL here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PipectlError

CREATED, CHANGED, UNCHANGED, REMOVED = "created", "changed", "unchanged", "removed"


@dataclass(frozen=True)
class Change:
    """One line of the plan: what happened to an account, pipeline or stage."""

    kind: str  # "account" | "pipeline" | "stage"
    key: str  # "acme", "adwords", "adwords/inquired"
    change: str  # created | changed | unchanged | removed
    detail: str = ""


@dataclass
class Plan:
    """What `apply` did (or, with dry_run, would do)."""

    changes: list[Change] = field(default_factory=list)
    dry_run: bool = False

    def add(self, kind: str, key: str, change: str, detail: str = "") -> None:
        self.changes.append(Change(kind, key, change, detail))

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    @property
    def changed(self) -> bool:
        return any(c.change != UNCHANGED for c in self.changes)

    def as_json(self) -> dict[str, Any]:
        counts = {name: self.count(name) for name in (CREATED, CHANGED, UNCHANGED, REMOVED)}
        return {
            "dry_run": self.dry_run,
            "changes": [asdict(c) for c in self.changes],
            **counts,
        }


class RemovalRefused(PipectlError):
    """Applying would remove stages or pipelines that leads are still in; `plan` is what it
    would have done, for `apply --dry-run` to show before the refusal."""

    def __init__(self, message: str, plan: Plan, refused: list[str]):
        super().__init__(message)
        self.plan = plan
        self.refused = refused


def canonical(value: Any) -> str | None:
    """JSON text that compares equal exactly when the values are equal."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
