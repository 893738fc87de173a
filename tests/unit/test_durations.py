"""Durations, rates and the one stored time format, with exact values (the fuzz tests only
check that every input parses or is refused)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipectl.durations import (
    MAX_DURATION,
    Rate,
    add_seconds,
    format_time,
    parse_duration,
    parse_rate,
    parse_time,
    parse_user_time,
)
from pipectl.errors import DurationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("3d", 259200), ("1w", 604800),
     ("1d12h", 129600), (" 2H ", 7200), ("1h30m15s", 5415), ("0s", 0)],
)  # fmt: skip
def test_a_duration_is_its_parts_added_up(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [(5, "needs a unit"), ("1h1h", "invalid duration"), ("", "invalid duration"),
     ("1x", "invalid duration"), (True, "must be text"), ("36501d", "too long")],
)  # fmt: skip
def test_a_bad_duration_says_what_is_accepted(text, says):
    with pytest.raises(DurationError, match=says):
        parse_duration(text)


def test_the_longest_duration_is_a_hundred_years():
    assert parse_duration("36500d") == MAX_DURATION


def test_a_rate_is_a_count_per_period_and_prints_as_written():
    assert parse_rate("200/hour") == Rate(200, 3600)
    assert parse_rate(" 30 / minutes ") == Rate(30, 60)
    assert str(Rate(5, 86400)) == "5/day"
    for bad in ("0/hour", "200/week", "200", 200):
        with pytest.raises(DurationError, match="invalid rate"):
            parse_rate(bad)


def test_stored_times_are_utc_and_always_one_width():
    assert format_time(datetime(27, 3, 1, 14, tzinfo=UTC)) == "0027-03-01T14:00:00Z"
    assert parse_time("2027-03-01 09:00-05:00") == datetime(2027, 3, 1, 14, tzinfo=UTC)
    assert parse_time("2027-03-01T14:00:00z") == datetime(2027, 3, 1, 14, tzinfo=UTC)
    assert add_seconds("2027-03-01T23:59:30Z", 45) == "2027-03-02T00:00:15Z"


def test_a_users_time_must_lie_between_1900_and_8999():
    assert parse_user_time("1900-01-01T00:00:00Z").year == 1900
    with pytest.raises(DurationError, match="out of range"):
        parse_user_time("9000-01-01T00:00:00Z")
    with pytest.raises(DurationError, match="ISO-8601"):
        parse_user_time("tomorrow")
