"""Failures against a real SMTP server: transient ones retry with backoff, permanent ones fail
once and follow the stage's on_failure."""

from __future__ import annotations

from .channel_servers import smtp_server
from .conftest import rows
from .scenario import T0, setup, smtp_channel

PIPELINE = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        on_failure: lost
        actions:
          - email:
              subject: "Hi {{ lead.first_name }}"
              body: "Hello"
              retry: {attempts: 3, backoff: 1m}
          - move: won
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
"""


def email_row(db, address: str) -> dict:
    return rows(
        db,
        "SELECT a.* FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id "
        "WHERE l.email = ? AND a.type = 'email'",
        address,
    )[0]


def enrollment(db, address: str) -> str:
    return rows(
        db,
        "SELECT e.status FROM enrollments e JOIN leads l ON l.id = e.lead_id WHERE l.email = ?",
        address,
    )[0]["status"]


def test_451_retries_after_backoff_and_550_fails_once_then_on_failure(cli, db, tmp_path):
    with smtp_server() as (server, recorder):
        setup(cli, tmp_path, PIPELINE, {("acme", "drip"): 3}, acme_extra=smtp_channel(server.port))
        recorder.replies["lead0@acme.example"] = "451 4.3.0 Try again later"
        recorder.replies["lead1@acme.example"] = "550 5.1.1 No such user"

        assert cli("tick", "--now", T0).exit_code == 0
        retry = email_row(db, "lead0@acme.example")
        assert retry["status"] == "pending" and retry["attempts"] == 1
        assert "451" in retry["last_error"]
        # Backoff for the first retry: 1 minute with jitter, between 30 s and 60 s.
        assert "2027-03-01T14:00:30Z" <= retry["perform_at"] <= "2027-03-01T14:01:00Z"
        refused = email_row(db, "lead1@acme.example")
        assert refused["status"] == "failed" and refused["attempts"] == 1
        assert "550" in refused["last_error"]
        assert enrollment(db, "lead1@acme.example") == "lost"  # the stage's on_failure
        assert enrollment(db, "lead2@acme.example") == "won"

        del recorder.replies["lead0@acme.example"]
        cli("tick", "--now", "2027-03-01T14:00:20Z")  # not due yet: no attempt
        assert email_row(db, "lead0@acme.example")["attempts"] == 1
        cli("tick", "--now", "2027-03-01T14:01:01Z")
        assert email_row(db, "lead0@acme.example")["status"] == "done"
        assert email_row(db, "lead0@acme.example")["attempts"] == 2
        assert len(recorder.to("lead0@acme.example")) == 1
        assert enrollment(db, "lead0@acme.example") == "won"

        cli("tick", "--now", "2027-03-01T15:00:00Z")
        assert email_row(db, "lead1@acme.example")["attempts"] == 1  # never retried
        assert recorder.to("lead1@acme.example") == []


def test_transient_failures_give_up_after_the_attempts_allowed(cli, db, tmp_path):
    with smtp_server() as (server, recorder):
        setup(cli, tmp_path, PIPELINE, {("acme", "drip"): 1}, acme_extra=smtp_channel(server.port))
        recorder.replies["lead0@acme.example"] = "451 4.3.0 Try again later"
        for minute in (0, 5, 10, 15):
            cli("tick", "--now", f"2027-03-01T14:{minute:02d}:00Z")
        row = email_row(db, "lead0@acme.example")
        assert row["status"] == "failed" and row["attempts"] == 3
        assert row["last_error"].startswith("gave up after 3 attempts")
        assert enrollment(db, "lead0@acme.example") == "lost"


def test_server_down_is_transient_and_nothing_is_lost(cli, db, tmp_path):
    from .channel_servers import free_port

    port = free_port()
    setup(cli, tmp_path, PIPELINE, {("acme", "drip"): 2}, acme_extra=smtp_channel(port))
    cli("tick", "--now", T0)
    assert {email_row(db, f"lead{i}@acme.example")["status"] for i in range(2)} == {"pending"}
    with smtp_server(port) as (_, recorder):
        cli("tick", "--now", "2027-03-01T14:05:00Z")
        assert len(recorder.received) == 2
    assert enrollment(db, "lead0@acme.example") == enrollment(db, "lead1@acme.example") == "won"
