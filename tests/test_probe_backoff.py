"""A failing channel's probe backs off (it waits as long as the channel has been failing: at
least 60 s, at most 15 minutes, with jitter), and
a probe that went out and failed is an attempt of its send: a provider refusing one number
is not sent the same text every minute forever."""

from __future__ import annotations

import pytest

from .channel_servers import http_server
from .conftest import rows
from .scenario import write_yaml

PROBE_TEXT = """\
  - key: texts
    account: acme
    name: Texts
    stages:
      - key: intro
        actions:
          - sms: {{body: "Probe test", retry: {{attempts: {attempts}, backoff: 1m}}}}
          - move: won
      - {{key: won, outcome: won}}
"""
REFUSED = "+12125550100"


def at(minute: int, second: int = 0) -> str:
    return f"2027-03-01T{10 + minute // 60:02d}:{minute % 60:02d}:{second:02d}Z"


def setup(cli, tmp_path, url: str, phones: list[str], attempts: int) -> None:
    channel = f"    channels:\n      sms: {{transport: webhook, url: '{url}/send'}}"
    yaml = write_yaml(tmp_path, PROBE_TEXT.format(attempts=attempts), acme_extra=channel)
    assert cli("apply", yaml).exit_code == 0
    csv = tmp_path / "phones.csv"
    csv.write_text(
        "Email,First Name,Phone\n"
        + "".join(f"lead{i}@acme.example,Lead{i},{p}\n" for i, p in enumerate(phones)),
        encoding="utf-8",
    )
    imported = cli("leads", "import", csv, "--account", "acme", "--pipeline", "texts")
    assert imported.exit_code == 0, imported.output


def text(db) -> dict:
    (row,) = rows(
        db,
        "SELECT status, attempts, perform_at, last_error FROM lead_stage_actions"
        " WHERE type = 'sms'",
    )
    return row


def health(db) -> list[dict]:
    return rows(
        db, "SELECT failures, failing_since, last_probe_at, next_probe_at FROM channel_health"
    )


def tick(cli, now: str) -> str:
    result = cli("tick", "--now", now)
    assert result.exit_code == 0, result.output
    return result.stdout


def refuse_one_number(http) -> None:
    """The provider answers 503 for REFUSED and 200 for every other number."""
    http.default = (200, {"Content-Type": "application/json"}, b'{"id": "ok"}')
    http.respond = lambda r: (503, {}, b"unavailable") if REFUSED.encode() in r.body else None


def test_a_probe_refused_with_503_backs_off_counts_as_an_attempt_and_gives_up(cli, db, tmp_path):
    with http_server() as (url, http):
        refuse_one_number(http)
        setup(cli, tmp_path, url, [REFUSED], attempts=2)

        tick(cli, at(10))  # the first failure: held, not an attempt; the channel fails
        assert len(http.requests) == 1
        assert text(db)["attempts"] == 0 and text(db)["status"] == "pending"
        (failing,) = health(db)
        assert failing["failures"] == 1
        assert at(10, 30) <= failing["next_probe_at"] <= at(11)  # 60 s, with jitter

        probed = tick(cli, at(11))  # the probe went out and failed: attempt 1
        assert len(http.requests) == 2
        assert "retried 1" in probed and "held back 0" in probed
        first = text(db)
        assert first["status"] == "pending" and first["attempts"] == 1
        assert at(11, 30) <= first["perform_at"] <= at(12)  # its own 1m backoff
        assert "HTTP 503: unavailable" in first["last_error"]
        (failing,) = health(db)
        assert failing["failures"] == 2
        assert at(11, 30) <= failing["next_probe_at"] <= at(12)  # failing 60 s: waits 60 s

        posts = [len(http.requests)]
        for minute in range(12, 26):
            tick(cli, at(minute))
            posts.append(len(http.requests))
    assert posts[-1] == 3  # 10:10, 10:11, then one more probe at 10:12; no more
    assert posts[:3] == [2, 3, 3]
    gave_up = text(db)
    assert gave_up["status"] == "failed" and gave_up["attempts"] == 2
    assert gave_up["last_error"].startswith("gave up after 2 attempts: channel sms:")
    assert "HTTP 503" in gave_up["last_error"]
    assert [r["status"] for r in rows(db, "SELECT status FROM enrollments")] == ["failed"]


@pytest.mark.slow  # an hour of ticks
def test_probes_of_a_channel_that_stays_down_back_off_to_15_minutes(cli, db, tmp_path):
    """Always 503: each probe waits as long as the channel has been failing (so the waits
    about double), never more than 15 minutes; plenty of attempts, so the sends stay pending.
    Two sends failing in one tick count once: the first wait is 30-60 s, not 60-120."""
    with http_server() as (url, http):
        http.default = (503, {}, b"down")
        setup(cli, tmp_path, url, ["+12125550101", "+12125550102"], attempts=50)
        delays = []
        for minute in range(0, 60):
            before = len(http.requests)
            tick(cli, at(minute))
            if len(http.requests) > before:
                (failing,) = health(db)
                down = _seconds(failing["failing_since"], at(minute))
                delays.append((failing["failures"], failing["next_probe_at"], at(minute), down))
    # Ticks that probed: the first (two sends, held), then probes at growing intervals.
    assert [failures for failures, *_ in delays] == list(range(2, 2 + len(delays)))
    for _, next_probe_at, now, down in delays:
        full = min(max(60, down), 900)
        assert _seconds(now, next_probe_at) >= full / 2 - 1
        assert _seconds(now, next_probe_at) <= full + 1
    waits = [_seconds(now, next_at) for _, next_at, now, _ in delays]
    assert waits[0] <= 60 and max(waits) <= 900 and max(waits) > 300  # it grew, to the cap
    # 2 sends, then probes at about 1, 2, 4, 8, 15 minutes apart: far fewer than 60.
    assert 5 <= len(http.requests) <= 2 + 12


def test_a_probe_that_gets_through_resets_the_backoff(cli, db, tmp_path):
    with http_server() as (url, http):
        http.default = (503, {}, b"down")
        setup(cli, tmp_path, url, ["+12125550101", "+12125550102", "+12125550103"], attempts=9)
        for minute in range(0, 8):
            tick(cli, at(minute))
        assert health(db)[0]["failures"] >= 4
        http.default = (200, {}, b"")
        tick(cli, at(20))  # the probe gets through: the channel works, every held send goes
        assert health(db) == []
        assert [r["status"] for r in rows(db, "SELECT status FROM enrollments")] == ["won"] * 3

        http.default = (503, {}, b"down again")  # a new outage starts from the first step
        csv = tmp_path / "later.csv"
        csv.write_text("Email,Phone\nlate@acme.example,+12125550104\n", encoding="utf-8")
        imported = cli("leads", "import", csv, "--account", "acme", "--pipeline", "texts")
        assert imported.exit_code == 0, imported.output
        tick(cli, at(30))
        (failing,) = health(db)
        assert failing["failures"] == 1
        assert at(30, 30) <= failing["next_probe_at"] <= at(31)


def _seconds(earlier: str, later: str) -> float:
    from pipectl.durations import parse_time

    return (parse_time(later) - parse_time(earlier)).total_seconds()


def test_a_probe_answered_with_a_redirect_is_held_not_an_attempt(cli, db, tmp_path):
    """A redirect (http:// for https://) is a wrong URL: nothing was taken, no lead fails."""
    with http_server() as (url, http):
        http.default = (301, {"Location": "https://elsewhere.example/send"}, b"")
        setup(cli, tmp_path, url, [REFUSED], attempts=2)
        for minute in (10, 11, 13, 16, 25, 40):
            tick(cli, at(minute))
        assert len(http.requests) >= 3  # probed again and again, backing off
    held = text(db)
    assert held["status"] == "pending" and held["attempts"] == 0
    assert "unexpected HTTP 301" in held["last_error"]
