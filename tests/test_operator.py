"""The operator's view: status flags what breaks the promises; retry and enroll fix it."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest

from pipectl.durations import format_time, utcnow

from .backends import is_url
from .channel_servers import free_port, smtp_server
from .conftest import dump, rows
from .scenario import T0, pipectl, setup, smtp_channel, statuses

DRIP = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait: 1d
          - move: won
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
  - key: nurture
    account: acme
    name: Nurture
    stages:
      - key: start
        actions:
          - wait_for_reply: {timeout: 2d}
      - {key: done, outcome: won}
"""
DAY_LATER = "2027-03-02T14:00:00Z"


def as_json(cli, *args: str):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def account(report: dict, key: str = "acme") -> dict:
    return next(a for a in report["accounts"] if a["account"] == key)


# --- status ---------------------------------------------------------------------------------


def test_status_flags_overdue_actions_and_a_stale_tick(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 2})
    assert cli("tick", "--now", T0).exit_code == 0

    fresh = as_json(cli, "status", "--now", "2027-03-01T14:01:00Z")
    assert fresh["warnings"] == [] and fresh["last_tick"]["now"] == T0
    assert fresh["last_tick"]["done"] == 2 and not fresh["last_tick"]["stale"]
    assert account(fresh)["actions"]["due_now"] == 0

    # The waits became due a day later, and no tick has run since: 5 minutes late.
    late = as_json(cli, "status", "--now", "2027-03-02T14:05:00Z")
    acme = account(late)
    due = rows(
        db,
        "SELECT count(*) AS n FROM lead_stage_actions WHERE status = 'pending'"
        " AND perform_at <= '2027-03-02T14:03:00Z'",
    )[0]["n"]
    assert acme["actions"]["overdue"] == acme["actions"]["due_now"] == due == 2
    assert acme["actions"]["oldest_due"] == DAY_LATER
    assert late["last_tick"]["stale"] and late["last_tick"]["age_seconds"] == 86700
    assert any("no tick for" in w for w in late["warnings"])
    assert any(w.startswith("acme: 2 actions overdue") for w in late["warnings"])

    text = cli("status", "--now", "2027-03-02T14:05:00Z")
    assert "WARNING: no tick for 24 hours" in text.stdout
    assert "WARNING: acme: 2 actions overdue" in text.stdout
    assert "due now 2, overdue 2" in text.stdout
    assert cli("status", "--now", "2027-03-02T14:05:00Z", "--check").exit_code == 1

    # Due for less than the SLA's 2 minutes: due, not overdue.
    soon = account(as_json(cli, "status", "--now", "2027-03-02T14:01:00Z"))
    assert soon["actions"]["due_now"] == 2 and soon["actions"]["overdue"] == 0


def test_status_without_any_tick_warns(cli, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    report = as_json(cli, "status", "--now", T0)
    assert report["last_tick"] is None
    assert report["warnings"] == ["no tick has ever run: set up cron or the systemd timer"]
    assert account(report)["leads_by_state"] == {"queued": 1}
    assert account(report)["limits"]["active_leads"]["queued"] == 1


def test_status_shows_rate_use_and_lateness_as_the_claim_counts_them(cli, db, tmp_path):
    setup(
        cli,
        tmp_path,
        DRIP,
        {("acme", "drip"): 3},
        acme_extra="    limits: {rates: {email: 2/hour}, concurrency: 5}",
    )
    assert cli("tick", "--now", T0).exit_code == 0
    acme = account(as_json(cli, "status", "--now", "2027-03-01T14:01:00Z"))
    sent = rows(db, "SELECT count(*) AS n FROM deliveries WHERE channel = 'email'")[0]["n"]
    assert sent == 2
    assert acme["limits"]["rates"] == {"email": {"limit": 2, "window_seconds": 3600, "used": 2}}
    assert acme["limits"]["concurrency"] == {"limit": 5, "used": 0}
    assert acme["limits"]["active_leads"] == {"limit": None, "used": 3, "queued": 0}
    assert acme["actions"]["due_now"] == 1  # held back by the rate, still due
    assert acme["lateness"]["performed"] == 2 and acme["lateness"]["p95_seconds"] == 0.0

    # The held-back email goes an hour later, an hour late: lateness shows it.
    assert cli("tick", "--now", "2027-03-01T15:00:01Z").exit_code == 0
    acme = account(as_json(cli, "status", "--now", "2027-03-01T15:00:30Z"))
    assert acme["lateness"]["performed"] == 1  # the first two are more than an hour old
    assert acme["lateness"]["p50_seconds"] == acme["lateness"]["p95_seconds"] == 3601.0


def test_status_names_a_channel_that_keeps_failing_and_its_error(cli, db, tmp_path):
    nobody = free_port()  # connections refused: every send fails alike, and retries
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3}, acme_extra=smtp_channel(nobody))
    assert cli("tick", "--now", T0).exit_code == 0
    errors = {r["last_error"] for r in rows(db, "SELECT last_error FROM lead_stage_actions")}
    errors.discard(None)
    assert len(errors) == 1
    report = as_json(cli, "status", "--now", "2027-03-01T14:00:10Z")
    (failing,) = account(report)["failing_channels"]
    assert failing["channel"] == "email" and failing["failures"] == 3
    assert failing["error"] == errors.pop() and failing["last_delivery"] is None
    assert any("email failing since" in w for w in report["warnings"])


@pytest.mark.slow  # four tick processes
def test_status_counts_runners_idle_after_their_tick_in_one_line(cli, db, tmp_path):
    for minute in range(10, 14):  # cron: a tick a minute, each its own process
        tick = pipectl(db, "tick", "-q", "--no-sync", "--now", f"2027-03-05T10:{minute}:00Z")
        assert tick.returncode == 0, tick.stderr
    ticks = rows(db, "SELECT host, pid, stopped_at FROM runners ORDER BY stopped_at")
    assert len(ticks) == 4 and all(t["stopped_at"] for t in ticks)
    last = ticks[-1]

    text = cli("status").stdout
    runner_lines = [line for line in text.splitlines() if line.startswith("runners:")]
    assert runner_lines == [
        "runners: none working; 4 runners idle after a tick in the last 10 minutes,"
        f" the last stopped at {last['stopped_at']}"
    ]
    listed = as_json(cli, "status")["runners"]  # JSON keeps every runner
    assert sorted(r["pid"] for r in listed) == sorted(t["pid"] for t in ticks)
    assert {r["state"] for r in listed} == {"idle"}

    now, hour_ago = format_time(utcnow()), format_time(utcnow() - timedelta(hours=1))
    _write(db, "INSERT INTO runners (id, host, pid, started_at, heartbeat_at) VALUES"
           " ('a00000000001', 'web1', 101, ?, ?), ('a00000000002', 'web2', 202, ?, ?)",
           now, now, hour_ago, hour_ago)  # fmt: skip
    report = as_json(cli, "status")
    assert {r["pid"]: r["state"] for r in report["runners"]}[101] == "working"
    assert any("runner a00000000002 on web2 (pid 202) went quiet" in w for w in report["warnings"])
    text = cli("status").stdout
    runner_lines = [line for line in text.splitlines() if line.startswith("runners:")]
    assert runner_lines == [
        f"runners: web2 pid 202 quiet (heartbeat {hour_ago}),"
        f" web1 pid 101 working (heartbeat {now});"
        " 4 runners idle after a tick in the last 10 minutes,"
        f" the last stopped at {last['stopped_at']}"
    ]


def _write(db, sql: str, *params) -> None:
    """A change made by hand, committed, on either backend."""
    if is_url(db):
        rows(db, sql, *params)
        return
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


# --- retry ----------------------------------------------------------------------------------


def test_retry_returns_a_failed_action_to_pending_and_a_later_tick_completes_it(cli, db, tmp_path):
    with smtp_server() as (server, recorder):
        setup(cli, tmp_path, DRIP, {("acme", "drip"): 2}, acme_extra=smtp_channel(server.port))
        recorder.replies["lead0@acme.example"] = "550 5.1.1 No such user"
        assert cli("tick", "--now", T0).exit_code == 0

        failed = as_json(cli, "actions", "list", "--status", "failed")
        (row,) = rows(db, "SELECT * FROM lead_stage_actions WHERE status = 'failed'")
        assert [a["id"] for a in failed] == [row["id"]]
        assert failed[0]["email"] == "lead0@acme.example" and failed[0]["stage"] == "intro"
        assert failed[0]["last_error"] == row["last_error"] and "550" in row["last_error"]
        assert rows(db, "SELECT status FROM enrollments WHERE lead_id = ?", row["lead_id"]) == [
            {"status": "failed"}
        ]

        # The address is fixed on the server's side; the operator requeues the action.
        del recorder.replies["lead0@acme.example"]
        later = "2027-03-01T15:00:00Z"
        result = as_json(cli, "retry", str(row["id"]), "--now", later)
        assert result == {"retried": [row["id"]], "refused": [], "skipped": []}
        (again,) = rows(db, "SELECT * FROM lead_stage_actions WHERE id = ?", row["id"])
        assert again["status"] == "pending" and again["perform_at"] == later
        assert again["attempts"] == 0 and again["last_error"] == row["last_error"]
        assert rows(db, "SELECT status FROM leads WHERE id = ?", row["lead_id"]) == [
            {"status": "active"}
        ]
        assert rows(db, "SELECT exited_at FROM lead_stages WHERE id = ?", row["lead_stage_id"]) == [
            {"exited_at": None}
        ]

        assert cli("tick", "--now", later).exit_code == 0
        assert len(recorder.to("lead0@acme.example")) == 1
        (done,) = rows(db, "SELECT * FROM lead_stage_actions WHERE id = ?", row["id"])
        assert done["status"] == "done" and done["attempts"] == 1 and done["last_error"] is None
        assert cli("tick", "--now", "2027-03-02T15:00:00Z").exit_code == 0
        assert {r["status"] for r in rows(db, "SELECT status FROM leads")} == {"won"}
        assert statuses(db) == {"done": 6}


def test_retry_an_accounts_failed_actions_and_refuse_what_is_not_failed(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 2})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme", "--pipeline", "drip")
    assert cli("tick", "--now", T0).exit_code == 0
    (failed,) = rows(db, "SELECT id FROM lead_stage_actions WHERE status = 'failed'")
    done = rows(db, "SELECT id FROM lead_stage_actions WHERE status = 'done' LIMIT 1")[0]

    refused = cli("retry", str(done["id"]))
    assert refused.exit_code == 1 and "only failed actions are retried" in refused.stderr
    assert cli("retry").exit_code == 2
    assert cli("retry", "--failed").exit_code == 2
    assert cli("retry", "999999").exit_code == 1

    # The lead gets an email by re-import; retrying the account's failed actions sends it.
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("Phone,Email\n+12125550100,nomail@acme.example\n", encoding="utf-8")
    assert cli("leads", "import", fixed, "--account", "acme").exit_code == 0
    result = as_json(cli, "retry", "--account", "acme", "--failed", "--now", DAY_LATER)
    assert result == {"retried": [failed["id"]], "refused": [], "skipped": []}
    assert as_json(cli, "actions", "list", "--status", "failed") == []
    assert cli("tick", "--now", DAY_LATER).exit_code == 0
    (row,) = rows(db, "SELECT status, attempts FROM lead_stage_actions WHERE id = ?", failed["id"])
    assert row == {"status": "done", "attempts": 1}


def write_no_email(tmp_path):
    path = tmp_path / "no-email.csv"
    path.write_text("Phone,First Name\n+12125550100,Nomail\n", encoding="utf-8")
    return path


# --- actions list, leads show, leads enroll -------------------------------------------------


def test_actions_list_json_matches_the_database(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3})
    assert cli("tick", "--now", T0).exit_code == 0
    listed = as_json(cli, "actions", "list", "--status", "pending", "--account", "acme")
    pending = rows(
        db, "SELECT id, type, perform_at FROM lead_stage_actions WHERE status = 'pending'"
    )
    assert sorted((a["id"], a["type"], a["perform_at"]) for a in listed) == sorted(
        (r["id"], r["type"], r["perform_at"]) for r in pending
    )
    assert {a["pipeline"] for a in listed} == {"drip"}
    assert len(as_json(cli, "actions", "list", "--limit", "2")) == 2
    for status in ("lost", "fail"):  # a usage error: exit 2, naming the option
        bad = cli("actions", "list", "--status", status)
        assert bad.exit_code == 2 and f"unknown status '{status}'" in bad.stderr
        assert "--status" in bad.stderr and "Traceback" not in bad.output
    piped = cli("actions", "list", "--status", "pending")
    assert piped.stdout.splitlines()[0].startswith("id\taccount\tlead")


def test_leads_show_gives_the_timeline_of_stages_actions_deliveries_and_replies(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    assert cli("tick", "--now", T0).exit_code == 0
    reply = cli(
        "reply", "--account", "acme", "--email", "lead0@acme.example", "--body", "Call me",
        "--at", "2027-03-01T16:00:00Z",
    )  # fmt: skip
    assert reply.exit_code == 0, reply.output
    assert cli("tick", "--now", DAY_LATER).exit_code == 0

    lead = as_json(cli, "leads", "show", "lead0@acme.example")
    assert lead["email"] == "lead0@acme.example" and lead["status"] == "won"
    assert lead["fields"] == {"company_name": "Company 0"}
    (enrollment,) = lead["enrollments"]
    assert enrollment["pipeline"] == "drip" and enrollment["state"] == "won"
    assert [s["stage"] for s in enrollment["stages"]] == ["intro", "won"]
    actions = enrollment["stages"][0]["actions"]
    db_actions = rows(
        db,
        "SELECT id, type, status, perform_at, performed_at, attempts, last_error"
        " FROM lead_stage_actions ORDER BY sequence_number",
    )
    assert [{k: a[k] for k in db_actions[0]} for a in actions] == db_actions
    (delivery,) = actions[0]["deliveries"]
    (db_delivery,) = rows(db, "SELECT recipient, message_id, provider_id, sent_at FROM deliveries")
    assert delivery == {"channel": "email", **db_delivery}
    assert lead["replies"] == [
        {
            "received_at": "2027-03-01T16:00:00Z",
            "channel": "email",
            "kind": "reply",
            "sender": "lead0@acme.example",
            "source": "manual",
            "body": "Call me",
            "opt_out": False,
            "effect": "recorded; no automation was waiting for it",
        }
    ]
    times = [e["at"] for e in lead["timeline"]]
    assert times == sorted(times)
    events = [e["event"] for e in lead["timeline"]]
    assert events[-3:] == ["left stage intro", "entered stage won", "finished: won"]
    assert any(e.startswith("reply by email") for e in events)

    by_id = as_json(cli, "leads", "show", str(lead["id"]), "--account", "acme")
    assert by_id["id"] == lead["id"]
    text = cli("leads", "show", str(lead["id"]))
    assert "lead 1 (acme): Lead0 <lead0@acme.example>" in text.stdout
    assert "sent to lead0@acme.example" in text.stdout
    missing = cli("leads", "show", "nobody@acme.example")
    assert missing.exit_code == 1 and "no lead 'nobody@acme.example'" in missing.stderr


def test_leads_enroll_queues_existing_leads_once(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3})
    result = as_json(
        cli, "leads", "enroll", "--account", "acme", "--pipeline", "nurture",
        "--lead", "lead0@acme.example", "--lead", "2",
    )  # fmt: skip
    assert result == {
        "pipeline": "nurture",
        "queued": [1, 2],
        "re_enrolled": [],
        "already_enrolled": [],
        "do_not_contact": [],
    }
    queued = rows(
        db,
        "SELECT e.lead_id FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
        " WHERE p.key = 'nurture' AND e.status = 'queued' ORDER BY e.lead_id",
    )
    assert queued == [{"lead_id": 1}, {"lead_id": 2}]

    names = tmp_path / "enroll.csv"
    names.write_text("E-mail\nlead1@acme.example\nlead2@acme.example\n", encoding="utf-8")
    again = as_json(
        cli, "leads", "enroll", "--account", "acme", "--pipeline", "nurture", "--file", names
    )
    assert again["queued"] == [3] and again["already_enrolled"] == [2]

    before = dump(db)
    bad = tmp_path / "bad.csv"
    bad.write_text("Email\nlead0@acme.example\nstranger@acme.example\n", encoding="utf-8")
    refused = cli("leads", "enroll", "--account", "acme", "--pipeline", "nurture", "--file", bad)
    assert refused.exit_code == 1 and "bad.csv:3: no lead has" in refused.stderr
    assert dump(db) == before
    assert cli("leads", "enroll", "--account", "acme", "--pipeline", "nurture").exit_code == 2

    assert cli("tick", "--now", T0).exit_code == 0
    assert statuses(db)["awaiting_reply"] == 3


def test_stop_ends_a_failed_run_and_retry_refuses_stopped_or_do_not_contact_leads(
    cli, db, tmp_path
):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme", "--pipeline", "drip")
    assert cli("tick", "--now", T0).exit_code == 0
    (failed,) = rows(db, "SELECT id, lead_id FROM lead_stage_actions WHERE status = 'failed'")
    lead = failed["lead_id"]

    stopped = cli("leads", "stop", str(lead))
    assert stopped.exit_code == 0 and "drip" in stopped.stdout, stopped.output
    assert rows(db, "SELECT status FROM enrollments WHERE lead_id = ?", lead) == [
        {"status": "stopped"}
    ]
    assert rows(db, "SELECT status FROM leads WHERE id = ?", lead) == [{"status": "stopped"}]

    before = dump(db)
    refused = cli("retry", str(failed["id"]), "--now", DAY_LATER)
    assert refused.exit_code == 1
    assert f"its lead {lead} was stopped" in refused.stderr and "Traceback" not in refused.output
    result = as_json(cli, "retry", "--account", "acme", "--failed", "--now", DAY_LATER)
    assert result["retried"] == [] and result["refused"] == []
    assert [s["action_id"] for s in result["skipped"]] == [failed["id"]]
    text = cli("retry", "--account", "acme", "--failed", "--now", DAY_LATER)
    assert "skipped 1 action of stopped or do-not-contact leads" in text.stdout
    assert dump(db) == before


def test_retry_refuses_a_failed_action_of_a_do_not_contact_lead(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme", "--pipeline", "drip")
    assert cli("tick", "--now", T0).exit_code == 0
    (failed,) = rows(db, "SELECT id FROM lead_stage_actions WHERE status = 'failed'")
    dnc = tmp_path / "dnc.csv"
    dnc.write_text("Phone,Unsubscribed\n+12125550100,yes\n", encoding="utf-8")
    assert cli("leads", "import", dnc, "--account", "acme").exit_code == 0

    refused = cli("retry", str(failed["id"]), "--now", DAY_LATER)
    assert refused.exit_code == 1 and "do-not-contact" in refused.stderr
    result = as_json(cli, "retry", "--account", "acme", "--failed", "--now", DAY_LATER)
    assert result["retried"] == [] and len(result["skipped"]) == 1
    assert rows(db, "SELECT status FROM lead_stage_actions WHERE id = ?", failed["id"]) == [
        {"status": "failed"}
    ]


ENROLL = ("leads", "enroll", "--account", "acme", "--pipeline", "drip")


def test_leads_enroll_re_enroll_restarts_finished_runs_only(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme", "--pipeline", "drip")
    assert cli("tick", "--now", T0).exit_code == 0  # lead 4 (no email) fails
    assert cli("leads", "stop", "lead1@acme.example").exit_code == 0
    assert cli("tick", "--now", DAY_LATER).exit_code == 0  # leads 1 and 3 won
    assert cli("reply", "--account", "acme", "--email", "lead2@acme.example", "--body", "STOP")
    assert as_json(cli, "leads", "enroll", "--account", "acme", "--pipeline", "nurture",
                   "--lead", "1")["queued"] == [1]  # fmt: skip
    state = {r["lead_id"]: r["status"] for r in rows(
        db, "SELECT lead_id, e.status FROM enrollments e JOIN pipelines p"
        " ON p.id = e.pipeline_id WHERE p.key = 'drip'")}  # fmt: skip
    assert state == {1: "won", 2: "stopped", 3: "won", 4: "failed"}
    everyone = ("--lead", "1", "--lead", "2", "--lead", "3", "--lead", "4")

    plain = as_json(cli, *ENROLL, *everyone)
    assert plain["queued"] == [] and plain["already_enrolled"] == [1, 2, 4]
    assert plain["do_not_contact"] == [3]

    result = as_json(cli, *ENROLL, *everyone, "--re-enroll")
    assert result == {
        "pipeline": "drip",
        "queued": [1],
        "re_enrolled": [1],
        "already_enrolled": [2, 4],  # stopped by hand; failed (not asked)
        "do_not_contact": [3],
    }
    text = cli(*ENROLL, "--lead", "4", "--re-enroll", "--include-failed")
    assert text.exit_code == 0, text.output
    assert "drip: 1 queued for enrollment (1 re-enrolled)" in text.stdout
    assert cli(*ENROLL, "--lead", "1", "--include-failed").exit_code == 2
    again = as_json(cli, *ENROLL, "--lead", "1", "--re-enroll")  # queued: not restarted twice
    assert again["queued"] == [] and again["already_enrolled"] == [1]

    drip = rows(db, "SELECT e.lead_id, e.status, e.entry_stage_id, s.key FROM enrollments e"
                " JOIN pipelines p ON p.id = e.pipeline_id JOIN pipeline_stages s"
                " ON s.id = e.entry_stage_id WHERE p.key = 'drip' AND e.status = 'queued'"
                " ORDER BY e.lead_id")  # fmt: skip
    assert [(r["lead_id"], r["key"]) for r in drip] == [(1, "intro"), (4, "intro")]
    # Lead 1's latest enrollment is nurture's: its status shows that one, not drip's restart.
    assert rows(db, "SELECT status FROM leads WHERE id = 1") == [{"status": "queued"}]
    assert cli("tick", "--now", "2027-03-03T14:00:00Z").exit_code == 0
    assert rows(db, "SELECT count(*) AS n FROM lead_stages ls JOIN pipeline_stages s"
                " ON s.id = ls.pipeline_stage_id WHERE ls.lead_id = 1 AND s.key = 'intro'"
                " AND ls.exited_at IS NULL") == [{"n": 1}]  # fmt: skip


OUTCOME_FIRST = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - {key: lost, outcome: lost}
      - key: intro
        actions:
          - wait_for_reply: {timeout: 2d}
"""


def test_leads_enroll_without_stage_never_starts_in_an_outcome_stage(cli, db, tmp_path):
    setup(cli, tmp_path, OUTCOME_FIRST, {("acme", "drip"): 1})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme")
    assert as_json(cli, *ENROLL, "--lead", "2")["queued"] == [2]
    # The entry stage is stored, as the import stores it: the first that is not an outcome.
    entries = rows(db, "SELECT e.lead_id, s.key FROM enrollments e LEFT JOIN pipeline_stages s"
                   " ON s.id = e.entry_stage_id ORDER BY e.lead_id")  # fmt: skip
    assert entries == [{"lead_id": 1, "key": "intro"}, {"lead_id": 2, "key": "intro"}]
    assert cli("tick", "--now", T0).exit_code == 0
    assert rows(db, "SELECT lead_id, status FROM enrollments ORDER BY lead_id") == [
        {"lead_id": 1, "status": "active"},
        {"lead_id": 2, "status": "active"},
    ]


CONTINUE = """\
  - key: drip
    account: acme
    name: Drip
    on_failure: continue
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - move: won
      - {key: won, outcome: won}
"""


def test_retry_of_an_action_the_lead_went_on_from_names_the_re_enroll_command(cli, db, tmp_path):
    setup(cli, tmp_path, CONTINUE, {("acme", "drip"): 0})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme", "--pipeline", "drip")
    assert cli("tick", "--now", T0).exit_code == 0
    (failed,) = rows(db, "SELECT id, lead_id FROM lead_stage_actions WHERE status = 'failed'")
    assert rows(db, "SELECT status FROM enrollments") == [{"status": "won"}]
    refused = cli("retry", str(failed["id"]))
    assert refused.exit_code == 1
    command = f"pipectl leads enroll --account acme --pipeline drip --lead {failed['lead_id']}"
    assert f"{command} --re-enroll" in refused.stderr
    assert cli(*ENROLL, "--lead", str(failed["lead_id"]), "--re-enroll").exit_code == 0
    assert rows(db, "SELECT status FROM enrollments") == [{"status": "queued"}]


def test_an_opt_out_also_stops_a_failed_run(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    cli("leads", "import", write_no_email(tmp_path), "--account", "acme", "--pipeline", "drip")
    assert cli("tick", "--now", T0).exit_code == 0
    (failed,) = rows(db, "SELECT id, lead_id FROM lead_stage_actions WHERE status = 'failed'")
    stop = cli("reply", "--account", "acme", "--phone", "+12125550100", "--body", "STOP")
    assert stop.exit_code == 0 and "stopped drip" in stop.stdout, stop.output
    assert rows(db, "SELECT status, do_not_contact FROM leads WHERE id = ?", failed["lead_id"]) == [
        {"status": "stopped", "do_not_contact": 1}
    ]
    assert cli("retry", str(failed["id"])).exit_code == 1


# --- what the output says ---------------------------------------------------------------------


def test_counts_of_one_read_in_the_singular(cli, db, tmp_path):
    with smtp_server() as (server, recorder):
        setup(cli, tmp_path, DRIP, {("acme", "drip"): 1}, acme_extra=smtp_channel(server.port))
        recorder.replies["lead0@acme.example"] = "550 5.1.1 No such user"
        assert cli("tick", "--now", T0).exit_code == 0
    (row,) = rows(db, "SELECT id FROM lead_stage_actions WHERE status = 'failed'")
    result = cli("retry", "--account", "acme", "--failed", "--now", T0)
    assert result.exit_code == 0, result.output
    assert f"retried 1 action ({row['id']}); the next tick runs them" in result.stdout
    status = cli("status", "--now", "2027-03-01T14:10:00Z")
    assert "1 action overdue (due more than 2 minutes ago" in status.stdout
    assert "acme (Acme Roofing): 1 lead\n" in status.stdout
    dry = cli("tick", "--dry-run", "--now", T0)
    assert "would admit 0, send 1, do 0 internal actions" in dry.stdout


def test_leads_show_names_each_sends_message_id_and_provider_id(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 1})
    assert cli("tick", "--now", T0).exit_code == 0
    (sent,) = rows(db, "SELECT message_id, provider_id FROM deliveries")
    assert sent["message_id"].startswith("<pipectl.") and sent["provider_id"]
    text = cli("leads", "show", "lead0@acme.example")
    assert (
        f"sent to lead0@acme.example, Message-ID {sent['message_id']},"
        f" provider id {sent['provider_id']}"
    ) in text.stdout


def test_status_and_leads_list_agree_on_leads_in_no_pipeline(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 2})
    others = tmp_path / "others.csv"
    others.write_text("Email\nsolo@acme.example\n")
    assert cli("leads", "import", others, "--account", "acme").exit_code == 0
    state = as_json(cli, "status")["accounts"][0]["leads_by_state"]
    assert state == {"not_enrolled": 1, "queued": 2}
    listed = as_json(cli, "leads", "list", "--status", "not_enrolled")
    assert [lead["email"] for lead in listed] == ["solo@acme.example"]
    listed = as_json(cli, "leads", "list", "--status", "not_enrolled", "--pipeline", "nurture")
    assert len(listed) == 3  # none of them is in nurture
    bad = cli("leads", "list", "--status", "asleep")
    assert bad.exit_code == 2
    assert "failed, not_enrolled" in " ".join(bad.stderr.replace("│", " ").split())


def test_leads_list_names_no_stage_for_a_run_stopped_while_queued(cli, db, tmp_path):
    setup(cli, tmp_path, DRIP, {("acme", "drip"): 3})  # no tick: all three still queued
    assert cli("leads", "stop", "lead0@acme.example").exit_code == 0
    opted = cli("reply", "--account", "acme", "--email", "lead1@acme.example", "--body", "STOP")
    assert opted.exit_code == 0, opted.output
    assert rows(db, "SELECT lead_id, status FROM enrollments ORDER BY lead_id") == [
        {"lead_id": 1, "status": "stopped"},
        {"lead_id": 2, "status": "stopped"},
        {"lead_id": 3, "status": "queued"},
    ]

    listed = cli("leads", "list")
    assert listed.exit_code == 0, listed.output
    lines = {line.split("\t")[2]: line.split("\t")[-1] for line in listed.stdout.splitlines()}
    assert lines["lead0@acme.example"] == "drip (stopped)"
    assert lines["lead1@acme.example"] == "drip (stopped)"
    assert lines["lead2@acme.example"] == "drip/intro (queued)"
    assert "None" not in listed.stdout
    stages = [e["stage"] for lead in as_json(cli, "leads", "list") for e in lead["enrollments"]]
    assert stages == [None, None, "intro"]
