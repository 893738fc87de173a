"""channels.email.inbox and channels.sms.inbound: checked by validate, stored as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import dump, rows

CONFIG = """\
version: 1
channels:
  email:
    transport: outbox
    list_unsubscribe: <mailto:unsubscribe@acme.test>
    inbox:
      host: imap.acme.test
      username: ${IMAP_USER}
      password: ${IMAP_PASSWORD}
  sms:
    transport: twilio
    account_sid: ${TWILIO_SID}
    auth_token: ${TWILIO_TOKEN}
    from: "+15550100000"
accounts:
  - key: acme
  - key: west
    channels:
      email:
        inbox:
          host: imap.west.test
          port: 143
          security: starttls
          username: west@west.test
          password: ${WEST_IMAP_PASSWORD}
          folders: [INBOX, Bounces]
      sms:
        inbound: false
pipelines:
  - key: p
    account: acme
    stages:
      - key: s
        actions:
          - wait: 1d
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    return path


def test_inbox_and_inbound_are_stored_per_account_as_references(cli, db, tmp_path):
    write(tmp_path, CONFIG)
    assert cli("validate", "pipelines.yaml").exit_code == 0
    result = cli("apply")
    assert result.exit_code == 0, result.output
    channels = {
        r["key"]: json.loads(r["channels"]) for r in rows(db, "SELECT key, channels FROM accounts")
    }
    assert channels["acme"]["email"]["inbox"] == {
        "host": "imap.acme.test",
        "username": "${IMAP_USER}",
        "password": "${IMAP_PASSWORD}",
    }
    assert "inbound" not in channels["acme"]["sms"]  # twilio reads inbound by default
    # An account's own inbox replaces the default one whole.
    assert channels["west"]["email"]["inbox"] == {
        "host": "imap.west.test",
        "port": 143,
        "security": "starttls",
        "username": "west@west.test",
        "password": "${WEST_IMAP_PASSWORD}",
        "folders": ["INBOX", "Bounces"],
    }
    assert channels["west"]["sms"]["inbound"] is False


INBOX = """      host: imap.acme.test
      username: ${IMAP_USER}
      password: ${IMAP_PASSWORD}
"""

# (id, replacement for INBOX's lines, line of the problem, part of the message)
BAD = [
    ("plain-password", INBOX.replace("${IMAP_PASSWORD}", "hunter2"), 9, "environment reference"),
    ("port-range", INBOX + "      port: 99999\n", 10, "port must be a port number"),
    ("port-text", INBOX + "      port: imaps\n", 10, "must be a number greater than 0"),
    ("security", INBOX + "      security: tls\n", 10, "security must be starttls | ssl | none"),
    ("unknown-key", INBOX + "      mailbox: INBOX\n", 10, "unknown key 'mailbox'"),
    ("sent-folder", INBOX + "      folders: [INBOX, Sent]\n", 10, "'Sent' holds the team's own"),
    (
        "gmail-all-mail",
        INBOX + '      folders: ["[Gmail]/All Mail"]\n',
        10,
        "'[Gmail]/All Mail' holds the team's own",
    ),
    ("folders-mapping", INBOX + "      folders: {a: b}\n", 10, "folders must be a list"),
    ("missing", "      host: imap.acme.test\n", 7, "inbox needs username, password"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_validate_names_file_and_line_and_changes_nothing(cli, db, tmp_path, case):
    _, replacement, line, message = case
    write(tmp_path, CONFIG)
    assert cli("apply").exit_code == 0
    before = dump(db)
    path = write(tmp_path, CONFIG.replace(INBOX, replacement, 1))
    for command in ("validate", "apply"):
        result = cli(command, "pipelines.yaml") if command == "validate" else cli(command)
        assert result.exit_code == 1, result.output
        assert f"{path.name}:{line}: " in result.stderr, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.output
    assert dump(db) == before


def test_inbound_must_be_true_or_false_and_needs_twilio(cli, tmp_path):
    text = CONFIG.replace("        inbound: false\n", "        inbound: maybe\n")
    write(tmp_path, text)
    result = cli("validate", "pipelines.yaml")
    assert result.exit_code == 1
    assert "pipelines.yaml:28: account 'west' channels.sms.inbound must be true or false" in (
        result.stderr
    )
    text = CONFIG.replace("    transport: twilio\n", "    transport: outbox\n").replace(
        "        inbound: false\n", "        inbound: true\n"
    )
    write(tmp_path, text)
    result = cli("validate", "pipelines.yaml")
    assert result.exit_code == 1
    assert "channels.sms.inbound reads texts from Twilio" in result.stderr
