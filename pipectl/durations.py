"""Durations ("1d12h"), rates ("200/hour") and the one text format for times."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import DurationError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_PART = re.compile(r"(\d+)([smhdw])")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SHOWN = 60  # characters of a value a message quotes: a value of any length gives a short message


def shown(value: object) -> str:
    """`repr(value)` of a scalar, cut short: a message never quotes an unbounded value."""
    if isinstance(value, list | dict | tuple | set):
        return f"a {type(value).__name__}"  # never formatted: it may be an anchor bomb
    if isinstance(value, str) and len(value) > SHOWN:
        return repr(value[:SHOWN]) + "..."
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


# A wait, timeout or backoff must land on a date the tick can store (longer ones overflowed).
MAX_DURATION = 36500 * 86400


def parse_duration(text: object) -> int:
    """Seconds in a duration like `30s`, `15m`, `2h`, `3d`, `1w` or `1d12h`."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise DurationError(
            f"duration must be text like 30s, 15m, 2h, 3d, 1w or 1d12h, not {shown(text)}"
        )
    if isinstance(text, int):
        raise DurationError(f"duration {text} needs a unit: s, m, h, d or w (e.g. {text}s)")
    s = text.strip().lower()
    pos, total, seen = 0, 0, set()
    for m in _PART.finditer(s):
        if m.start() != pos or m.group(2) in seen:
            break
        seen.add(m.group(2))
        total += int(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise DurationError(
            f"invalid duration {shown(text)}: use a number and a unit (s, m, h, d, w),"
            " e.g. 30s, 2h, 1d12h"
        )
    if total > MAX_DURATION:
        raise DurationError(f"duration {shown(text)} is too long: at most {MAX_DURATION // 86400}d")
    return total


@dataclass(frozen=True)
class Rate:
    """At most `count` in any rolling window of `seconds`."""

    count: int
    seconds: int

    def __str__(self) -> str:
        period = next(k for k, v in PERIODS.items() if v == self.seconds)
        return f"{self.count}/{period}"


def parse_rate(text: object) -> Rate:
    """A rate like `200/hour`: N per second, minute, hour or day."""
    m = (
        re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*", str(text))
        if isinstance(text, str)
        else None
    )
    if not m or int(m.group(1)) <= 0:
        raise DurationError(
            f"invalid rate {shown(text)}: use N/second, N/minute, N/hour or N/day with N > 0,"
            " e.g. 200/hour"
        )
    return Rate(int(m.group(1)), PERIODS[m.group(2)])


def format_time(t: datetime) -> str:
    """UTC as `2027-03-01T14:00:00Z`, always that width, so times sort as text."""
    return t.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"  # %Y wrote 27


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (`2027-03-01T14:00:00Z`, `2027-03-01 09:00`, with offset); naive is UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise DurationError(
            f"invalid time {shown(text)}: use ISO-8601 like 2027-03-01T14:00:00Z"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    try:
        return t.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise DurationError(f"invalid time {shown(text)}: out of range in UTC") from None


# A time a user gives (`--now`, `--at`, a replies file's dates) lies in these years, so that
# waits, timeouts and send windows of up to 100 years either way stay dates the tick can
# store and compute (`--now 9999-12-31T23:59:59Z` overflowed in the send window code).
EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def parse_user_time(text: str) -> datetime:
    """`parse_time` for a time a user gives: also refuses one out of the years 1900-8999."""
    t = parse_time(text)
    if not EARLIEST <= t < LATEST:
        raise DurationError(
            f"invalid time {shown(text)}: out of range; use a time from 1900-01-01 to 8999-12-31"
        )
    return t


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def add_seconds(t: str, seconds: float) -> str:
    """The stored time `t` plus `seconds`, in the stored format."""
    return format_time(parse_time(t) + timedelta(seconds=seconds))


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from one stored time to another."""
    return (parse_time(later) - parse_time(earlier)).total_seconds()
