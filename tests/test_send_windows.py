"""Send windows: a send due outside its window goes at the next opening, in the right zone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipectl.scheduler.windows import next_opening

from .conftest import rows
from .scenario import outbox, summary

YAML = """\
version: 1
accounts:
  - key: acme
    name: Acme Roofing
    timezone: America/New_York
    country: US
    {limits}
channels:
  email: {{transport: outbox, from: "Acme Sales <sales@acme.example>"}}
  sms: {{transport: outbox, from: "+15550100000"}}
pipelines:
  - key: office
    account: acme
    name: Office hours
    send_window: {{days: mon-fri, hours: "09:00-17:00"}}
    stages:
      - key: intro
        actions:
          - email: {{subject: "Hello {{{{ lead.first_name }}}}", body: "Hello"}}
"""

OFFICE = {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}


def prepare(cli, tmp_path: Path, csv: str, name: str = "leads.csv", limits: str = "") -> None:
    yaml = tmp_path / "pipelines.yaml"
    if not yaml.exists():
        yaml.write_text(YAML.format(limits=limits), encoding="utf-8")
        assert cli("apply", yaml).exit_code == 0
    path = tmp_path / name
    path.write_text(csv, encoding="utf-8")
    result = cli("leads", "import", path, "--account", "acme", "--pipeline", "office")
    assert result.exit_code == 0, result.output


def tick(cli, now: str) -> dict:
    result = cli("tick", "--now", now, "--json")
    assert result.exit_code == 0, result.output
    return summary(result)


def email_of(db: Path, email: str) -> dict:
    (row,) = rows(
        db,
        "SELECT a.status, a.perform_at, a.attempts, a.due_at FROM lead_stage_actions a"
        " JOIN leads l ON l.id = a.lead_id WHERE l.email = ? AND a.type = 'email'",
        email,
    )
    return row


def test_send_due_friday_1730_new_york_goes_monday_0900_new_york(cli, db, tmp_path):
    prepare(cli, tmp_path, "email,first name\nann@example.com,Ann\n")
    friday = tick(cli, "2027-03-05T22:30:00Z")  # Friday 17:30 EST
    assert friday["admitted"] == 1 and friday["deferred"] == 1
    assert outbox(tmp_path) == []
    assert email_of(db, "ann@example.com") == {
        "status": "pending",
        "perform_at": "2027-03-08T14:00:00Z",  # Monday 09:00 EST
        "attempts": 0,
        "due_at": None,
    }
    tick(cli, "2027-03-06T15:00:00Z")  # Saturday
    tick(cli, "2027-03-08T13:59:00Z")  # Monday 08:59
    assert outbox(tmp_path) == []
    monday = tick(cli, "2027-03-08T14:00:00Z")
    assert monday["done"] == 1 and monday["held_back"] == 0
    assert len(outbox(tmp_path)) == 1
    assert email_of(db, "ann@example.com") == {
        "status": "done",
        "perform_at": "2027-03-08T14:00:00Z",
        "attempts": 1,
        "due_at": "2027-03-08T14:00:00Z",  # lateness counts from the opening, not Friday
    }


def test_lead_with_its_own_timezone_is_windowed_in_its_zone(cli, db, tmp_path):
    prepare(
        cli,
        tmp_path,
        "email,first name,timezone\n"
        "ny@example.com,Ny,\n"
        "london@example.com,Lon,Europe/London\n"
        "tokyo@example.com,Tok,Asia/Tokyo\n",
    )
    tick(cli, "2027-03-08T13:00:00Z")  # Monday: 08:00 New York, 13:00 London, 22:00 Tokyo
    assert email_of(db, "london@example.com")["status"] == "done"
    assert email_of(db, "ny@example.com")["perform_at"] == "2027-03-08T14:00:00Z"
    assert email_of(db, "tokyo@example.com")["perform_at"] == "2027-03-09T00:00:00Z"
    assert len(outbox(tmp_path)) == 1
    tick(cli, "2027-03-08T14:00:00Z")
    tick(cli, "2027-03-09T00:00:00Z")
    assert len(outbox(tmp_path)) == 3
    assert {email_of(db, e)["attempts"] for e in ("ny@example.com", "tokyo@example.com")} == {1}


def test_window_opens_at_0900_local_on_both_sides_of_the_march_dst_change(cli, db, tmp_path):
    prepare(cli, tmp_path, "email,first name\nbefore@example.com,Before\n")
    tick(cli, "2027-03-06T12:00:00Z")  # Saturday before the change (EST, UTC-5)
    assert email_of(db, "before@example.com")["perform_at"] == "2027-03-08T14:00:00Z"
    tick(cli, "2027-03-08T14:00:00Z")
    prepare(cli, tmp_path, "email,first name\nafter@example.com,After\n", name="later.csv")
    tick(cli, "2027-03-13T12:00:00Z")  # Saturday before Sunday 2027-03-14, the change
    assert email_of(db, "before@example.com")["status"] == "done"
    after = email_of(db, "after@example.com")
    assert after["perform_at"] == "2027-03-15T13:00:00Z"  # 09:00 EDT, UTC-4
    tick(cli, "2027-03-15T12:59:00Z")
    assert email_of(db, "after@example.com")["status"] == "pending"
    tick(cli, "2027-03-15T13:00:00Z")
    assert email_of(db, "after@example.com")["status"] == "done"
    sent = rows(db, "SELECT recipient, sent_at FROM deliveries ORDER BY id")
    assert [(r["recipient"], r["sent_at"][:16]) for r in sent] == [
        ("before@example.com", "2027-03-08T14:00"),
        ("after@example.com", "2027-03-15T13:00"),
    ]


def test_sends_inside_the_window_are_not_delayed_by_many_deferred_ones(cli, db, tmp_path):
    """Deferring is progress: a tick keeps claiming after a batch that was all deferred."""
    lines = ["email,first name,timezone"]
    lines += [f"night{i}@example.com,N{i},Asia/Tokyo" for i in range(6)]
    lines += ["day@example.com,Day,Europe/London"]
    prepare(cli, tmp_path, "\n".join(lines) + "\n", limits="limits: {concurrency: 2}")
    result = tick(cli, "2027-03-08T13:00:00Z")  # 22:00 in Tokyo, 13:00 in London
    assert result["deferred"] == 6
    assert email_of(db, "day@example.com")["status"] == "done"
    assert len(outbox(tmp_path)) == 1


# --- next_opening ------------------------------------------------------------------------


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        ("2027-03-08T15:00:00Z", "America/New_York", None),  # Monday 10:00: inside
        ("2027-03-08T14:00:00Z", "America/New_York", None),  # the opening itself is inside
        ("2027-03-08T22:00:00Z", "America/New_York", "2027-03-09T14:00:00Z"),  # 17:00: closed
        ("2027-03-08T12:00:00Z", "America/New_York", "2027-03-08T14:00:00Z"),  # 07:00: today
        ("2027-03-05T22:30:00Z", "America/New_York", "2027-03-08T14:00:00Z"),  # Fri 17:30
        ("2027-03-13T12:00:00Z", "America/New_York", "2027-03-15T13:00:00Z"),  # across DST
        ("2027-11-06T12:00:00Z", "America/New_York", "2027-11-08T14:00:00Z"),  # back to EST
        ("2027-03-08T13:00:00Z", "Europe/London", None),
        ("2027-03-08T13:00:00Z", "Asia/Tokyo", "2027-03-09T00:00:00Z"),
        ("2027-03-28T08:00:00Z", "Europe/London", "2027-03-29T08:00:00Z"),  # BST starts 03-28
    ],
)
def test_next_opening(now: str, tz: str, expected: str | None):
    opens = next_opening(OFFICE, tz, utc(now))
    assert (opens and opens.strftime("%Y-%m-%dT%H:%M:%SZ")) == expected


def test_next_opening_weekend_and_all_day_windows():
    weekend = {"days": [5, 6], "start": "10:00", "end": "24:00"}
    assert next_opening(weekend, "UTC", utc("2027-03-06T23:59:00Z")) is None  # Sat 23:59
    assert next_opening(weekend, "UTC", utc("2027-03-08T09:00:00Z")) == utc("2027-03-13T10:00:00Z")
    every_day = {"days": list(range(7)), "start": "00:00", "end": "24:00"}
    assert next_opening(every_day, "America/New_York", utc("2027-03-14T07:30:00Z")) is None
