"""The tick's pure limits: rate room, fair shares, send windows and retry delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

# The one import of the module under test: when it moves, change this line only.
from pipectl.scheduler.limits import local_day, next_day_opens, rate_room, sender_cap, share
from pipectl.scheduler.retry import MAX_RETRY_AFTER, retry_delay
from pipectl.scheduler.windows import next_opening

NEW_YORK = "America/New_York"
WEEKDAYS_9_TO_5 = {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# rate_room


def test_rate_room_is_none_without_a_rate():
    assert rate_room({}, {"email": 5}, "email") is None


def test_rate_room_is_what_the_channel_rate_leaves():
    assert rate_room({"email": (10, 3600)}, {"email": 3}, "email") == 7


def test_rate_room_is_the_smaller_of_channel_and_all():
    rates = {"email": (10, 3600), "all": (5, 3600)}
    assert rate_room(rates, {"email": 1, "all": 2}, "email") == 3
    assert rate_room(rates, {"all": 2}, "sms") == 3


def test_rate_room_is_never_negative():
    assert rate_room({"email": (10, 3600)}, {"email": 14}, "email") == 0


# share


def test_share_gives_a_large_account_no_more_than_its_turns():
    assert share(10, {"big": 100, "small": 2}) == {"big": 8, "small": 2}


def test_share_gives_the_first_accounts_one_more_when_a_turn_cannot_go_round():
    assert share(5, {"a": 9, "b": 9, "c": 9}) == {"a": 2, "b": 2, "c": 1}


def test_share_gives_nothing_to_an_account_that_wants_nothing():
    assert share(4, {"a": 0, "b": 9}) == {"a": 0, "b": 4}


wants_st = st.dictionaries(st.integers(0, 20), st.integers(0, 50), max_size=8)


@given(capacity=st.integers(0, 200), wants=wants_st)
def test_share_hands_out_all_it_can_and_no_more_than_wanted(capacity, wants):
    given_ = share(capacity, wants)
    assert given_.keys() == wants.keys()
    assert all(0 <= given_[k] <= wants[k] for k in wants)
    assert sum(given_.values()) == min(capacity, sum(wants.values()))


@given(capacity=st.integers(0, 200), wants=wants_st)
def test_share_is_fair_an_account_short_of_its_want_trails_no_one_by_more_than_one(capacity, wants):
    given_ = share(capacity, wants)
    for short in (k for k in wants if given_[k] < wants[k]):
        assert all(given_[k] <= given_[short] + 1 for k in wants)


# next_opening


def test_inside_the_window_there_is_no_opening_to_wait_for():
    # Tuesday 2026-03-10 12:00 in New York (EDT, UTC-4).
    assert next_opening(WEEKDAYS_9_TO_5, NEW_YORK, utc(2026, 3, 10, 16)) is None


def test_before_the_window_it_opens_the_same_morning():
    assert next_opening(WEEKDAYS_9_TO_5, NEW_YORK, utc(2026, 3, 10, 11)) == utc(2026, 3, 10, 13)


def test_friday_evening_waits_for_monday_across_the_spring_change():
    # Friday 2026-03-06 18:00 EST; clocks go forward on Sunday 2026-03-08.
    # Monday 09:00 is EDT (UTC-4): 13:00 UTC, not 14:00.
    opens = next_opening(WEEKDAYS_9_TO_5, NEW_YORK, utc(2026, 3, 6, 23))
    assert opens == utc(2026, 3, 9, 13)


def test_friday_evening_waits_for_monday_across_the_autumn_change():
    # Friday 2026-10-30 18:00 EDT; clocks go back on Sunday 2026-11-01.
    # Monday 09:00 is EST (UTC-5): 14:00 UTC.
    opens = next_opening(WEEKDAYS_9_TO_5, NEW_YORK, utc(2026, 10, 30, 22))
    assert opens == utc(2026, 11, 2, 14)


def test_a_window_on_the_spring_change_day_opens_at_local_nine():
    sunday = {"days": [6], "start": "09:00", "end": "17:00"}
    # 2026-03-08 01:00 EST (06:00 UTC), before the 02:00 change; 09:00 EDT is 13:00 UTC.
    assert next_opening(sunday, NEW_YORK, utc(2026, 3, 8, 6)) == utc(2026, 3, 8, 13)


def test_a_window_on_the_autumn_change_day_opens_at_local_nine():
    sunday = {"days": [6], "start": "09:00", "end": "17:00"}
    # 2026-11-01 00:30 EDT (04:30 UTC), before the change; 09:00 EST is 14:00 UTC.
    assert next_opening(sunday, NEW_YORK, datetime(2026, 11, 1, 4, 30, tzinfo=UTC)) == utc(
        2026, 11, 1, 14
    )


def test_a_window_to_midnight_is_open_late_in_the_evening():
    evenings = {"start": "18:00", "end": "24:00"}
    assert next_opening(evenings, NEW_YORK, utc(2026, 3, 11, 3, 30)) is None  # 23:30 EDT


def test_a_window_without_days_is_open_every_day():
    assert next_opening({"start": "00:00", "end": "24:00"}, NEW_YORK, utc(2026, 3, 8, 7)) is None


@given(
    now=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    days=st.sets(st.integers(0, 6), min_size=1),
    start=st.integers(5, 12),
    hours=st.integers(1, 10),
)
def test_an_opening_is_later_at_the_local_start_on_a_window_day(now, days, start, hours):
    window = {"days": sorted(days), "start": f"{start:02}:00", "end": f"{start + hours:02}:00"}
    opens = next_opening(window, NEW_YORK, now)
    if opens is None:  # inside the window
        local = now.astimezone(ZoneInfo(NEW_YORK))
        assert local.weekday() in days and start <= local.hour < start + hours
        return
    local = opens.astimezone(ZoneInfo(NEW_YORK))
    assert now < opens <= now + timedelta(days=8)
    assert (local.hour, local.minute, local.weekday() in days) == (start, 0, True)


# retry_delay


def test_retry_delay_doubles_from_the_base_half_of_it_jittered():
    assert [retry_delay(n, 60, 3600, rand=lambda: 1.0) for n in (1, 2, 3)] == [60, 120, 240]
    assert [retry_delay(n, 60, 3600, rand=lambda: 0.0) for n in (1, 2, 3)] == [30, 60, 120]


def test_retry_delay_waits_for_the_servers_retry_after_up_to_a_day():
    assert retry_delay(1, 60, 3600, retry_after=900, rand=lambda: 0.0) == 900
    assert retry_delay(1, 60, 3600, retry_after=1e12, rand=lambda: 0.0) == MAX_RETRY_AFTER


@given(
    attempt=st.integers(0, 200),
    base=st.floats(0.1, 3600),
    cap=st.floats(0.1, 86400),
    jitter=st.floats(0, 1, exclude_max=True),
)
def test_retry_delay_is_bounded_by_the_cap_and_grows_with_each_attempt(attempt, base, cap, jitter):
    delay = retry_delay(attempt, base, cap, rand=lambda: jitter)
    full = min(cap, base * 2 ** max(0, attempt - 1))
    assert full / 2 <= delay <= cap
    assert retry_delay(attempt + 1, base, cap, rand=lambda: jitter) >= delay


# sender mailboxes: the day in the account's time zone, the cap with warm-up


def test_a_senders_day_is_the_accounts_local_date():
    assert local_day("2027-03-02T04:59:59Z", NEW_YORK) == "2027-03-01"
    assert local_day("2027-03-02T05:00:00Z", NEW_YORK) == "2027-03-02"
    assert local_day("2027-03-02T23:30:00Z", "Asia/Tokyo") == "2027-03-03"


def test_warm_up_starts_on_the_first_day_sent_and_grows_to_the_daily_limit():
    caps = [sender_cap(30, (20, 4), "2027-03-01", f"2027-03-0{d}") for d in range(1, 6)]
    assert caps == [(20, 1), (24, 2), (28, 3), (30, 4), (30, 5)]
    assert sender_cap(30, (20, 4), None, "2027-06-01") == (20, 1)  # never sent: day 1 today
    assert sender_cap(300, None, "2027-03-01", "2027-03-09") == (300, None)


@given(
    limit=st.integers(1, 5000),
    start=st.integers(1, 500),
    step=st.integers(1, 100),
    days=st.integers(0, 400),
)
def test_a_cap_never_exceeds_the_daily_limit_and_never_falls(limit, start, step, days):
    first = datetime(2027, 1, 1).date()
    today = (first + timedelta(days=days)).isoformat()
    tomorrow = (first + timedelta(days=days + 1)).isoformat()
    cap, day = sender_cap(limit, (start, step), first.isoformat(), today)
    assert cap <= limit and day == days + 1
    assert sender_cap(limit, (start, step), first.isoformat(), tomorrow)[0] >= cap


def test_the_next_day_opens_at_local_midnight_across_daylight_saving():
    assert next_day_opens("2027-03-01T14:00:00Z", NEW_YORK) == "2027-03-02T05:00:00Z"
    assert next_day_opens("2027-03-14T03:00:00Z", NEW_YORK) == "2027-03-14T05:00:00Z"
    assert next_day_opens("2027-03-14T12:00:00Z", NEW_YORK) == "2027-03-15T04:00:00Z"
