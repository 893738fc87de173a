"""`senders:` in the YAML: every problem as file:line, and what `apply` stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import dump, rows

HEAD = """\
version: 1
accounts:
  - key: acme
    channels:
      email:
        transport: smtp
        host: smtp.acme.example
        from: "Acme <sales@acme.example>"
        inbox: {host: imap.acme.example, username: sales, password: "${IMAP_PASSWORD}"}
        senders:
"""
TAIL = """\
pipelines:
  - key: outreach
    account: acme
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - email: {thread: true, body: "Again"}
"""
GOOD = """\
          - from: "Ann Lee <Ann@Acme.example>"
            username: ann
            password: ${ANN_PASSWORD}
            daily_limit: 300
            warmup: {start: 20, step: 10}
            inbox: {username: ann, password: "${ANN_PASSWORD}"}
          - from: "Bo Chen <bo@acme.example>"
            host: smtp.other.example
            daily_limit: 100
"""


def write(tmp_path: Path, senders: str, tail: str = TAIL) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(HEAD + senders + tail)
    return path


def test_every_sender_problem_is_named_with_its_line_and_nothing_is_applied(cli, db, tmp_path):
    bad = """\
          - from: "Ann <ann@acme.example>"
            daily_limit: 0
            colour: blue
          - from: "Ann again <ANN@acme.example>"
            daily_limit: 5
            warmup: {start: 5}
          - from: ${BO_FROM}
            daily_limit: 5
          - from: "Cy <cy@acme.example>"
            warmup: {start: 5, step: 1}
          - from: "Di <di@acme.example>"
            daily_limit: 5
            password: plain-text
"""
    path = write(tmp_path, bad, TAIL.replace("{thread: true, ", "{thread: yes please, "))
    assert cli("init").exit_code == 0
    before = dump(db)
    for command in ("validate", "apply"):
        result = cli(command, path)
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert lines[:9] == [
            f"{path}:12: account 'acme' channels.email.senders[1].daily_limit must be a whole"
            " number greater than 0, not '0'",
            f"{path}:13: unknown key 'colour' in account 'acme' channels.email.senders[1];"
            " allowed: transport, host, port, security, username, password, timeout, from,"
            " reply_to, list_unsubscribe, list_unsubscribe_post, inbox, daily_limit, warmup",
            f"{path}:14: account 'acme' channels.email.senders[2]: sender ann@acme.example is"
            " listed twice (first at line 11)",
            f"{path}:16: account 'acme' channels.email.senders[2].warmup needs step"
            " (e.g. start: 20, step: 10)",
            f"{path}:17: account 'acme' channels.email.senders[3].from names the sender: write"
            " the address out, not '${BO_FROM}'",
            f"{path}:19: account 'acme' channels.email.senders[4] needs daily_limit"
            " (sends per day, e.g. 300)",
            f"{path}:23: account 'acme' channels.email.senders[5].password must be an environment"
            " reference like ${SMTP_PASSWORD}: secrets are read from the environment at send"
            " time, never written in the YAML",
            f"{path}:31: pipeline 'outreach' stage 'intro' email thread must be true or false,"
            " not 'yes please'",
            f"{path}:31: pipeline 'outreach' stage 'intro' email needs a subject"
            " (or thread: true to reply)",
        ]
    assert dump(db) == before


def test_a_senders_inbox_is_completed_by_the_channels_and_checked(cli, tmp_path):
    no_inbox = HEAD.replace(
        '        inbox: {host: imap.acme.example, username: sales, password: "${IMAP_PASSWORD}"}\n',
        "",
    )
    path = tmp_path / "pipelines.yaml"
    path.write_text(no_inbox + GOOD + TAIL)
    result = cli("validate", path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"{path}:10: account 'acme' sender ann@acme.example: inbox needs host"
        " (under the sender's inbox or the channel's)"
    )


def test_apply_stores_senders_with_placeholders_and_reports_changes(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("ANN_PASSWORD", "ann-s3cret")
    path = write(tmp_path, GOOD)
    first = cli("apply", path)
    assert first.exit_code == 0, first.output
    assert "+ sender acme/ann@acme.example: created" in first.stdout
    stored = rows(
        db,
        "SELECT address, sender, settings, daily_limit, warmup_start, warmup_step, first_sent_on,"
        " removed_at FROM senders ORDER BY id",
    )
    assert [json.loads(s.pop("settings")) for s in stored] == [
        {"from": "Ann Lee <Ann@Acme.example>", "username": "ann", "password": "${ANN_PASSWORD}"},
        {"from": "Bo Chen <bo@acme.example>", "host": "smtp.other.example"},
    ]
    assert stored == [
        {"address": "ann@acme.example", "sender": "Ann Lee <Ann@Acme.example>",
         "daily_limit": 300, "warmup_start": 20, "warmup_step": 10, "first_sent_on": None,
         "removed_at": None},
        {"address": "bo@acme.example", "sender": "Bo Chen <bo@acme.example>", "daily_limit": 100,
         "warmup_start": None, "warmup_step": None, "first_sent_on": None, "removed_at": None},
    ]  # fmt: skip
    assert "ann-s3cret" not in dump(db)
    again = cli("apply", path)
    assert "nothing changed" in again.stdout
    fewer = cli("apply", write(tmp_path, GOOD.replace("daily_limit: 300", "daily_limit: 250")))
    assert "~ sender acme/ann@acme.example: changed (daily_limit)" in fewer.stdout


def test_top_level_senders_are_every_accounts_unless_it_lists_its_own(tmp_path):
    from pipectl.config import load_config

    text = f"""\
version: 1
channels:
  email:
    transport: smtp
    host: smtp.acme.example
    senders:
      - {{from: "Ann <ann@acme.example>", daily_limit: 300, warmup: {{start: 20, step: 10}}}}
accounts:
  - key: acme
  - key: beta
    channels:
      email:
        senders: [{{from: "Bo <bo@beta.example>", daily_limit: 50}}]
{TAIL}"""
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    acme, beta = load_config(path).accounts
    assert acme.channels["email"]["senders"] == [
        {"from": "Ann <ann@acme.example>", "daily_limit": 300, "warmup": {"start": 20, "step": 10}}
    ]
    assert beta.channels["email"]["senders"] == [
        {"from": "Bo <bo@beta.example>", "daily_limit": 50}
    ]
    assert beta.channels["email"]["host"] == "smtp.acme.example"


@pytest.mark.parametrize("limit", ["-1", "1.5", "many", "[1]"])
def test_daily_limit_must_be_a_whole_number(cli, tmp_path, limit):
    path = write(tmp_path, GOOD.replace("daily_limit: 100", f"daily_limit: {limit}"))
    result = cli("validate", path)
    assert result.exit_code == 1
    assert f"{path}:19: account 'acme' channels.email.senders[2].daily_limit must be a whole" in (
        result.stderr
    )
