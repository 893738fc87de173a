"""Send windows: whether a send may go now, and when its window next opens. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..durations import format_time, parse_time


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


def window_opens(
    window: Mapping[str, Any] | None, tz_names: tuple[str | None, ...], now: str
) -> str | None:
    """When a send outside its send window may go (None: inside, or no window). The first
    time zone given wins: a window's own is deliberate, else the lead's, else the account's."""
    if not window:
        return None
    tz = next(name for name in tz_names if name)
    opens = next_opening(window, tz, parse_time(now))
    return format_time(opens) if opens else None
