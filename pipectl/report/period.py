"""The report's period and buckets: a date means a whole day in the account's time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from ..durations import EARLIEST, LATEST, format_time, parse_time, shown

SLOT_MINUTES = 15  # the counters' granularity (migration m008_report)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class PeriodError(ValueError):
    """A --since or --until that is neither a date nor a time; the message says which."""


@dataclass(frozen=True)
class Bound:
    """A --since or --until as given: a date (whole days, read in each account's time zone)
    or a time (UTC, or with its offset)."""

    text: str
    day: date | None = None
    at: datetime | None = None


def parse_bound(text: str, option: str) -> Bound:
    """`2027-03-01` or `2027-03-01T14:00:00Z` (any ISO-8601 time) in the years 1900-8999,
    as `tick --now` takes (further ones overflowed); PeriodError otherwise."""
    s = text.strip()
    if _DATE.fullmatch(s):
        try:
            bound = Bound(s, day=date.fromisoformat(s))
        except ValueError:
            raise PeriodError(f"{option}: no such date {shown(text)}") from None
        if not EARLIEST.date() <= _day(bound) < LATEST.date():
            raise _out_of_range(text, option)
        return bound
    try:
        at = parse_time(s)
    except ValueError:
        raise PeriodError(
            f"{option}: {shown(text)} is neither a date (2027-03-01) nor a time"
            " (2027-03-01T14:00:00Z)"
        ) from None
    if not EARLIEST <= at < LATEST:
        raise _out_of_range(text, option)
    return Bound(s, at=at)


def _out_of_range(text: str, option: str) -> PeriodError:
    return PeriodError(
        f"{option}: {shown(text)} is out of range; use a date or time from 1900-01-01 to 8999-12-31"
    )


@dataclass(frozen=True)
class Period:
    """One account's period in UTC, widened to whole 15-minute slots; None: no bound."""

    since: datetime | None
    until: datetime | None
    timezone: str

    def slots(self) -> tuple[str | None, str | None]:
        """The bounds as slot text, for the counters' `slot >= since AND slot < until`."""
        return (
            _slot_text(self.since) if self.since else None,
            _slot_text(self.until) if self.until else None,
        )

    def times(self) -> tuple[str | None, str | None]:
        """The bounds in the stored time format, for rows read directly."""
        return (
            format_time(self.since) if self.since else None,
            format_time(self.until) if self.until else None,
        )

    def as_json(self) -> dict[str, str | None]:
        return {
            "since": format_time(self.since) if self.since else None,
            "until": format_time(self.until) if self.until else None,
            "timezone": self.timezone,
        }


def resolve(since: Bound | None, until: Bound | None, timezone: str) -> Period:
    """The period for an account: `--since` a date starts at its midnight there, `--until` a
    date ends at the next midnight (the day is included); times are widened outward to whole
    quarter hours, the counters' granularity."""
    zone = zone_of(timezone)
    start = end = None
    if since is not None:
        start = _floor(since.at) if since.at else _midnight(_day(since), zone)
    if until is not None:
        end = _ceil(until.at) if until.at else _midnight(_day(until) + timedelta(days=1), zone)
    return Period(start, end, timezone)


def _day(bound: Bound) -> date:
    """The day of a bound given as a date (a bound is a time or a day)."""
    assert bound.day is not None
    return bound.day


def slot_of(stored: str) -> str:
    """The 15-minute slot of a stored time, as the counters have it."""
    return _slot_text(_floor(parse_time(stored)))


def bucket_of(slot: str, by: str, timezone: str) -> str:
    """The local day (`2027-03-01`) or week (its Monday) of a UTC slot."""
    day = _local_day(slot, timezone)
    if by == "week":
        day = day - timedelta(days=day.weekday())
    return day.isoformat()


def buckets_between(first: str, last: str, by: str) -> list[str]:
    """Every bucket from `first` to `last` (both bucket labels), so charts show empty days."""
    step = timedelta(days=7 if by == "week" else 1)
    day, end, out = date.fromisoformat(first), date.fromisoformat(last), []
    while day <= end:
        out.append(day.isoformat())
        day += step
    return out


@lru_cache(maxsize=64)
def zone_of(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def _local_day(slot: str, timezone: str) -> date:
    t = datetime.fromisoformat(slot + ":00+00:00")
    return t.astimezone(zone_of(timezone)).date()


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _floor(t: datetime) -> datetime:
    t = t.astimezone(UTC).replace(second=0, microsecond=0)
    return t.replace(minute=t.minute - t.minute % SLOT_MINUTES)


def _ceil(t: datetime) -> datetime:
    floor = _floor(t)
    return floor if floor == t.astimezone(UTC) else floor + timedelta(minutes=SLOT_MINUTES)


def _slot_text(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="minutes")[:16]  # %Y does not pad years < 1000
