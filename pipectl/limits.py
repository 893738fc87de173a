"""Pure functions: what each account may still do now, and sharing a batch fairly."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def rate_room(
    rates: Mapping[str, tuple[int, int]], sent: Mapping[str, int], channel: str
) -> int | None:
    """How many more sends `channel` may make now under its own and the `all` rate (None: no
    limit). `sent` counts deliveries in each rate's window plus sends in flight."""
    rooms = [rates[name][0] - sent.get(name, 0) for name in (channel, "all") if name in rates]
    return max(0, min(rooms)) if rooms else None


def share(capacity: int, wants: Mapping[Hashable, int]) -> dict[Hashable, int]:
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


def next_opening(window: Mapping, tz: str, now: datetime) -> datetime | None:
    """None when `now` is inside the send window; else the window's next opening (aware UTC).

    `window` is {"days": [0..6] (Monday = 0), "start": "HH:MM", "end": "HH:MM"}, read in the
    time zone `tz`, so 09:00 stays 09:00 across daylight-saving changes.
    """
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start = time.fromisoformat(window.get("start", "00:00"))
    end_text = window.get("end", "24:00")
    days = set(window.get("days", range(7)))
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opens = datetime.combine(day, start, tzinfo=zone)
        closes = (
            datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
            if end_text in ("24:00", "00:00")
            else datetime.combine(day, time.fromisoformat(end_text), tzinfo=zone)
        )
        if opens <= local < closes:
            return None
        if local < opens:
            return opens.astimezone(ZoneInfo("UTC"))
    return None


MAX_RETRY_AFTER = 86400.0


def retry_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with jitter (half fixed, half random), never sooner than the
    server's Retry-After, which is honoured up to a day (30,000 years overflowed the date)."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    delay = delay / 2 + rand() * delay / 2
    return max(delay, min(retry_after or 0, MAX_RETRY_AFTER))
