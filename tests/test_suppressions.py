"""Suppressed addresses are never sent to again, and the list is managed from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from .channel_servers import SmtpRecorder
from .conftest import dump, rows
from .scenario import T0, serve, smtp_channel, write_yaml

FAILING = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        on_failure: phone
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - move: won
      - key: phone
        actions:
          - wait: 1d
      - {key: won, outcome: won}
"""

LEADS = "Email,First Name\nann@example.com,Ann\nbob@example.com,Bob\n"


def prepare(cli, tmp_path: Path, port: int) -> None:
    result = cli("apply", write_yaml(tmp_path, FAILING, acme_extra=smtp_channel(port)))
    assert result.exit_code == 0, result.output
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    result = cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip")
    assert result.exit_code == 0, result.output


def test_a_suppressed_address_fails_at_once_with_nothing_on_the_wire(cli, tmp_path, db):
    recorder = SmtpRecorder()
    server = serve(recorder)
    try:
        prepare(cli, tmp_path, server.port)
        result = cli("suppressions", "add", "Ann@Example.com", "--account", "acme")
        assert result.exit_code == 0, result.output
        assert "ann@example.com (email): suppressed in acme" in result.stdout

        dry = cli("tick", "--now", T0, "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "would fail email to ann@example.com: suppressed: ann@example.com" in dry.stdout
        assert "would send email to bob@example.com" in dry.stdout
        result = cli("tick", "--now", T0, "--no-sync", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        # Ann's send counts as claimed and failed, never against what was done: Bob's email
        # and his move to won are the tick's two done actions.
        assert (summary["claimed"], summary["done"], summary["failed"]) == (3, 2, 1)
    finally:
        server.stop()
    assert [r.rcpt_tos for r in recorder.received] == [["bob@example.com"]]
    [ann] = rows(
        db,
        "SELECT a.status, a.last_error, a.attempts FROM lead_stage_actions a"
        " JOIN leads l ON l.id = a.lead_id WHERE l.email = 'ann@example.com' AND a.type = 'email'",
    )
    assert ann["status"] == "failed" and ann["attempts"] == 1
    assert "suppressed: ann@example.com" in ann["last_error"] and "manual" in ann["last_error"]
    # The stage's on_failure follows, as for any permanent error.
    assert rows(
        db,
        "SELECT s.key FROM lead_stages ls JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
        " JOIN leads l ON l.id = ls.lead_id WHERE l.email = 'ann@example.com'"
        " AND ls.exited_at IS NULL",
    ) == [{"key": "phone"}]
    assert rows(db, "SELECT recipient FROM deliveries") == [{"recipient": "bob@example.com"}]


def test_suppressions_add_list_remove(cli, tmp_path, db):
    assert cli("apply", write_yaml(tmp_path, FAILING)).exit_code == 0
    assert cli("suppressions", "add", "(212) 555-0123", "--account", "acme").exit_code == 0
    result = cli(
        "suppressions", "add", "x@example.com", "--account", "acme", "--reason", "asked by phone"
    )
    assert result.exit_code == 0, result.output
    again = cli("suppressions", "add", "X@example.com", "--account", "acme")
    assert again.exit_code == 0 and "already suppressed" in again.stdout

    listed = json.loads(cli("suppressions", "list", "--json").stdout)
    assert {(s["channel"], s["address"], s["reason"], s["detail"]) for s in listed} == {
        ("sms", "+12125550123", "manual", None),
        ("email", "x@example.com", "manual", "asked by phone"),
    }
    text = cli("suppressions", "list", "--account", "acme")
    assert "+12125550123" in text.stdout and "x@example.com" in text.stdout

    result = cli("suppressions", "remove", "x@EXAMPLE.com", "--account", "acme")
    assert result.exit_code == 0 and "no longer suppressed" in result.stdout
    assert [r["address"] for r in rows(db, "SELECT address FROM suppressions")] == ["+12125550123"]
    missing = cli("suppressions", "remove", "x@example.com", "--account", "acme")
    assert missing.exit_code == 1 and "is not suppressed" in missing.stderr


def test_a_bad_address_is_refused_and_changes_nothing(cli, tmp_path, db):
    assert cli("apply", write_yaml(tmp_path, FAILING)).exit_code == 0
    before = dump(db)
    result = cli("suppressions", "add", "not a number", "--account", "acme")
    assert result.exit_code == 1
    assert "invalid phone" in result.stderr and "Traceback" not in result.output
    assert dump(db) == before
    unknown = cli("suppressions", "add", "a@b.example", "--account", "nope")
    assert unknown.exit_code == 1 and "no account 'nope'" in unknown.stderr


def test_import_a_providers_export_maps_its_reasons(cli, tmp_path, db):
    assert cli("apply", write_yaml(tmp_path, FAILING)).exit_code == 0
    export = tmp_path / "suppressed.csv"
    export.write_text(
        "\ufeffEmail Address,Reason\r\n"
        "gone@example.com,Hard bounce\r\n"
        "left@example.com,Unsubscribed\r\n"
        "angry@example.com,Spam report\r\n"
        "other@example.com,\r\n",
        encoding="utf-8",
    )
    result = cli("suppressions", "import", export, "--account", "acme")
    assert result.exit_code == 0, result.output
    assert "4 addresses: 4 suppressed" in result.stdout
    assert {
        r["address"]: (r["reason"], r["detail"])
        for r in rows(db, "SELECT address, reason, detail FROM suppressions")
    } == {
        "gone@example.com": ("bounce", "Hard bounce"),
        "left@example.com": ("opt_out", "Unsubscribed"),
        "angry@example.com": ("complaint", "Spam report"),
        "other@example.com": ("manual", None),
    }


def test_import_summary_of_one_address_reads_in_the_singular(cli, tmp_path, db):
    assert cli("apply", write_yaml(tmp_path, FAILING)).exit_code == 0
    export = tmp_path / "one.csv"
    export.write_text("Email\ngone@example.com\n", encoding="utf-8")
    result = cli("suppressions", "import", export, "--account", "acme")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{export}: 1 address: 1 suppressed, 0 already suppressed\n"
    again = cli("suppressions", "import", export, "--account", "acme")
    assert again.stdout == f"{export}: 1 address: 0 suppressed, 1 already suppressed\n"
    assert rows(db, "SELECT address FROM suppressions") == [{"address": "gone@example.com"}]


def test_import_with_a_bad_row_names_it_and_imports_nothing(cli, tmp_path, db):
    assert cli("apply", write_yaml(tmp_path, FAILING)).exit_code == 0
    export = tmp_path / "numbers.csv"
    export.write_text("Phone,Reason\n+12125550123,STOP\n555-CALL-NOW-PLEASE-X,STOP\n")
    before = dump(db)
    result = cli("suppressions", "import", export, "--account", "acme")
    assert result.exit_code == 1
    assert f"{export}:3:" in result.stderr and "555-CALL-NOW-PLEASE-X" in result.stderr
    assert "nothing was imported" in result.stderr and "Traceback" not in result.output
    assert dump(db) == before
    no_column = tmp_path / "leads.csv"
    no_column.write_text("Name,Company\nAnn,Acme\n")
    result = cli("suppressions", "import", no_column, "--account", "acme")
    assert result.exit_code == 1 and "no email or phone column" in result.stderr
