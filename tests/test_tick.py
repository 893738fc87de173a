"""The scheduler as cron runs it: due work only, chaining, limits, fairness, retries."""

from __future__ import annotations

import pytest

from .backends import is_url
from .conftest import rows
from .scenario import T0, outbox, setup, smtp_channel, start_smtp, statuses, summary

DRIP = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello from {{ lead.company_name }}"}
          - wait: 1d
          - email: {subject: "Again, {{ lead.first_name }}", body: "Still there?"}
          - move: lost
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
"""


def tick(cli, now: str, *args: str) -> dict:
    result = cli("tick", "--now", now, "--json", *args)
    assert result.exit_code == 0, result.output
    return summary(result)


def test_email_wait_email_move_runs_on_time_and_ends_lost(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3})

    first = tick(cli, T0)
    assert first["admitted"] == 3
    assert len(outbox(tmp_path)) == 3
    assert "Subject: Hi Lead0" in (outbox(tmp_path)[0]).read_text()

    tick(cli, "2027-03-02T13:00:00Z")  # 23 hours later: the wait is not over
    assert len(outbox(tmp_path)) == 3

    tick(cli, "2027-03-02T14:00:00Z")  # one day later: the second email, then the move
    assert len(outbox(tmp_path)) == 6
    assert {r["status"] for r in rows(db, "SELECT status FROM leads")} == {"lost"}
    assert statuses(db) == {"done": 12}
    stages = rows(
        db,
        "SELECT s.key, ls.exited_at FROM lead_stages ls "
        "JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id ORDER BY ls.id",
    )
    assert [s["key"] for s in stages] == ["intro"] * 3 + ["lost"] * 3
    assert all(s["exited_at"] == "2027-03-02T14:00:00Z" for s in stages[:3])


def test_tick_with_nothing_due_changes_nothing_and_says_so(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 2})
    tick(cli, T0)
    before = statuses(db)
    again = tick(cli, "2027-03-01T15:00:00Z")
    assert again["claimed"] == again["done"] == again["admitted"] == 0
    assert statuses(db) == before


def test_summary_line_and_quiet(cli, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 2})
    loud = cli("tick", "--now", T0)
    assert loud.exit_code == 0
    assert "claimed 2" in loud.stdout and "done 2" in loud.stdout and "admitted 2" in loud.stdout
    quiet = cli("tick", "--now", T0, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == ""


def test_dry_run_shows_the_work_and_changes_nothing(cli, db, tmp_path):
    from .conftest import dump

    setup(cli, tmp_path, DRIP, {("acme", "drip"): 2})
    before = dump(db)
    result = cli("tick", "--now", T0, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would send email to lead0@acme.example" in result.stdout
    assert "nothing was changed" in result.stdout
    assert dump(db) == before
    assert outbox(tmp_path) == []


def test_rate_limit_holds_back_without_dropping_or_counting_attempts(cli, db, tmp_path):
    setup(
        cli,
        tmp_path,
        DRIP.replace("drip", "slow"),
        {("acme", "slow"): 20},
        acme_extra="    limits: {rates: {email: 5/hour}}",
    )
    first = tick(cli, T0)
    assert first["done"] == 5 and first["held_back"] == 15
    held = rows(
        db, "SELECT attempts FROM lead_stage_actions WHERE status = 'pending' AND type = 'email'"
    )
    assert len(held) == 15 and {r["attempts"] for r in held} == {0}

    assert tick(cli, "2027-03-01T14:30:00Z")["done"] == 0  # the window is still full
    assert tick(cli, "2027-03-01T15:00:01Z")["done"] == 5
    tick(cli, "2027-03-01T16:00:02Z")
    tick(cli, "2027-03-01T17:00:03Z")
    assert len(outbox(tmp_path)) == 20
    sent = rows(
        db, "SELECT attempts FROM lead_stage_actions WHERE type = 'email' AND status = 'done'"
    )
    assert len(sent) == 20 and {r["attempts"] for r in sent} == {1}


def test_active_leads_limit_queues_the_rest_and_admits_as_leads_finish(cli, db, tmp_path):
    pipeline = """\
  - key: short
    account: acme
    name: Short
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - wait: 1h
          - move: lost
      - {key: lost, outcome: lost}
"""
    setup(
        cli,
        tmp_path,
        pipeline,
        {("acme", "short"): 30},
        acme_extra="    limits: {active_leads: 10}",
    )

    def enrollment_states() -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in rows(db, "SELECT status, count(*) AS n FROM enrollments GROUP BY status")
        }

    tick(cli, T0)
    assert enrollment_states() == {"active": 10, "queued": 20}
    assert len(outbox(tmp_path)) == 10
    first_ten = rows(db, "SELECT lead_id FROM enrollments WHERE status = 'active' ORDER BY id")
    assert [r["lead_id"] for r in first_ten] == [
        r["lead_id"] for r in rows(db, "SELECT lead_id FROM enrollments ORDER BY id LIMIT 10")
    ]  # FIFO

    tick(cli, "2027-03-01T15:00:00Z")  # the first ten finish; the next ten enter at once
    assert enrollment_states() == {"lost": 10, "active": 10, "queued": 10}
    assert len(outbox(tmp_path)) == 20


@pytest.mark.slow  # a real slow relay and a tick of 1-3 s
def test_small_account_is_served_while_a_big_one_has_a_backlog(cli, db, tmp_path):
    """Acme has 3,000 due behind a slow SMTP relay; Beta's ten still go in the first tick."""
    pipelines = DRIP + DRIP.replace("key: drip", "key: drip-b").replace(
        "account: acme", "account: beta"
    )
    server, _ = start_smtp(delay=0.05)
    try:
        setup(
            cli,
            tmp_path,
            pipelines,
            {("acme", "drip"): 3000, ("beta", "drip-b"): 10},
            acme_extra="    limits: {concurrency: 4}\n" + smtp_channel(server.port),
        )
        # PostgreSQL: every statement a round trip, on a machine the suite keeps busy.
        result = tick(cli, T0, "--max-seconds", "3" if is_url(db) else "1")
    finally:
        server.stop()
    assert statuses(db, "beta").get("done") == 10
    acme = statuses(db, "acme")
    assert 0 < acme.get("done", 0) < 3000 and acme["pending"] > 0  # acme's backlog remains
    assert result["held_back"] > 0


def test_two_databases_never_send_the_same_message_id(cli, db, tmp_path):
    """Staging and production sending from one domain: receivers must not drop one as a copy."""
    from email import message_from_bytes

    from .scenario import pipectl, write_yaml

    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    tick(cli, T0)
    other = tmp_path / "other"
    other.mkdir()
    second = other / "pipectl.db"
    assert pipectl(second, "apply", str(write_yaml(other, DRIP))).returncode == 0
    csv = tmp_path / "acme-drip.csv"
    assert (
        pipectl(
            second, "leads", "import", str(csv), "--account", "acme", "--pipeline", "drip"
        ).returncode
        == 0
    )
    assert pipectl(second, "tick", "--now", T0).returncode == 0
    ids = [
        message_from_bytes(p.read_bytes())["Message-ID"]
        for p in (outbox(tmp_path)[0], outbox(other)[0])
    ]
    assert ids[0].startswith("<pipectl.1.") and ids[0].endswith("@acme.example>")
    assert ids[0] != ids[1]


def test_a_result_that_cannot_be_written_fails_its_action_instead_of_resending(cli, db, tmp_path):
    """A write that keeps failing after a send (here a trigger refuses one delivery row) must
    not leave the action `running`, or every later tick would send it again."""
    import sqlite3

    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3})
    if is_url(db):
        rows(
            db,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'disk says no'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON deliveries FOR EACH ROW"
            " WHEN (NEW.recipient = 'lead1@acme.example') EXECUTE FUNCTION refuse()",
        )
    else:
        conn = sqlite3.connect(db)
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries WHEN NEW.recipient = "
            "'lead1@acme.example' BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        conn.commit()
        conn.close()

    first = tick(cli, T0)
    assert first["failed"] == 1 and len(outbox(tmp_path)) == 3
    refused = rows(
        db,
        "SELECT a.status, a.last_error FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id "
        "WHERE l.email = 'lead1@acme.example' AND a.sequence_number = 1",
    )[0]
    assert refused["status"] == "failed"
    assert refused["last_error"].startswith("internal error recording the result: disk says no")
    assert rows(db, "SELECT count(*) AS n FROM deliveries")[0]["n"] == 2  # the others recorded
    tick(cli, "2027-03-01T14:05:00Z")
    assert len(outbox(tmp_path)) == 3  # nothing sent again
