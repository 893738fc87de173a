"""Extreme input: times at the ends of the calendar, huge numbers and an anchor bomb in the
YAML. Each is refused at once with a clear message and changes nothing; no traceback."""

from __future__ import annotations

import re
import time

from .conftest import dump, rows
from .scenario import outbox, write_csv, write_yaml

WINDOWED = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email:
              subject: "Hi"
              body: "Hello"
              send_window: {days: mon-fri, hours: "09:00-17:00", timezone: Pacific/Kiritimati}
          - wait_for_reply: {timeout: 36500d, on_timeout: won}
      - {key: won, outcome: won}
"""

# Nine levels of nine: 387,420,489 strings once expanded.
BOMB = """\
x-a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
x-f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
x-g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
x-h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
x-i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def said(result) -> str:
    """stderr as one line of words, without the box rich draws around usage errors."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())


def perform_at(db, action_type: str) -> set[str]:
    sql = "SELECT perform_at FROM lead_stage_actions WHERE type = ?"
    return {r["perform_at"] for r in rows(db, sql, action_type)}


def prepared(cli, tmp_path):
    assert cli("apply", write_yaml(tmp_path, WINDOWED)).exit_code == 0
    csv = write_csv(tmp_path, "leads.csv", 3)
    assert cli("leads", "import", csv, "--account", "acme", "--pipeline", "drip").exit_code == 0


def test_times_at_the_ends_of_the_calendar_are_refused_and_change_nothing(cli, db, tmp_path):
    prepared(cli, tmp_path)
    before = dump(db)
    extremes = ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T20:00:00-14:00")
    for t in extremes:
        for command in (
            ("tick", "--now", t),
            ("status", "--now", t),
            ("retry", "--account", "acme", "--failed", "--now", t),
            ("reply", "--account", "acme", "--email", "lead0@example.com", "--at", t),
        ):
            result = cli(*command)
            assert result.exit_code == 2, (command, result.output)
            assert f"invalid time {t!r}: out of range" in said(result)
    replies = tmp_path / "replies.csv"
    replies.write_text("email,body,received_at\nlead0@example.com,hi,9999-12-31T23:59:59Z\n")
    result = cli("replies", "import", replies, "--account", "acme")
    assert result.exit_code == 1
    assert f"{replies}:2: received_at: invalid time '9999-12-31T23:59:59Z': out of range" in (
        result.stderr
    )
    assert dump(db) == before


def test_a_tick_near_the_end_of_the_range_defers_to_the_next_window_and_waits(cli, db, tmp_path):
    prepared(cli, tmp_path)
    # Sunday 8999-12-31 in Kiritimati (UTC+14): the window opens on Monday 9000-01-01 09:00.
    result = cli("tick", "--now", "8999-12-31T08:00:00Z")
    assert result.exit_code == 0, result.output
    assert outbox(tmp_path) == []
    assert perform_at(db, "email") == {"8999-12-31T19:00:00Z"}
    result = cli("tick", "--now", "8999-12-31T19:00:00Z")
    assert result.exit_code == 0, result.output
    assert len(outbox(tmp_path)) == 3
    # A hundred-year wait for a reply from then on still lands on a date that can be stored.
    assert perform_at(db, "wait_for_reply") == {"9099-12-07T19:00:00Z"}


def test_huge_numbers_and_durations_in_the_yaml_are_refused_naming_the_line(cli, db, tmp_path):
    yaml = write_yaml(
        tmp_path,
        WINDOWED.replace("timeout: 36500d", "timeout: 99999999d"),
        acme_extra="    limits: {active_leads: 99999999999999999999, concurrency: 1e400}",
    )
    before = dump(db)
    for command in ("validate", "apply"):
        result = cli(command, yaml)
        assert result.exit_code == 1, result.output
        assert f"{yaml}:7: account 'acme' active_leads must be at most 1,000,000,000" in (
            result.stderr
        )
        assert "concurrency must be a whole number greater than 0, not" in result.stderr
        assert "timeout: duration '99999999d' is too long: at most 36500d" in result.stderr
    assert dump(db) == before


def test_an_anchor_bomb_under_limits_rates_is_refused_at_once(cli, db, tmp_path):
    yaml = write_yaml(tmp_path, WINDOWED, acme_extra="    limits: {rates: {email: *i, all: *i}}")
    yaml.write_text(BOMB + yaml.read_text())
    before = dump(db)
    for command in ("validate", "apply"):
        started = time.monotonic()
        result = cli(command, yaml)
        assert time.monotonic() - started < 5
        assert result.exit_code == 1, result.output
        assert f"{yaml}:9: account 'acme' rates.email must be a rate like 200/hour, not a list" in (
            result.stderr
        )
        assert "rates.all must be a rate like 200/hour, not a list" in result.stderr
        assert len(result.stderr) < 1000
    assert dump(db) == before


def test_run_refuses_an_interval_too_long_to_wait(cli):
    for interval in ("1e400", "inf", "86401"):
        result = cli("run", "--interval", interval)
        assert result.exit_code == 2, result.output
        assert "--interval" in said(result)
