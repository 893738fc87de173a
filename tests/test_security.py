"""Security promises through a real tick: templates cannot reach Python internals, lead data is
data, lead fields cannot add email headers, templates stay in the YAML's folder, and secrets
never reach the database, an output or an error."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from .channel_servers import free_port, http_server, smtp_server
from .conftest import rows
from .scenario import T0, outbox, pipectl, statuses, write_yaml

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ lead.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ '{0.__class__.__mro__}'.format(lead) }}",
    "{{ lead.update({'email': 'victim@evil.example'}) }}",
    "{{ lead.email.__class__.__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__['__builtins__'] }}",
]


def smtp_account(port: int, auth: bool = False) -> str:
    login = " username: sales, password: '${SMTP_PASSWORD}'," if auth else ""
    return (
        "    channels:\n"
        f"      email: {{transport: smtp, host: 127.0.0.1, port: {port}, security: none,"
        f' timeout: 5,{login} from: "Acme <sales@acme.example>"}}'
    )


def import_leads(cli, tmp_path: Path, table: list[dict[str, str]], pipeline: str) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    path = tmp_path / f"{pipeline}.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    result = cli("leads", "import", path, "--account", "acme", "--pipeline", pipeline)
    assert result.exit_code == 0, result.output


def one_email_pipeline(key: str, subject: str, body: str) -> str:
    return f"""\
  - key: {key}
    account: acme
    name: {key}
    stages:
      - key: intro
        actions:
          - email: {{subject: {subject!r}, body: {body!r}}}
          - move: won
      - {{key: won, outcome: won}}
"""


@pytest.mark.parametrize("escape", ESCAPES)
def test_sandbox_escapes_fail_the_action_at_send_time_and_send_nothing(cli, db, tmp_path, escape):
    with smtp_server() as (server, recorder):
        yaml = one_email_pipeline("drip", "Hello", f"Hi {{{{ lead.first_name }}}} {escape}")
        assert (
            cli("apply", write_yaml(tmp_path, yaml, acme_extra=smtp_account(server.port))).exit_code
            == 0
        )
        import_leads(cli, tmp_path, [{"Email": "ana@lead.example", "First Name": "Ana"}], "drip")
        result = cli("tick", "--now", T0)
        assert result.exit_code == 0 and "Traceback" not in result.output
        assert recorder.received == [] and recorder.connections == 0
        email = rows(db, "SELECT * FROM lead_stage_actions WHERE type = 'email'")[0]
        assert email["status"] == "failed" and email["attempts"] == 1  # permanent: no retry
        assert email["last_error"].startswith("template error in body")
        assert rows(db, "SELECT status FROM leads")[0]["status"] == "failed"
        assert "is unsafe" in email["last_error"] and "<" not in email["last_error"]


def test_lead_data_is_sent_literally_and_adds_no_header(cli, db, tmp_path):
    hostile = {
        "Email": "ana@lead.example",
        "First Name": "Ana\r\nBcc: victim@evil.example\r\nX-Evil: 1",
        "Last Name": "{{ 7 * 7 }}{% raw %}",
        "Company Name": "{{ lead.__class__ }}{{ cycler.__init__.__globals__ }}",
    }
    with smtp_server() as (server, recorder):
        yaml = one_email_pipeline(
            "drip",
            "Hi {{ lead.first_name }} {{ lead.last_name }}",
            "Dear {{ lead.first_name }} {{ lead.last_name }} of {{ lead.company_name }}",
        )
        assert (
            cli("apply", write_yaml(tmp_path, yaml, acme_extra=smtp_account(server.port))).exit_code
            == 0
        )
        import_leads(cli, tmp_path, [hostile], "drip")
        assert cli("tick", "--now", T0).exit_code == 0
        assert statuses(db) == {"done": 2}
        [got] = recorder.received
        assert got.rcpt_tos == ["ana@lead.example"]
        msg = got.message
        assert msg["Bcc"] is None and msg["X-Evil"] is None
        assert msg["Subject"] == "Hi Ana Bcc: victim@evil.example X-Evil: 1 {{ 7 * 7 }}{% raw %}"
        body = msg.get_content()
        assert "{{ 7 * 7 }}{% raw %}" in body and "49" not in body
        assert "{{ lead.__class__ }}{{ cycler.__init__.__globals__ }}" in body
        assert b"victim@evil.example" not in got.data.split(b"\r\n\r\n", 1)[0].replace(
            b"Subject: Hi Ana Bcc: victim@evil.example", b""
        )


def test_body_file_outside_the_yaml_folder_is_refused_by_validate(cli, tmp_path):
    (tmp_path / "secret.txt").write_text("the secret\n")
    config = tmp_path / "config"
    (config / "templates").mkdir(parents=True)
    (config / "templates" / "link.txt").symlink_to(tmp_path / "secret.txt")
    for name in ("../secret.txt", str(tmp_path / "secret.txt"), "templates/link.txt"):
        yaml = write_yaml(tmp_path, "").read_text() + (
            "  - key: drip\n    account: acme\n    stages:\n      - key: intro\n"
            f"        actions:\n          - email: {{subject: Hi, body_file: '{name}'}}\n"
        )
        path = config / "pipelines.yaml"
        path.write_text(yaml)
        result = cli("validate", path)
        assert result.exit_code == 1, (name, result.output)
        assert "outside the folder" in result.output and "the secret" not in result.output
        assert cli("apply", path).exit_code == 1


OPERATOR_VIEWS = [
    ("status",),
    ("status", "--json"),
    ("leads", "list"),
    ("leads", "list", "--json"),
    ("leads", "show", "ana@lead.example"),
    ("leads", "show", "ana@lead.example", "--json"),
    ("actions", "list"),
    ("actions", "list", "--json"),
]
PASSWORD = "Zq9-tr0ub4dor-7731-pw"
WRONG = "Wr0ng-c0rrect-h0rse-4410"
TOKEN = "tw-t0ken-5f1e-8c2d-99aa"


def test_secrets_never_reach_the_database_outputs_or_errors(cli, db, tmp_path, monkeypatch):
    """A whole flow with a password and a Twilio token in the environment; then search bytes."""
    monkeypatch.setenv("SMTP_PASSWORD", WRONG)
    monkeypatch.setenv("TWILIO_SID", "AC0000")
    monkeypatch.setenv("TWILIO_TOKEN", TOKEN)
    outputs: list[str] = []
    with smtp_server(auth=("sales", PASSWORD)) as (server, recorder), http_server() as (url, http):
        extra = smtp_account(server.port, auth=True) + (
            "\n      sms: {transport: twilio, account_sid: '${TWILIO_SID}',"
            f" auth_token: '${{TWILIO_TOKEN}}', base_url: '{url}', from: '+15550100000'}}"
        )
        yaml = write_yaml(
            tmp_path,
            """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - sms: "Hi {{ lead.first_name }}"
          - move: won
      - {key: won, outcome: won}
""",
            acme_extra=extra,
        )
        http.answer(500, {"message": f"bad token {TOKEN}"})  # a provider echoing the token
        csv_path = tmp_path / "leads.csv"
        csv_path.write_text("Email,First Name,Phone\nana@lead.example,Ana,+14155550100\n")

        def run(*args: str) -> None:
            """Ticks as cron runs them, in their own process; the other commands in-process."""
            if args[0] == "tick" and len(args) == 3:  # plain ticks; --json, --dry-run in-process
                result = pipectl(db, *args)
                code, output = result.returncode, result.stdout + result.stderr
            else:
                result = cli(*args)
                code, output = result.exit_code, result.output
            outputs.append(output)
            assert code == 0, output

        run("validate", str(yaml))
        run("apply", str(yaml))
        run("leads", "import", str(csv_path), "--account", "acme", "--pipeline", "drip")
        run("tick", "--now", T0)  # authentication refused: retried later
        email = rows(db, "SELECT * FROM lead_stage_actions WHERE type = 'email'")[0]
        assert email["status"] == "pending" and "authentication" in email["last_error"]
        assert set(recorder.logins) == {("sales", WRONG)} and recorder.received == []
        for show in OPERATOR_VIEWS:  # while the failure is fresh
            run(*show)

        monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
        run("tick", "--now", "2027-03-01T15:00:00Z")  # the email goes; the sms gets a 500
        sms = rows(db, "SELECT * FROM lead_stage_actions WHERE type = 'sms'")[0]
        assert sms["status"] == "pending" and "500" in sms["last_error"]
        run("tick", "--now", "2027-03-01T17:00:00Z")  # the sms goes
        run("tick", "--now", "2027-03-01T17:01:00Z", "--json")
        for show in OPERATOR_VIEWS:
            run(*show)
        run("tick", "--now", "2027-03-01T17:02:00Z", "--dry-run")
        assert statuses(db) == {"done": 3}
        assert recorder.logins[-1] == ("sales", PASSWORD) and len(recorder.received) == 1
        assert http.requests[-1].headers["Authorization"].startswith("Basic ")

        errors = [
            r["last_error"] or "" for r in rows(db, "SELECT last_error FROM lead_stage_actions")
        ]
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock"), *outbox(tmp_path)]
        blobs = [p.read_bytes() for p in files if p.exists()]
        blobs += [o.encode() for o in outputs + errors]
        for secret in (PASSWORD, WRONG, TOKEN):
            for blob in blobs:
                assert secret.encode() not in blob
                assert secret.encode("utf-16-le") not in blob
        assert os.environ["SMTP_PASSWORD"] == PASSWORD  # the values searched for were in use


def test_a_token_in_a_webhook_url_stays_out_of_errors(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)

    def hook(base: str) -> str:
        return (
            "    channels:\n"
            f"      sms: {{transport: webhook, url: '{base}/hook?token=${{HOOK_TOKEN}}',"
            " from: '+15550100000', timeout: 2}"
        )

    pipelines = "".join(
        f"  - key: {account}\n    account: {account}\n    stages:\n      - key: intro\n"
        "        actions:\n          - sms: Hi\n"
        for account in ("acme", "beta")
    )
    with http_server() as (url, http):
        down = f"http://127.0.0.1:{free_port()}"  # nobody listens: connection refused
        yaml = write_yaml(tmp_path, pipelines, acme_extra=hook(url), beta_extra=hook(down))
        assert cli("apply", yaml).exit_code == 0
        http.answer(500, f"no route for /hook?token={TOKEN}".encode())
        csv_path = tmp_path / "leads.csv"
        csv_path.write_text("Phone\n+14155550100\n")
        for account in ("acme", "beta"):
            result = cli("leads", "import", csv_path, "--account", account, "--pipeline", account)
            assert result.exit_code == 0, result.output
        result = cli("tick", "--now", T0)
        assert result.exit_code == 0
        assert http.requests[0].path == f"/hook?token={TOKEN}"  # the token was used
    errors = [r["last_error"] for r in rows(db, "SELECT last_error FROM lead_stage_actions")]
    assert len(errors) == 2 and all(errors)
    assert any("token=***" in e for e in errors), errors  # the echo, scrubbed
    for blob in [*errors, result.output, cli("actions", "list").output, cli("status").output]:
        assert TOKEN not in blob
    assert TOKEN.encode() not in db.read_bytes() + Path(f"{db}-wal").read_bytes()


def test_an_smtp_host_from_the_environment_is_shown_in_errors_and_the_password_is_not(
    cli, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_USER", "sales-team")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    port = free_port()  # nobody listens: connection refused
    extra = (
        "    channels:\n"
        f"      email: {{transport: smtp, host: '${{SMTP_HOST}}', port: {port}, security: none,"
        " timeout: 2, username: '${SMTP_USER}', password: '${SMTP_PASSWORD}',"
        ' from: "Acme <sales@acme.example>"}'
    )
    yaml = write_yaml(tmp_path, one_email_pipeline("drip", "Hi", "Hello"), acme_extra=extra)
    assert cli("apply", yaml).exit_code == 0
    import_leads(cli, tmp_path, [{"Email": "ana@lead.example"}], "drip")
    result = cli("tick", "--now", T0)
    assert result.exit_code == 0, result.output
    sql = "SELECT last_error FROM lead_stage_actions WHERE type = 'email'"
    [error] = [r["last_error"] for r in rows(db, sql)]
    assert f"channel email: 127.0.0.1:{port}: " in error, error
    status = cli("status", "--now", T0).output
    for blob in (error, result.output, status, cli("actions", "list").output):
        assert PASSWORD not in blob
