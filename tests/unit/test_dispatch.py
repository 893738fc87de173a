"""Dispatch: what the tick may claim and start, accounts in turns, without a database."""

from __future__ import annotations

# The one import of the module under test: when it moves, change this line only.
from pipectl.scheduler.dispatch import Dispatch

from .sends import claimed_send as send


def test_capacity_is_workers_times_ahead_less_what_is_held():
    dispatch = Dispatch(workers=4, ahead=3)
    assert dispatch.capacity() == 12
    dispatch.update([send(1), send(2)], started=[], dropped=[])
    assert dispatch.capacity() == 10


def test_room_counts_only_the_accounts_own_sends():
    dispatch = Dispatch(workers=4, ahead=3)
    dispatch.update([send(1, account=1), send(2, account=2)], started=[], dropped=[])
    assert dispatch.room(1, concurrency=2) == 5
    assert dispatch.room(3, concurrency=2) == 6


def test_choose_starts_no_more_than_free_workers_and_each_accounts_concurrency():
    dispatch = Dispatch(workers=3)
    claimed = [send(i, account=1, concurrency=1) for i in range(1, 4)]
    claimed += [send(i, account=2, concurrency=5) for i in range(4, 8)]
    chosen = dispatch.choose(claimed)
    assert [r.id for r in chosen] == [1, 4, 5]


def test_the_account_served_longest_ago_goes_first():
    dispatch = Dispatch(workers=1)
    first, second, other = send(1, account=1), send(2, account=1), send(3, account=2)
    dispatch.update([first, second, other], started=[first], dropped=[])  # account 1 served
    dispatch.finished(first)
    assert [r.id for r in dispatch.choose([])] == [3]
    dispatch.update([], started=[other], dropped=[])  # now account 2 was served last
    dispatch.finished(other)
    assert [r.id for r in dispatch.choose([])] == [2]


def test_started_sends_leave_the_queue_and_hold_a_worker_until_finished():
    dispatch = Dispatch(workers=2, ahead=2)
    rows = [send(1), send(2), send(3)]
    dispatch.update(rows, started=rows[:2], dropped=[])
    assert (dispatch.queued_count(), dispatch.in_flight(), dispatch.capacity()) == (1, 2, 1)
    assert dispatch.choose([]) == []  # no free worker
    dispatch.finished(rows[0])
    assert (dispatch.in_flight(), dispatch.capacity()) == (1, 2)
    assert [r.id for r in dispatch.choose([])] == [3]


def test_dropped_sends_free_their_place_and_are_not_waiting():
    dispatch = Dispatch(workers=2, ahead=2)
    rows = [send(1), send(2)]
    dispatch.update(rows, started=[], dropped=[])
    dispatch.update([], started=[], dropped=[rows[0]])
    assert [r.id for r in dispatch.waiting()] == [2]
    assert dispatch.capacity() == 3


def test_choose_skips_waiting_sends_that_are_going_back():
    dispatch = Dispatch(workers=4)
    dispatch.update([send(1), send(2, channel="sms")], started=[], dropped=[])
    assert [r.id for r in dispatch.choose([], skip={1})] == [2]
