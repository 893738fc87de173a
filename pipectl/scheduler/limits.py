"""Pure functions: what each account may still do now under its rates, and sharing a batch
fairly between accounts. No database: the store's claim calls them with plain values."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import lru_cache
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rate_room(
    rates: Mapping[str, tuple[int, int]], sent: Mapping[str, int], channel: str
) -> int | None:
    """How many more sends `channel` may make now under its own and the `all` rate (None: no
    limit). `sent` counts deliveries in each rate's window plus sends in flight."""
    rooms = [rates[name][0] - sent.get(name, 0) for name in (channel, "all") if name in rates]
    return max(0, min(rooms)) if rooms else None


def share(capacity: int, wants: Mapping[K, int]) -> dict[K, int]:
    """Split `capacity` between accounts in turns, one at a time, so a large account gets no
    more than its share while others wait (water-filling). When a turn cannot go round,
    the accounts first in `wants` get one more."""
    given = dict.fromkeys(wants, 0)
    open_keys = [k for k, n in wants.items() if n > 0]
    while capacity > 0 and open_keys:
        # Whole turns at once: as many as capacity allows and no account is yet satisfied.
        turns = min(capacity // len(open_keys), min(wants[k] - given[k] for k in open_keys))
        if turns == 0:  # fewer units left than accounts waiting: one each, in order
            for k in open_keys[:capacity]:
                given[k] += 1
            break
        for k in open_keys:
            given[k] += turns
        capacity -= turns * len(open_keys)
        open_keys = [k for k in open_keys if given[k] < wants[k]]
    return given


@lru_cache(maxsize=4096)
def local_day(now: str, timezone: str) -> str:
    """The date (YYYY-MM-DD) that `now` (UTC text) falls on in `timezone`: a sender's day
    (cached: a tick records thousands of sends within a few seconds)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()


def sender_cap(
    daily_limit: int,
    warmup: tuple[int, int] | None,
    first_sent_on: str | None,
    today: str,
) -> tuple[int, int | None]:
    """A sender's cap today and its warm-up day (None: no warm-up). Day 1 is the day it first
    sent (today, if it never has); each day after allows `step` more, up to `daily_limit`."""
    if warmup is None:
        return daily_limit, None
    from datetime import date

    start, step = warmup
    first = date.fromisoformat(first_sent_on) if first_sent_on else date.fromisoformat(today)
    day = max(1, (date.fromisoformat(today) - first).days + 1)
    return min(daily_limit, start + step * (day - 1)), day


def next_day_opens(now: str, timezone: str) -> str:
    """When the day after `now`'s local day begins in `timezone`, as UTC text: when a full
    sender may send again."""
    from datetime import UTC, date, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    tomorrow = date.fromisoformat(local_day(now, timezone)) + timedelta(days=1)
    opens = datetime.combine(tomorrow, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)
    return opens.strftime("%Y-%m-%dT%H:%M:%SZ")
