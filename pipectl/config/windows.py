"""Send windows and retries: when a send may go out, and how a failed one is tried again."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from yaml.nodes import Node, SequenceNode

from .. import defaults
from ..yaml_nodes import NodeReader
from .model import Retry, SendWindow, yaml_keys

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
WINDOW_KEYS = yaml_keys(SendWindow)
RETRY_KEYS = yaml_keys(Retry)


def day(text: str) -> int | None:
    """`mon`, `Monday`, ... as a weekday number (0 = Monday); None for anything else."""
    name = text.strip().lower()[:3]
    return DAY_NAMES.index(name) if name in DAY_NAMES and len(text.strip()) >= 3 else None


class WindowsReader:
    """`send_window:` of an account, pipeline or action, and `retry:` of a send."""

    def __init__(self, nodes: NodeReader):
        self.nodes = nodes

    def send_window(self, node: Node | None, what: str) -> dict[str, Any] | None:
        if node is None:
            return None
        fields = self.nodes.mapping(node, WINDOW_KEYS, f"{what} send_window")
        days = self.days(fields["days"], what) if "days" in fields else list(range(7))
        start, end = (
            self.hours(fields["hours"], what)
            if "hours" in fields
            else (defaults.SEND_WINDOW_START, defaults.SEND_WINDOW_END)
        )
        timezone = None
        if "timezone" in fields:
            timezone = self.nodes.timezone(fields["timezone"], f"{what} send_window timezone")
        return {"days": days, "start": start, "end": end, "timezone": timezone}

    def days(self, node: Node, what: str) -> list[int]:
        """`mon-fri`, `mon,wed,fri` or a YAML list, as weekday numbers (0 = Monday)."""
        if isinstance(node, SequenceNode):
            parts = [self.nodes.text(n, f"{what} send_window days") or "" for n in node.value]
        else:
            parts = (self.nodes.text(node, f"{what} send_window days") or "").split(",")
        days: set[int] = set()
        for part in parts:
            ends = [day(p) for p in part.split("-")]
            first, last = ends[0], ends[-1]
            if not part.strip() or first is None or last is None or None in ends or len(ends) > 2:
                self.nodes.problem(
                    node,
                    f"{what} send_window days {part.strip()!r} is not a day or range of days;"
                    " use e.g. mon-fri, 'mon,wed,fri' or [sat, sun]",
                )
                continue
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        return sorted(days)

    def hours(self, node: Node, what: str) -> tuple[str, str]:
        text = self.nodes.text(node, f"{what} send_window hours") or ""
        m = HOURS.fullmatch(text)
        if m:
            h1, m1, h2, m2 = map(int, m.groups())
            start, end = f"{h1:02d}:{m1:02d}", f"{h2:02d}:{m2:02d}"
            if h1 < 24 and m1 < 60 and (h2 < 24 or end == "24:00") and m2 < 60 and start < end:
                return start, end
        if text:
            self.nodes.problem(
                node,
                f'{what} send_window hours {text!r} must be "HH:MM-HH:MM" with the start before'
                ' the end, e.g. "09:00-17:00"',
            )
        return defaults.SEND_WINDOW_START, defaults.SEND_WINDOW_END

    def retry(self, node: Node | None, what: str) -> dict[str, int]:
        retry: dict[str, int] = asdict(Retry())
        if node is None:
            return retry
        fields = self.nodes.mapping(node, RETRY_KEYS, f"{what} retry")
        if "attempts" in fields:
            attempts = self.nodes.positive_int(fields["attempts"], f"{what} retry attempts")
            retry["attempts"] = attempts or defaults.RETRY_ATTEMPTS
        for name in ("backoff", "max_backoff"):
            if name in fields:
                retry[name] = (
                    self.nodes.duration(fields[name], f"{what} retry {name}") or retry[name]
                )
        if "max_backoff" not in fields:
            retry["max_backoff"] = max(retry["max_backoff"], retry["backoff"])
        elif retry["max_backoff"] < retry["backoff"]:
            self.nodes.problem(
                fields["max_backoff"], f"{what} retry max_backoff is shorter than backoff"
            )
        return retry
