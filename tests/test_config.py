"""pipectl validate / load_config: every problem as file:line, the resolved action params."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipectl.config import load_config, readable
from pipectl.errors import ConfigError

from .conftest import dump, rows

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "pipelines.example.yaml"

# Line numbers matter: the cases below say on which line of this text their problem is.
BASE = """\
version: 1
accounts:
  - key: acme
    name: Acme Roofing
    timezone: America/New_York
    country: US
pipelines:
  - key: adwords
    account: acme
    stages:
      - key: inquired
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait_for_reply: {timeout: 2d, on_timeout: lost}
      - {key: lost, outcome: lost}
"""
COUNTRY = "    country: US\n"
WAIT_FOR_REPLY = "          - wait_for_reply: {timeout: 2d, on_timeout: lost}"
LOST = "      - {key: lost, outcome: lost}"

# (id, text to replace in BASE, replacement, line of the problem, part of the message)
MALFORMED = [
    ("syntax", "name: Acme Roofing", "name: Acme: Roofing", 4, "YAML syntax error"),
    ("syntax-tab", "  - key: acme\n", "\t- key: acme\n", 3, "YAML syntax error"),
    ("version", "version: 1", "version: 2", 1, "version must be 1"),
    ("unknown-key", 'body: "Hello"}', 'body: "Hello", subjet: x}', 13, "unknown key 'subjet'"),
    (
        "wrong-type",
        COUNTRY,
        COUNTRY + "    limits: {active_leads: many}\n",
        7,
        "active_leads must be a whole number",
    ),
    ("account-not-text", "account: acme", "account: [acme]", 9, "account must be text, not a list"),
    ("action-type", WAIT_FOR_REPLY, "          - fax: hello", 14, "unknown action type 'fax'"),
    ("duration", "timeout: 2d", "timeout: 2 days", 14, "invalid duration '2 days'"),
    ("duration-unit", "timeout: 2d", "timeout: 2", 14, "needs a unit"),
    (
        "rate",
        COUNTRY,
        COUNTRY + "    limits:\n      rates: {email: 200/fortnight}\n",
        8,
        "invalid rate '200/fortnight'",
    ),
    ("rate-key", COUNTRY, COUNTRY + "    limits: {rates: {fax: 1/day}}\n", 7, "unknown key 'fax'"),
    ("on-timeout-target", "on_timeout: lost", "on_timeout: lots", 14, "no stage 'lots'"),
    ("move-target", WAIT_FOR_REPLY, "          - move: nowhere", 14, "no stage 'nowhere'"),
    (
        "on-failure-target",
        "      - key: inquired\n",
        "      - key: inquired\n        on_failure: retry\n",
        12,
        "no stage 'retry'",
    ),
    (
        "on-reply-target",
        "    account: acme\n",
        "    account: acme\n    on_reply: yes-please\n",
        10,
        "no stage 'yes-please'",
    ),  # fmt: skip
    (
        "duplicate-key",
        "    name: Acme Roofing\n",
        "    name: Acme Roofing\n    name: Acme\n",
        5,
        "duplicate key 'name'",
    ),
    ("duplicate-stage", LOST, LOST + "\n" + LOST, 16, "duplicate pipeline 'adwords' stage key"),
    (
        "duplicate-account",
        "pipelines:\n",
        "  - {key: acme, name: Other}\npipelines:\n",
        7,
        "duplicate account key 'acme'",
    ),
    ("unknown-account", "account: acme", "account: acne", 9, "unknown account 'acne'"),
    ("template", 'body: "Hello"', 'body: "Hello {{ lead.first_name }"', 13, "template error"),
    ("body-file-missing", 'body: "Hello"', "body_file: missing.txt", 13, "'missing.txt' not found"),
    ("body-file-outside", 'body: "Hello"', "body_file: ../outside.txt", 13, "outside the folder"),
    ("body-file-template", 'body: "Hello"', "body_file: broken.txt", 13, "template error"),
    ("timezone", "America/New_York", "America/Gotham", 5, "not a known time zone"),
    ("country", "country: US", "country: XX", 6, "'XX' is not a region code"),
    (
        "literal-password",
        COUNTRY,
        COUNTRY + "    channels:\n      email: {transport: smtp, host: mail.example,"
        " from: a@b.example, password: hunter2}\n",
        8,
        "must be an environment reference",
    ),
    (
        "transport",
        COUNTRY,
        COUNTRY + "    channels: {sms: {transport: pigeon}}\n",
        7,
        "must be twilio | webhook | outbox",
    ),
    (
        "outcome-with-actions",
        LOST,
        "      - {key: lost, outcome: lost, actions: [wait: 1d]}",
        15,
        "has outcome lost, so it has no actions",
    ),  # fmt: skip
    (
        "send-window-hours",
        'body: "Hello"}',
        'body: "Hello", send_window: {hours: "17:00-09:00"}}',
        13,
        "send_window hours '17:00-09:00'",
    ),
    (
        "send-window-days",
        'body: "Hello"}',
        'body: "Hello", send_window: {days: mon-funday}}',
        13,
        "'mon-funday' is not a day",
    ),
    ("stage-key", "- key: inquired", "- key: in quired", 11, "may use only letters"),
    ("no-timeout", "{timeout: 2d, on_timeout: lost}", "{on_timeout: lost}", 14, "needs a timeout"),
    ("no-subject", '{subject: "Hi {{ lead.first_name }}", ', "{", 13, "needs a subject"),
    ("two-keys-action", WAIT_FOR_REPLY, "          - {wait: 1d, move: lost}", 14, "not wait, move"),
]


def write_config(tmp_path: Path, text: str) -> Path:
    """The YAML in its own folder, with a broken template beside it and a file outside it."""
    folder = tmp_path / "conf"
    folder.mkdir(exist_ok=True)
    (folder / "broken.txt").write_text("Hi {% if lead.first_name %}\n")
    (tmp_path / "outside.txt").write_text("Hi\n")
    (folder / "pipelines.yaml").write_text(text)
    return folder / "pipelines.yaml"


def test_base_config_is_valid(cli, tmp_path):
    write_config(tmp_path, BASE)
    result = cli("validate", "conf/pipelines.yaml")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        "conf/pipelines.yaml: ok (1 account, 1 pipeline, 2 stages, 2 actions)"
    )


@pytest.mark.parametrize("command", ["validate", "apply"])
@pytest.mark.parametrize(
    "old, new, line, message", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_yaml_is_reported_with_its_line_and_changes_nothing(
    cli, db, tmp_path, command, old, new, line, message
):
    write_config(tmp_path, BASE)
    assert cli("apply", "conf/pipelines.yaml").exit_code == 0
    before = dump(db)
    assert old in BASE
    write_config(tmp_path, BASE.replace(old, new, 1))

    result = cli(command, "conf/pipelines.yaml")

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    located = [
        p for p in result.stderr.splitlines() if p.startswith(f"conf/pipelines.yaml:{line}: ")
    ]
    assert any(message in p for p in located), result.stderr
    assert "hunter2" not in result.output
    assert dump(db) == before


def test_every_problem_is_reported_at_once_in_line_order(cli, tmp_path):
    text = (
        BASE.replace("version: 1", "version: 3")
        .replace("America/New_York", "Mars/Olympus")
        .replace("timeout: 2d", "timeout: soon")
        .replace("on_timeout: lost", "on_timeout: gone")
    )
    write_config(tmp_path, text)
    result = cli("validate", "conf/pipelines.yaml")
    assert result.exit_code == 1
    lines = [p.split(":")[1] for p in result.stderr.splitlines()]
    assert lines == ["1", "5", "14", "14"]


def test_missing_file_is_a_clear_error(cli):
    result = cli("validate", "nope.yaml")
    assert result.exit_code == 1
    assert result.stderr.strip() == "nope.yaml: file not found"


def test_empty_file_and_missing_sections(cli, tmp_path):
    write_config(tmp_path, "")
    assert (
        "conf/pipelines.yaml:1: the file is empty" in cli("validate", "conf/pipelines.yaml").stderr
    )
    write_config(tmp_path, "version: 1\n")
    result = cli("validate", "conf/pipelines.yaml")
    assert "missing top-level key 'accounts'" in result.stderr
    assert "missing top-level key 'pipelines'" in result.stderr


def test_example_file_validates(cli, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "pipelines.yaml")
    shutil.copytree(ROOT / "examples" / "templates", tmp_path / "examples" / "templates")
    result = cli("validate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("pipelines.yaml: ok (2 accounts, 2 pipelines, ")


def test_example_has_the_spec_pipeline():
    config = load_config(EXAMPLE)
    adwords = next(p for p in config.pipelines if p.key == "adwords")
    assert adwords.name == "Google Adwords Campaign"
    assert adwords.on_reply == "responded"
    assert [s.key for s in adwords.stages] == ["inquired", "follow-up", "responded", "won", "lost"]
    assert [s.name for s in adwords.stages][:2] == ["Inquired", "Follow up"]
    assert {a.key: a.timezone for a in config.accounts} == {
        "acme": "America/New_York",
        "globex": "Europe/London",
    }
    types = {a.type for p in config.pipelines for s in p.stages for a in s.actions}
    assert types == {"email", "sms", "wait", "wait_for_reply", "move"}


def test_body_file_is_read_into_params(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "intro.txt").write_text("Hi {{ lead.first_name }}\n")
    path = write_config(tmp_path, BASE.replace('body: "Hello"', "body_file: ../templates/x.txt"))
    folder = path.parent
    (folder / "templates").mkdir()
    (folder / "templates" / "intro.txt").write_text("Dear {{ lead.company_name }}\n")
    path.write_text(BASE.replace('body: "Hello"', "body_file: templates/intro.txt"))
    email = load_config(path).pipelines[0].stages[0].actions[0]
    assert email.params["body"] == "Dear {{ lead.company_name }}\n"
    assert email.params["html"] is None


def test_params_are_fully_resolved(tmp_path):
    text = BASE.replace(
        "    stages:\n",
        "    on_failure: continue\n"
        '    send_window: {days: "mon,wed,fri", hours: "9:00-17:30"}\n'
        "    stages:\n",
    ).replace(
        'body: "Hello"}',
        'body: "Hello", retry: {attempts: 2, backoff: 30s}, send_window: {days: [sat, sun],'
        " timezone: Europe/Paris}}\n"
        "          - sms: Hi {{ lead.first_name }}\n"
        "          - wait: 1d12h",
    )
    stage = load_config(write_config(tmp_path, text)).pipelines[0].stages[0]
    email, sms, wait, wait_for_reply = stage.actions
    assert email.params == {
        "subject": "Hi {{ lead.first_name }}",
        "body": "Hello",
        "html": None,
        "retry": {"attempts": 2, "backoff": 30, "max_backoff": 3600},
        "send_window": {
            "days": [5, 6],
            "start": "00:00",
            "end": "24:00",
            "timezone": "Europe/Paris",
        },
        "on_failure": "continue",
    }
    assert sms.params == {
        "body": "Hi {{ lead.first_name }}",
        "retry": {"attempts": 5, "backoff": 60, "max_backoff": 3600},
        "send_window": {"days": [0, 2, 4], "start": "09:00", "end": "17:30", "timezone": None},
        "on_failure": "continue",
    }
    assert wait.params == {"seconds": 129600, "on_failure": "continue"}
    assert wait_for_reply.params == {
        "timeout": 172800,
        "on_reply": None,
        "on_timeout": "lost",
        "on_failure": "continue",
    }
    assert (email.line, sms.line, wait.line) == (15, 16, 17)


def test_account_send_window_and_stage_on_failure_are_inherited(tmp_path):
    text = BASE.replace(COUNTRY, COUNTRY + "    send_window: {days: fri-mon}\n").replace(
        "      - key: inquired\n", "      - key: inquired\n        on_failure: lost\n"
    )
    email = load_config(write_config(tmp_path, text)).pipelines[0].stages[0].actions[0]
    assert email.params["send_window"]["days"] == [0, 4, 5, 6]
    assert email.params["on_failure"] == "lost"


@pytest.mark.parametrize(
    "days, expected",
    [("mon-fri", [0, 1, 2, 3, 4]), ("'mon,wed,fri'", [0, 2, 4]), ("[sat, sun]", [5, 6]),
     ("Tuesday", [1]), ("sat-mon", [0, 5, 6])],
)  # fmt: skip
def test_send_window_days_forms(tmp_path, days, expected):
    text = BASE.replace(COUNTRY, COUNTRY + f"    send_window: {{days: {days}}}\n")
    assert load_config(write_config(tmp_path, text)).accounts[0].send_window["days"] == expected


def test_norway_stays_a_country_and_sms_from_stays_text(tmp_path):
    text = BASE.replace("country: US", "country: NO").replace(
        COUNTRY.replace("US", "NO"),
        COUNTRY.replace("US", "NO") + "    channels: {sms: {from: +4712345678}}\n",
    )
    account = load_config(write_config(tmp_path, text)).accounts[0]
    assert account.country == "NO"
    assert account.channels["sms"]["from"] == "+4712345678"


def test_account_channels_override_defaults_per_channel(tmp_path):
    text = BASE.replace(
        "pipelines:\n",
        "channels:\n"
        "  email:\n"
        "    transport: smtp\n"
        "    host: ${SMTP_HOST}\n"
        "    port: 587\n"
        "    username: ${SMTP_USER}\n"
        "    password: ${SMTP_PASSWORD}\n"
        "    from: a@acme.example\n"
        "  sms: {transport: outbox, from: '+15550100000'}\n"
        "pipelines:\n",
    ).replace(COUNTRY, COUNTRY + "    channels: {email: {from: b@acme.example}}\n")
    account = load_config(write_config(tmp_path, text)).accounts[0]
    assert account.channels == {
        "email": {
            "transport": "smtp",
            "host": "${SMTP_HOST}",
            "port": 587,
            "username": "${SMTP_USER}",
            "password": "${SMTP_PASSWORD}",
            "from": "b@acme.example",
        },
        "sms": {"transport": "outbox", "from": "+15550100000"},
    }


def test_env_references_are_stored_never_resolved(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret-value")
    text = BASE.replace(
        COUNTRY,
        COUNTRY + "    channels:\n      email: {transport: smtp, host: mail.example,"
        " from: a@b.example, username: '${SMTP_USER}', password: '${SMTP_PASSWORD}'}\n",
    )
    write_config(tmp_path, text)
    assert cli("apply", "conf/pipelines.yaml").exit_code == 0
    channels = json.loads(rows(db, "SELECT channels FROM accounts")[0]["channels"])
    assert channels["email"]["password"] == "${SMTP_PASSWORD}"
    assert "s3cret-value" not in dump(db)


def test_smtp_without_host_is_a_problem(tmp_path):
    text = BASE.replace(COUNTRY, COUNTRY + "    channels: {email: {transport: smtp}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, text))
    assert e.value.problems == [
        f"{tmp_path}/conf/pipelines.yaml:7: account 'acme': email transport smtp needs host, from"
        " (under channels.email)"
    ]


def test_readable_stage_names():
    assert readable("follow-up") == "Follow up"
    assert readable("second_call") == "Second call"


def test_anchors_and_merge_keys_reuse_settings(tmp_path):
    text = 'x-office: &office {days: mon-fri, hours: "09:00-17:00"}\n' + BASE.replace(
        COUNTRY, COUNTRY + "    send_window: *office\n"
    ).replace(
        '{subject: "Hi {{ lead.first_name }}", body: "Hello"}',
        '{subject: "Hi", body: "Hello"}\n          - email: {<<: *first, body: Again}',
    ).replace("          - email: {subject", "          - email: &first {subject", 1)
    config = load_config(write_config(tmp_path, text))
    first, second = config.pipelines[0].stages[0].actions[:2]
    assert config.accounts[0].send_window["start"] == "09:00"
    assert (first.params["subject"], first.params["body"]) == ("Hi", "Hello")
    assert (second.params["subject"], second.params["body"]) == ("Hi", "Again")


def test_twilio_and_webhook_settings(tmp_path):
    twilio = BASE.replace(
        COUNTRY,
        COUNTRY + "    channels:\n"
        "      sms:\n"
        "        transport: twilio\n"
        "        account_sid: ${TWILIO_ACCOUNT_SID}\n"
        "        auth_token: ${TWILIO_AUTH_TOKEN}\n"
        "        messaging_service_sid: MG123\n",
    )
    assert load_config(write_config(tmp_path, twilio)).accounts[0].channels["sms"] == {
        "transport": "twilio",
        "account_sid": "${TWILIO_ACCOUNT_SID}",
        "auth_token": "${TWILIO_AUTH_TOKEN}",
        "messaging_service_sid": "MG123",
    }
    webhook = BASE.replace(
        COUNTRY,
        COUNTRY + "    channels:\n"
        "      sms:\n"
        "        transport: webhook\n"
        "        headers: {Authorization: Bearer abc123}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, webhook))
    assert [p.split(": ", 1)[1] for p in e.value.problems] == [
        "account 'acme': sms transport webhook needs url (under channels.sms)",
        "account 'acme' channels.sms.headers.Authorization must use an environment reference,"
        " e.g. 'Bearer ${SMS_TOKEN}': secrets are never written in the YAML",
    ]
    assert "abc123" not in str(e.value)


@pytest.mark.parametrize("command", ["init", "validate", "apply"])
def test_commands_have_help_with_an_example(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Example: pipectl" in result.stdout


def test_quoted_version_is_accepted(tmp_path):
    assert load_config(write_config(tmp_path, BASE.replace("version: 1", 'version: "1"')))
