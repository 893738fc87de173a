"""Replies steer leads: a wait for a reply ends on a reply or at its timeout; STOP ends all."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import dump, rows
from .scenario import T0, outbox, summary, write_yaml

NURTURE = """\
  - key: nurture
    account: acme
    name: Nurture
    stages:
      - key: inquired
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Interested?"}
          - wait_for_reply: {timeout: 2d, on_reply: responded, on_timeout: follow-up}
      - key: follow-up
        actions:
          - sms: "Did you see our email, {{ lead.first_name }}?"
          - wait: 1d
          - move: lost
      - key: responded
        actions:
          - email: {subject: "Next steps", body: "Glad to hear from you"}
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
"""

# No on_reply anywhere: a reply completes the wait and the next action follows.
PLAIN_WAIT = """\
  - key: plain
    account: acme
    name: Plain
    stages:
      - key: intro
        actions:
          - email: {subject: "Hello", body: "Hello"}
          - wait_for_reply: {timeout: 1d, on_timeout: lost}
          - email: {subject: "Thanks for answering", body: "Thanks"}
      - {key: lost, outcome: lost}
"""

# A pipeline-level on_reply: a reply at any point moves the lead to `responded`.
DRIP = """\
  - key: drip
    account: acme
    name: Drip
    on_reply: responded
    stages:
      - key: intro
        actions:
          - email: {subject: "Intro", body: "Hello"}
          - sms: "Hi {{ lead.first_name }}"
          - wait: 1d
          - email: {subject: "Second", body: "Still there?"}
          - sms: "Still there?"
          - wait_for_reply: {timeout: 1d}
          - move: lost
      - key: responded
        actions:
          - email: {subject: "Responded", body: "Let's talk"}
      - {key: lost, outcome: lost}
"""

LEADS = """\
Email,First Name,Mobile Phone,Do Not Contact
ann@example.com,Ann,(212) 555-0123,no
bob@example.com,Bob,(201) 555-0199,
"""


def tick(cli, now: str) -> dict:
    result = cli("tick", "--now", now, "--json")
    assert result.exit_code == 0, result.output
    return summary(result)


def prepare(cli, tmp_path: Path, pipelines: str, csv: str = LEADS, *names: str) -> None:
    """Apply the pipelines and import the leads into each named pipeline."""
    assert cli("apply", write_yaml(tmp_path, pipelines)).exit_code == 0
    path = tmp_path / "leads.csv"
    path.write_text(csv, encoding="utf-8")
    for name in names:
        result = cli("leads", "import", path, "--account", "acme", "--pipeline", name)
        assert result.exit_code == 0, result.output


def subjects(tmp_path: Path) -> list[str]:
    """What went out, by action: each email's subject or each text's body."""
    found = []
    for message in outbox(tmp_path):
        text = message.read_text()
        if message.suffix == ".json":
            found.append(json.loads(text)["body"])
        else:
            found += [
                ln[len("Subject: ") :] for ln in text.splitlines() if ln.startswith("Subject: ")
            ]
    return found


def lead_id(db: Path, email: str) -> int:
    return rows(db, "SELECT id FROM leads WHERE email = ?", email)[0]["id"]


def stages_of(db: Path, email: str) -> list[tuple[str, str, str | None]]:
    return [
        (r["key"], r["entered_at"], r["exited_at"])
        for r in rows(
            db,
            "SELECT s.key, ls.entered_at, ls.exited_at FROM lead_stages ls"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " WHERE ls.lead_id = ? ORDER BY ls.id",
            lead_id(db, email),
        )
    ]


def actions_of(db: Path, email: str) -> list[tuple[str, str]]:
    return [
        (r["type"], r["status"])
        for r in rows(
            db,
            "SELECT type, status FROM lead_stage_actions WHERE lead_id = ? ORDER BY id",
            lead_id(db, email),
        )
    ]


def reply(cli, *args: str):
    return cli("reply", "--account", "acme", *args)


# --- wait_for_reply ---------------------------------------------------------------------


def test_reply_during_the_wait_moves_the_lead_and_the_next_stage_sends_at_the_next_tick(
    cli, db, tmp_path
):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    assert sorted(subjects(tmp_path)) == ["Hi Ann", "Hi Bob"]

    result = reply(
        cli, "--email", "ANN@Example.com", "--body", "Yes please", "--at", "2027-03-01T15:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "moved from inquired to responded" in result.stdout
    assert stages_of(db, "ann@example.com") == [
        ("inquired", T0, "2027-03-01T15:00:00Z"),
        ("responded", "2027-03-01T15:00:00Z", None),
    ]
    wait = rows(
        db,
        "SELECT status, performed_at FROM lead_stage_actions"
        " WHERE lead_id = ? AND type = 'wait_for_reply'",
        lead_id(db, "ann@example.com"),
    )
    assert wait == [{"status": "done", "performed_at": "2027-03-01T15:00:00Z"}]
    assert len(outbox(tmp_path)) == 2  # nothing is sent outside a tick

    tick(cli, "2027-03-01T15:01:00Z")
    assert subjects(tmp_path).count("Next steps") == 1
    tick(cli, "2027-03-03T14:00:00Z")  # Bob times out; Ann is not followed up
    tick(cli, "2027-03-05T14:00:00Z")
    assert len(outbox(tmp_path)) == 4
    assert rows(db, "SELECT email, status FROM leads ORDER BY id") == [
        {"email": "ann@example.com", "status": "idle"},
        {"email": "bob@example.com", "status": "lost"},
    ]
    recorded = rows(db, "SELECT lead_id, channel, body, received_at, opt_out, effect FROM replies")
    assert recorded == [
        {
            "lead_id": lead_id(db, "ann@example.com"),
            "channel": "email",
            "body": "Yes please",
            "received_at": "2027-03-01T15:00:00Z",
            "opt_out": 0,
            "effect": "nurture: moved from inquired to responded",
        }
    ]


def test_timeout_takes_on_timeout_at_its_time_and_not_before(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    (wait,) = rows(
        db,
        "SELECT a.status, a.perform_at, e.performed_at AS sent FROM lead_stage_actions a"
        " JOIN lead_stage_actions e ON e.lead_stage_id = a.lead_stage_id AND e.type = 'email'"
        " WHERE a.type = 'wait_for_reply' AND a.lead_id = ?",
        lead_id(db, "ann@example.com"),
    )
    assert wait["status"] == "awaiting_reply"
    from pipectl.durations import add_seconds

    assert wait["perform_at"] == add_seconds(wait["sent"], 2 * 86400)

    tick(cli, add_seconds(wait["perform_at"], -60))
    assert len(outbox(tmp_path)) == 2
    assert stages_of(db, "ann@example.com")[-1][0] == "inquired"

    tick(cli, wait["perform_at"])
    assert stages_of(db, "ann@example.com")[-1][:2] == ("follow-up", wait["perform_at"])
    assert subjects(tmp_path).count("Did you see our email, Ann?") == 1


def test_reply_without_on_reply_completes_the_wait_and_the_next_action_follows(cli, db, tmp_path):
    prepare(cli, tmp_path, PLAIN_WAIT, LEADS, "plain")
    tick(cli, T0)
    result = reply(
        cli, "--email", "bob@example.com", "--body", "ok", "--at", "2027-03-01T16:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "the next action follows" in result.stdout
    tick(cli, "2027-03-01T16:00:30Z")
    assert subjects(tmp_path).count("Thanks for answering") == 1
    assert actions_of(db, "bob@example.com") == [
        ("email", "done"),
        ("wait_for_reply", "done"),
        ("email", "done"),
    ]
    tick(cli, "2027-03-03T00:00:00Z")  # Ann timed out to lost; Bob stays where he is
    assert rows(db, "SELECT email, status FROM leads ORDER BY id") == [
        {"email": "ann@example.com", "status": "lost"},
        {"email": "bob@example.com", "status": "idle"},
    ]


def test_reply_after_the_timeout_moves_nothing(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    tick(cli, "2027-03-03T14:00:05Z")  # past the 2d timeout: both leads are in follow-up
    before = stages_of(db, "ann@example.com")
    assert before[-1][0] == "follow-up"

    result = reply(
        cli, "--email", "ann@example.com", "--body", "Sorry, late", "--at", "2027-03-03T15:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "no automation was waiting" in result.stdout
    assert stages_of(db, "ann@example.com") == before
    assert rows(db, "SELECT count(*) AS n FROM replies")[0]["n"] == 1

    tick(cli, "2027-03-04T14:00:10Z")  # the follow-up goes on to lost as if no reply came
    assert rows(db, "SELECT status FROM leads WHERE email = 'ann@example.com'") == [
        {"status": "lost"}
    ]
    assert "Next steps" not in subjects(tmp_path)


def test_late_reply_recorded_before_the_tick_expired_the_wait_still_times_out(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    # No tick ran since the timeout passed; the reply came a day after it.
    result = reply(
        cli, "--email", "ann@example.com", "--body", "hi", "--at", "2027-03-04T14:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "no automation was waiting" in result.stdout
    tick(cli, "2027-03-04T14:01:00Z")
    assert [s[0] for s in stages_of(db, "ann@example.com")] == ["inquired", "follow-up"]


def test_reply_after_the_lead_finished_is_recorded_and_changes_nothing(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    tick(cli, "2027-03-03T14:00:05Z")
    tick(cli, "2027-03-04T14:00:10Z")
    assert rows(db, "SELECT DISTINCT status FROM leads") == [{"status": "lost"}]
    before = dump(db)
    result = reply(
        cli, "--phone", "212-555-0123", "--body", "Call me", "--at", "2027-03-05T00:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT channel, body, opt_out FROM replies") == [
        {"channel": "sms", "body": "Call me", "opt_out": 0}
    ]
    after = dump(db)
    counted = ('INTO "replies"', 'INTO "report_counts"', 'INTO "report_firsts"')  # the report's
    assert [ln for ln in after.splitlines() if not any(c in ln for c in counted)] == [
        ln for ln in before.splitlines() if 'INTO "report_' not in ln
    ]


# --- the pipeline's on_reply -------------------------------------------------------------


def test_pipeline_on_reply_moves_a_lead_that_replies_at_any_point(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP, LEADS, "drip")
    tick(cli, T0)
    assert len(outbox(tmp_path)) == 4  # intro email and text to both

    result = reply(
        cli, "--phone", "+12125550123", "--body", "who is this?", "--at", "2027-03-01T18:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "drip: moved from intro to responded" in result.stdout
    assert actions_of(db, "ann@example.com")[:7] == [
        ("email", "done"),
        ("sms", "done"),
        ("wait", "skipped"),
        ("email", "skipped"),
        ("sms", "skipped"),
        ("wait_for_reply", "skipped"),
        ("move", "skipped"),
    ]
    tick(cli, "2027-03-01T18:00:30Z")
    assert subjects(tmp_path).count("Responded") == 1

    # Already in `responded`: another reply is recorded and moves nothing.
    again = reply(
        cli, "--email", "ann@example.com", "--body", "hello?", "--at", "2027-03-01T19:00:00Z"
    )
    assert again.exit_code == 0
    assert [s[0] for s in stages_of(db, "ann@example.com")] == ["intro", "responded"]

    tick(cli, "2027-03-02T14:00:05Z")  # Bob gets his second email and text; Ann does not
    sent = subjects(tmp_path)
    assert sent.count("Second") == 1 and sent.count("Responded") == 1


def test_pipeline_on_reply_applies_to_a_wait_for_reply_without_its_own(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP, LEADS, "drip")
    tick(cli, T0)
    tick(cli, "2027-03-02T14:00:05Z")  # second email and text, then the wait for a reply
    assert actions_of(db, "bob@example.com")[5] == ("wait_for_reply", "awaiting_reply")
    result = reply(
        cli, "--email", "bob@example.com", "--body", "yes", "--at", "2027-03-02T20:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert actions_of(db, "bob@example.com")[5:] == [
        ("wait_for_reply", "done"),
        ("move", "skipped"),
        ("email", "pending"),
    ]
    assert stages_of(db, "bob@example.com")[-1] == ("responded", "2027-03-02T20:00:00Z", None)


# --- opt-outs and stopping ---------------------------------------------------------------


def test_stop_by_sms_stops_every_later_email_and_text_in_every_pipeline(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP + PLAIN_WAIT, LEADS, "drip", "plain")
    tick(cli, T0)
    ann = lead_id(db, "ann@example.com")
    sent_to_ann = rows(db, "SELECT count(*) AS n FROM deliveries WHERE lead_id = ?", ann)[0]["n"]
    assert sent_to_ann == 3  # drip's email and text, plain's email

    result = reply(
        cli, "--phone", "(212) 555-0123", "--body", "  Stop! ", "--at", "2027-03-01T15:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "opt-out" in result.stdout and "stopped drip, plain" in result.stdout
    assert rows(db, "SELECT do_not_contact, status FROM leads WHERE id = ?", ann) == [
        {"do_not_contact": 1, "status": "stopped"}
    ]
    assert rows(db, "SELECT status FROM enrollments WHERE lead_id = ?", ann) == [
        {"status": "stopped"},
        {"status": "stopped"},
    ]
    open_rows = rows(
        db,
        "SELECT count(*) AS n FROM lead_stage_actions WHERE lead_id = ?"
        " AND status NOT IN ('done', 'skipped')",
        ann,
    )
    assert open_rows == [{"n": 0}]
    assert rows(db, "SELECT opt_out, channel FROM replies") == [{"opt_out": 1, "channel": "sms"}]

    for day in ("2027-03-02T14:00:05Z", "2027-03-03T14:00:10Z", "2027-03-04T14:00:15Z"):
        tick(cli, day)
    assert rows(db, "SELECT count(*) AS n FROM deliveries WHERE lead_id = ?", ann)[0]["n"] == 3
    bob = lead_id(db, "bob@example.com")
    assert rows(db, "SELECT count(*) AS n FROM deliveries WHERE lead_id = ?", bob)[0]["n"] > 3


def test_opt_out_keywords_in_any_case_and_what_is_not_one(cli, db, tmp_path):
    from pipectl.store.replies_sql import is_opt_out

    for word in ("STOP", "stopall", "Unsubscribe", " cancel. ", "END", "quit!", "'Stop'"):
        assert is_opt_out(word), word
    for text in ("please stop emailing", "STOP ALL", "", "stopped", "don't stop"):
        assert not is_opt_out(text), text


def test_do_not_contact_lead_from_csv_is_never_contacted(cli, db, tmp_path):
    csv = LEADS.replace("(212) 555-0123,no", "(212) 555-0123,yes")
    prepare(cli, tmp_path, DRIP, csv, "drip")
    for now in (T0, "2027-03-02T14:00:05Z", "2027-03-03T14:00:10Z"):
        tick(cli, now)
    assert rows(db, "SELECT do_not_contact FROM leads WHERE email = 'ann@example.com'") == [
        {"do_not_contact": 1}
    ]
    assert rows(db, "SELECT DISTINCT recipient FROM deliveries ORDER BY recipient") == [
        {"recipient": "+12015550199"},
        {"recipient": "bob@example.com"},
    ]
    assert all("ann" not in p.read_text().lower() for p in outbox(tmp_path))


def test_do_not_contact_set_after_enrollment_is_checked_before_the_next_send(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP, LEADS, "drip")
    tick(cli, T0)
    path = tmp_path / "unsubscribed.csv"
    path.write_text("email,unsubscribed\nann@example.com,true\n", encoding="utf-8")
    assert cli("leads", "import", path, "--account", "acme").exit_code == 0
    tick(cli, "2027-03-02T14:00:05Z")
    ann = lead_id(db, "ann@example.com")
    assert rows(db, "SELECT count(*) AS n FROM deliveries WHERE lead_id = ?", ann)[0]["n"] == 2
    assert rows(db, "SELECT status FROM enrollments WHERE lead_id = ?", ann) == [
        {"status": "stopped"}
    ]
    assert ("email", "skipped") in actions_of(db, "ann@example.com")


def test_leads_stop_by_email_phone_or_id(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP + PLAIN_WAIT, LEADS, "drip", "plain")
    tick(cli, T0)
    result = cli("leads", "stop", "ANN@example.com")
    assert result.exit_code == 0, result.output
    ann = lead_id(db, "ann@example.com")
    assert f"stopped lead {ann} (ann@example.com): drip, plain" in result.stdout
    assert rows(db, "SELECT status, do_not_contact FROM leads WHERE id = ?", ann) == [
        {"status": "stopped", "do_not_contact": 0}
    ]
    assert {
        r["status"] for r in rows(db, "SELECT status FROM enrollments WHERE lead_id = ?", ann)
    } == {"stopped"}
    assert "pending" not in {s for _, s in actions_of(db, "ann@example.com")}

    bob = lead_id(db, "bob@example.com")
    by_phone = cli("leads", "stop", "201 555 0199", "--json")
    assert by_phone.exit_code == 0, by_phone.output
    assert summary(by_phone)["lead_id"] == bob
    again = cli("leads", "stop", str(bob))
    assert again.exit_code == 0 and "no running automation" in again.stdout

    tick(cli, "2027-03-02T14:00:05Z")
    tick(cli, "2027-03-03T14:00:05Z")
    assert len(outbox(tmp_path)) == 6  # only what went out at T0


def test_leads_stop_unknown_lead_exits_1_and_changes_nothing(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP, LEADS, "drip")
    before = dump(db)
    result = cli("leads", "stop", "nobody@example.com")
    assert result.exit_code == 1
    assert "no lead 'nobody@example.com'" in result.stderr
    assert "Traceback" not in result.output
    assert dump(db) == before


def test_unknown_sender_exits_1_with_a_clear_message_and_changes_nothing(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    before = dump(db)
    result = reply(cli, "--email", "stranger@example.com", "--body", "hi")
    assert result.exit_code == 1
    assert (
        "no lead of account 'acme' has email 'stranger@example.com'; the reply was not recorded"
        in result.stderr
    )
    bad = [
        reply(cli, "--phone", "12", "--body", "hi"),
        cli("reply", "--account", "nope", "--email", "ann@example.com"),
    ]
    assert [r.exit_code for r in bad] == [1] * 2
    messages = [r.stderr for r in bad]
    assert "invalid phone '12'" in messages[0]
    assert "no account 'nope'" in messages[1]
    late = reply(cli, "--email", "ann@example.com", "--at", "yesterday")
    assert late.exit_code == 2 and "invalid time 'yesterday'" in late.stderr
    # Usage errors exit 2, naming the option.
    usage = [
        reply(cli, "--email", "ann@example.com", "--phone", "+12125550123"),
        reply(cli, "--body", "hi"),
        reply(cli, "--email", "ann@example.com", "--channel", "fax"),
    ]
    assert [r.exit_code for r in usage] == [2] * 3
    assert all("exactly one of --email or --phone" in r.stderr for r in usage[:2])
    assert "--channel" in usage[2].stderr and "'fax': use email or sms" in usage[2].stderr
    assert all("Traceback" not in r.output for r in bad + usage)
    assert dump(db) == before


# --- replies import ----------------------------------------------------------------------


def test_replies_import_records_matches_reports_unmatched_rows_and_applies_opt_outs(
    cli, db, tmp_path
):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    path = tmp_path / "replies.csv"
    path.write_text(
        "From Email,Phone Number,Channel,Message,Received At\r\n"
        'ann@example.com,,email,"Yes, tell me more",2027-03-01T16:00:00Z\r\n'
        "nobody@example.com,,email,hello,2027-03-01T16:05:00Z\r\n"
        ",(201) 555-0199,sms,STOP,2027-03-01T16:10:00Z\r\n",
        encoding="utf-8",
    )
    result = cli("replies", "import", path, "--account", "acme")
    assert result.exit_code == 0, result.output
    assert "3 replies: 2 matched (1 opt-out), 1 unmatched" in result.stdout
    assert f"{path}:3: unmatched: no lead has 'nobody@example.com'" in result.stdout
    recorded = rows(
        db,
        "SELECT l.email, r.channel, r.opt_out, r.received_at FROM replies r"
        " JOIN leads l ON l.id = r.lead_id ORDER BY r.id",
    )
    assert [tuple(r.values()) for r in recorded] == [
        ("ann@example.com", "email", 0, "2027-03-01T16:00:00Z"),
        ("bob@example.com", "sms", 1, "2027-03-01T16:10:00Z"),
    ]
    assert [s[0] for s in stages_of(db, "ann@example.com")] == ["inquired", "responded"]
    assert rows(db, "SELECT status, do_not_contact FROM leads WHERE email = 'bob@example.com'") == [
        {"status": "stopped", "do_not_contact": 1}
    ]


# One email and one text, each to a lead that did not exist when its address said STOP.
TEXTS = """\
  - key: texts
    account: acme
    name: Texts
    stages:
      - key: intro
        actions:
          - sms: "Hi {{ lead.first_name }}"
"""

# Each address that said STOP, as a lead of its own pipeline.
STRANGERS = {
    "nurture": "Email,First Name\nstranger@example.com,Sam\n",
    "texts": "First Name,Mobile Phone\nPat,(212) 555-0177\n",
}


def assert_strangers_are_never_sent_to(cli, db, tmp_path: Path) -> None:
    """The STOPs' senders become leads later; the tick sends them nothing: each send fails at
    once naming the opt-out suppression, as any suppressed send does."""
    sent = outbox(tmp_path)
    for pipeline, leads in STRANGERS.items():
        path = tmp_path / f"strangers-{pipeline}.csv"
        path.write_text(leads, encoding="utf-8")
        result = cli("leads", "import", path, "--account", "acme", "--pipeline", pipeline)
        assert result.exit_code == 0, result.output
    tick(cli, "2027-03-02T12:00:00Z")
    assert outbox(tmp_path) == sent
    failed = rows(
        db,
        "SELECT coalesce(l.email, l.phone) AS lead, a.type, a.status, a.last_error"
        " FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id"
        " WHERE l.first_name IN ('Sam', 'Pat') AND a.type IN ('email', 'sms') ORDER BY l.id",
    )
    assert [(r["lead"], r["type"], r["status"]) for r in failed] == [
        ("stranger@example.com", "email", "failed"),
        ("+12125550177", "sms", "failed"),
    ]
    assert (
        "suppressed: stranger@example.com is on the suppression list (opt_out"
        in (failed[0]["last_error"])
    )
    assert (
        "suppressed: +12125550177 is on the suppression list (opt_out" in (failed[1]["last_error"])
    )


def test_replies_import_of_a_stop_from_an_unknown_sender_suppresses_it_and_keeps_it_unmatched(
    cli, db, tmp_path
):
    prepare(cli, tmp_path, NURTURE + TEXTS, LEADS, "nurture")
    tick(cli, T0)
    path = tmp_path / "replies.csv"
    path.write_text(
        "From,Body,Received At,Channel\n"
        "Stranger@Example.com,STOP,2027-03-01T11:00:00Z,email\n"
        "(212) 555-0177,stop,2027-03-01T11:05:00Z,sms\n",
        encoding="utf-8",
    )
    result = cli("replies", "import", path, "--account", "acme")
    assert result.exit_code == 0, result.output
    assert (
        "2 replies: 0 matched (0 opt-outs), 2 unmatched (2 opt-outs: 2 senders suppressed)"
        in result.stdout
    )
    assert (
        f"{path}:2: unmatched: no lead has 'Stranger@Example.com';"
        " opt-out kept unmatched, stranger@example.com suppressed" in result.stdout
    )
    assert f"{path}:3: unmatched: no lead has '(212) 555-0177'; opt-out kept unmatched," in (
        result.stdout
    )
    assert rows(db, "SELECT channel, address, reason FROM suppressions ORDER BY id") == [
        {"channel": "email", "address": "stranger@example.com", "reason": "opt_out"},
        {"channel": "sms", "address": "+12125550177", "reason": "opt_out"},
    ]
    assert rows(
        db,
        "SELECT lead_id, channel, sender, kind, source, body FROM replies"
        " WHERE lead_id IS NULL ORDER BY id",
    ) == [
        {"lead_id": None, "channel": "email", "sender": "stranger@example.com",
         "kind": "opt_out", "source": "csv", "body": "STOP"},
        {"lead_id": None, "channel": "sms", "sender": "+12125550177",
         "kind": "opt_out", "source": "csv", "body": "stop"},
    ]  # fmt: skip
    listed = json.loads(cli("replies", "list", "--unmatched", "--json").stdout)
    assert sorted(r["sender"] for r in listed) == ["+12125550177", "stranger@example.com"]
    assert_strangers_are_never_sent_to(cli, db, tmp_path)


def test_reply_stop_from_an_unknown_sender_suppresses_it_and_keeps_it_unmatched(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE + TEXTS, LEADS, "nurture")
    tick(cli, T0)
    by_mail = reply(cli, "--email", "Stranger@Example.com", "--body", "STOP", "--at", T0)
    assert by_mail.exit_code == 0, by_mail.output
    assert (
        f"opt-out from stranger@example.com (no lead) at {T0}: unmatched: no send and no lead"
        " of the account; stranger@example.com suppressed" in by_mail.stdout
    )
    by_text = reply(cli, "--phone", "(212) 555-0177", "--body", "Stop.", "--json")
    assert by_text.exit_code == 0, by_text.output
    result = json.loads(by_text.stdout)
    assert (result["opt_out"], result["unmatched"], result["sender"]) == (
        True,
        True,
        "+12125550177",
    )
    assert result["replies"][0]["lead_id"] is None
    assert "+12125550177 suppressed" in result["replies"][0]["effect"]
    assert rows(db, "SELECT channel, address, reason FROM suppressions ORDER BY id") == [
        {"channel": "email", "address": "stranger@example.com", "reason": "opt_out"},
        {"channel": "sms", "address": "+12125550177", "reason": "opt_out"},
    ]
    assert rows(
        db, "SELECT lead_id, channel, sender, kind, source FROM replies ORDER BY id"
    ) == [
        {"lead_id": None, "channel": "email", "sender": "stranger@example.com",
         "kind": "opt_out", "source": "manual"},
        {"lead_id": None, "channel": "sms", "sender": "+12125550177",
         "kind": "opt_out", "source": "manual"},
    ]  # fmt: skip
    assert_strangers_are_never_sent_to(cli, db, tmp_path)


def test_replies_import_of_a_malformed_file_exits_1_and_imports_nothing(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    before = dump(db)
    bad_time = tmp_path / "bad-time.csv"
    bad_time.write_text(
        "email,body,received_at\nann@example.com,hi,2027-03-01T16:00:00Z\n"
        "bob@example.com,yo,last tuesday\n",
        encoding="utf-8",
    )
    no_sender = tmp_path / "no-sender.csv"
    no_sender.write_text("name,body\nAnn,hi\n", encoding="utf-8")
    results = {
        bad_time: f"{bad_time}:3: received_at: invalid time 'last tuesday'",
        no_sender: f"{no_sender}:1: no email or phone column in the header",
        tmp_path / "missing.csv": "cannot read the file",
    }
    for path, message in results.items():
        result = cli("replies", "import", path, "--account", "acme")
        assert result.exit_code == 1, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output
    assert dump(db) == before


def test_every_reply_command_has_help_with_an_example(cli):
    for command in (["reply"], ["replies", "import"], ["leads", "stop"]):
        result = cli(*command, "--help")
        assert result.exit_code == 0
        assert "Example: pipectl" in result.stdout


def test_replies_import_reads_a_from_column_as_email_or_phone_per_value(cli, db, tmp_path):
    prepare(cli, tmp_path, NURTURE, LEADS, "nurture")
    tick(cli, T0)
    path = tmp_path / "sms-export.csv"
    path.write_text(
        "From,Body,Received At\n"
        "+12015550199,STOP,2027-03-01T16:10:00Z\n"
        "ann@example.com,Tell me more,2027-03-01T16:00:00Z\n",
        encoding="utf-8",
    )
    result = cli("replies", "import", path, "--account", "acme")
    assert result.exit_code == 0, result.output
    assert "2 replies: 2 matched (1 opt-out), 0 unmatched" in result.stdout
    assert rows(db, "SELECT status, do_not_contact FROM leads WHERE email = 'bob@example.com'") == [
        {"status": "stopped", "do_not_contact": 1}
    ]
    recorded = rows(db, "SELECT l.email, r.channel FROM replies r JOIN leads l ON l.id = r.lead_id"
                    " ORDER BY r.received_at")  # fmt: skip
    assert [tuple(r.values()) for r in recorded] == [
        ("ann@example.com", "email"),
        ("bob@example.com", "sms"),
    ]


def test_replies_import_of_a_leads_file_is_refused_naming_the_body_column(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP, LEADS, "drip")
    tick(cli, T0)
    before = dump(db)
    path = tmp_path / "leads.csv"  # the leads file, given to `replies import` by mistake
    result = cli("replies", "import", path, "--account", "acme")
    assert result.exit_code == 1, result.output
    assert f"{path}:1: no body column in the header" in result.stderr
    assert "(body, message, text or reply)" in result.stderr
    assert "Traceback" not in result.output
    assert dump(db) == before
    assert rows(db, "SELECT count(*) AS n FROM replies") == [{"n": 0}]
    assert [s[0] for s in stages_of(db, "ann@example.com")] == ["intro"]


def test_reply_dated_before_the_run_began_is_recorded_and_steers_nothing(cli, db, tmp_path):
    prepare(cli, tmp_path, DRIP + NURTURE, LEADS, "drip", "nurture")
    tick(cli, T0)  # both runs began at T0, in 2027; the nurture lead waits for a reply
    assert ("wait_for_reply", "awaiting_reply") in actions_of(db, "ann@example.com")
    before = actions_of(db, "ann@example.com")

    result = reply(
        cli, "--email", "ann@example.com", "--body", "old news", "--at", "2026-01-01T00:00:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "drip: dated before this run began; not acted on" in result.stdout
    assert "nurture: dated before this run began; not acted on" in result.stdout
    assert actions_of(db, "ann@example.com") == before
    assert [s[0] for s in stages_of(db, "ann@example.com")] == ["intro", "inquired"]
    assert rows(db, "SELECT body, received_at FROM replies") == [
        {"body": "old news", "received_at": "2026-01-01T00:00:00Z"}
    ]
    shown = cli("leads", "show", "ann@example.com")
    assert "2026-01-01T00:00:00Z  reply by email: drip: dated before this run began" in (
        shown.stdout
    )

    # The same from an inbox export: recorded, nothing moves, nothing more is sent.
    path = tmp_path / "inbox.csv"
    path.write_text("From,Body,Date\nann@example.com,ancient,2025-06-01T09:00:00Z\n")
    assert cli("replies", "import", path, "--account", "acme").exit_code == 0
    assert actions_of(db, "ann@example.com") == before
    assert rows(db, "SELECT count(*) AS n FROM replies") == [{"n": 2}]

    # An opt-out is honoured whatever its date.
    stop = reply(
        cli, "--email", "bob@example.com", "--body", "STOP", "--at", "2026-01-01T00:00:00Z"
    )
    assert stop.exit_code == 0, stop.output
    assert rows(db, "SELECT do_not_contact FROM leads WHERE email = 'bob@example.com'") == [
        {"do_not_contact": 1}
    ]

    # A reply within the run still steers it.
    result = reply(
        cli, "--email", "ann@example.com", "--body", "yes", "--at", "2027-03-01T15:00:00Z"
    )
    assert "drip: moved from intro to responded" in result.stdout
    assert "nurture: moved from inquired to responded" in result.stdout


def test_a_reply_dated_before_the_lead_entered_its_stage_moves_it_from_then_on(cli, db, tmp_path):
    with_on_reply = NURTURE.replace("    name: Nurture\n", "    name: Nurture\n    on_reply: won\n")
    prepare(cli, tmp_path, with_on_reply, LEADS, "nurture")
    tick(cli, T0)
    tick(cli, "2027-03-03T14:00:05Z")  # no reply within 2 days: on to follow-up
    assert stages_of(db, "ann@example.com")[-1][0] == "follow-up"
    entered = stages_of(db, "ann@example.com")[-1][1]

    # Recorded late: it arrived during the run, before the lead entered follow-up.
    result = reply(
        cli, "--email", "ann@example.com", "--body", "yes", "--at", "2027-03-02T10:00:00Z"
    )
    assert "nurture: moved from follow-up to won" in result.stdout
    assert stages_of(db, "ann@example.com")[-2:] == [
        ("follow-up", entered, entered),  # never left before it was entered
        ("won", entered, None),
    ]
