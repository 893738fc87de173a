"""What leads receive: missing and empty fields render as nothing, the shipped examples say
what they mean, and `validate` finds every template mistake that would fail at send time."""

from __future__ import annotations

import base64
import csv
import io
import shutil
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus

import pytest

from .channel_servers import SmtpRecorder, SmtpServer, free_port, http_server, smtp_server
from .conftest import dump, rows
from .scenario import T0, outbox, write_yaml

ROOT = Path(__file__).resolve().parent.parent


def smtp_account(port: int) -> str:
    return (
        "    channels:\n"
        f"      email: {{transport: smtp, host: 127.0.0.1, port: {port}, security: none,"
        ' timeout: 5, from: "Acme <sales@acme.example>"}'
    )


def email_pipeline(subject: str, body: str) -> str:
    return f"""\
  - key: drip
    account: acme
    stages:
      - key: intro
        actions:
          - email: {{subject: {subject!r}, body: {body!r}}}
          - move: won
      - {{key: won, outcome: won}}
"""


def write_leads(tmp_path: Path, table: list[dict[str, str]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    path = tmp_path / "leads.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


# --- item 5: missing and empty values ------------------------------------------------------


def test_missing_and_empty_fields_render_as_nothing_and_test_false(cli, db, tmp_path):
    subject = "Thanks for your interest, {{ lead.first_name }}"
    body = (
        "Hi {{ lead.first_name | default('there') }} {{ lead.last_name }}|"
        "{% if lead.company_name %} on behalf of {{ lead.company_name }}{% endif %}|"
        "{% if lead.company_name is defined %}defined{% endif %}|"
        "{{ lead.company_name | default('your business') }}|{{ lead.nickname }}|"
        "{{ lead.timezone }}|{{ lead.phone }}|{{ lead.items }}"
    )
    leads = [
        {
            "Email": "ana@lead.example",
            "First Name": "",
            "Last Name": "",
            "Company Name": "",
            "Items": "",
        },
        {
            "Email": "bo@lead.example",
            "First Name": "Bo",
            "Last Name": "Li",
            "Company Name": "Li Co",
            "Items": "2 roofs",
        },
    ]
    with smtp_server() as (server, smtp):
        yaml = write_yaml(tmp_path, email_pipeline(subject, body), smtp_account(server.port))
        assert cli("validate", yaml).exit_code == 0
        assert cli("apply", yaml).exit_code == 0
        csv_path = write_leads(tmp_path, leads)
        assert (
            cli("leads", "import", csv_path, "--account", "acme", "--pipeline", "drip").exit_code
            == 0
        )
        result = cli("tick", "--now", T0)
        assert result.exit_code == 0, result.output
    sent = {r.rcpt_tos[0]: r.message for r in smtp.received}
    ana, bo = sent["ana@lead.example"], sent["bo@lead.example"]
    assert ana["Subject"] == "Thanks for your interest,"
    assert ana.get_content().rstrip("\r\n") == "Hi there |||your business||||"
    assert bo["Subject"] == "Thanks for your interest, Bo"
    assert (
        bo.get_content().rstrip("\r\n") == "Hi Bo Li| on behalf of Li Co|defined|Li Co||||2 roofs"
    )
    for message in (ana, bo):
        assert "None" not in str(message)
    assert {r["status"] for r in rows(db, "SELECT status FROM lead_stage_actions")} == {"done"}


def test_shipped_examples_greet_by_company_and_never_send_none(cli, tmp_path):
    shutil.copy(ROOT / "pipelines.example.yaml", tmp_path / "pipelines.yaml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    assert cli("apply", "pipelines.yaml").exit_code == 0
    for account, pipeline in (("acme", "adwords"), ("globex", "solar-webinar")):
        csv_path = tmp_path / "examples" / f"leads-{account}.csv"
        result = cli("leads", "import", csv_path, "--account", account, "--pipeline", pipeline)
        assert result.exit_code == 0, result.output
    # A Monday, 10:00 in New York and 15:00 in London: both accounts' first emails go out.
    assert cli("tick", "--now", "2027-03-01T15:00:00Z").exit_code == 0
    texts = {p.name: p.read_text(encoding="utf-8") for p in outbox(tmp_path)}
    emails = [t for t in texts.values() if "Subject:" in t]
    assert len(emails) == 24 + 9, len(emails)  # every acme lead with an email; globex opted-in
    for text in texts.values():
        assert "None" not in text and "behalf of ." not in text
    # Globex's CSV says `Company`: its templates read lead.company.
    bennett = next(t for t in emails if "oliver.bennett@" in t)
    assert "Bennett Farms cut their energy bills" in bennett
    harry = next(t for t in emails if "harry.wilson@" in t)
    assert "like\nyour business cut" in harry or "like your business cut" in harry
    sarah = next(t for t in emails if "sarah.k.lee@" in t)  # no company in the acme file
    assert "Thanks for reaching out to Acme Roofing.\n" in sarah.replace("=\n", "")


# --- item 17: validate compiles every template ---------------------------------------------

BAD_TEMPLATES = [
    ("{{ leed.first_name }}", "'leed', which is not defined", "not leed.<field>"),
    ("{{ first_name }}", "'first_name', which is not defined", "did you mean lead.first_name?"),
    ("{{ lead.first_name | nofilter }}", "unknown filter 'nofilter'", ""),
    ("{% if lead.phone is mobile %}x{% endif %}", "unknown test 'mobile'", ""),
    ("{% if lead.x %}{{ lead.x | nofilter }}{% endif %}", "unknown filter 'nofilter'", ""),
    ("{{ lead.FirstName }}", "lead.FirstName, which no lead has", "did you mean lead.first_name?"),
    ("{{ lead['Company Name'] }}", "which no lead has", "did you mean lead.company_name?"),
    ("{% include 'footer.txt' %}", "cannot load other templates", ""),
]


@pytest.mark.parametrize(("template", "message", "hint"), BAD_TEMPLATES)
def test_validate_reports_template_names_and_filters_that_would_fail_at_send_time(
    cli, db, tmp_path, template, message, hint
):
    assert cli("apply", write_yaml(tmp_path, email_pipeline("Hello", "Hi"))).exit_code == 0
    before = dump(db)
    yaml = write_yaml(tmp_path, email_pipeline("Hello", template))
    line = (
        yaml.read_text()
        .splitlines()
        .index(next(x for x in yaml.read_text().splitlines() if "- email:" in x))
    )
    for command in ("validate", "apply"):
        result = cli(command, yaml)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert f"{yaml}:{line + 1}: pipeline 'drip' stage 'intro' email body: " in result.stderr
        assert message in result.stderr and hint in result.stderr
    assert dump(db) == before


def test_validate_names_the_template_file_and_its_line_and_block_scalar_lines(cli, tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "intro.txt").write_text(
        "Hi {{ lead.first_name }},\n\nThanks {{ lead.company_name | titel }}.\n"
    )
    pipelines = """\
  - key: drip
    account: acme
    stages:
      - key: intro
        actions:
          - email:
              subject: Hello
              body_file: templates/intro.txt
          - email:
              subject: Again
              body: |
                Hi {{ lead.first_name }},
                See you, {{ leed.first_name }}.
"""
    yaml = write_yaml(tmp_path, pipelines)
    lines = yaml.read_text().splitlines()
    file_line = 1 + next(i for i, x in enumerate(lines) if "body_file:" in x)
    block_line = 1 + next(i for i, x in enumerate(lines) if "See you" in x)
    result = cli("validate", yaml)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{yaml}:{file_line}: pipeline 'drip' stage 'intro' email body_file:"
        " templates/intro.txt:3: template uses an unknown filter 'titel'",
        f"{yaml}:{block_line}: pipeline 'drip' stage 'intro' email body: template uses 'leed',"
        " which is not defined (templates see lead and its fields);"
        " lead fields are written lead.<field>, not leed.<field>",
    ]


def test_validate_accepts_what_templates_may_use(cli, tmp_path):
    body = (
        "{% set greeting = 'Hi' %}{{ greeting }} {{ lead.first_name | default('there') | title }}"
        "{% for i in range(2) %}{{ loop.index }}{% endfor %}"
        "{% macro sig(name) %}-- {{ name }}{% endmacro %}{{ sig('Acme') }}"
        "{% set ns = namespace(n=0) %}{{ ns.n }}{{ lead['company_name'] }}{{ lead.other_phone }}"
        "{% if lead.email is defined and lead.x2 is string %}{{ lead.id }}{% endif %}"
    )
    result = cli("validate", write_yaml(tmp_path, email_pipeline("Hi {{ lead.first_name }}", body)))
    assert result.exit_code == 0, result.stderr


# --- item 6: internationalised addresses ---------------------------------------------------


class Utf8Recorder(SmtpRecorder):
    """Also keeps the MAIL FROM options of each message (SMTPUTF8, BODY=8BITMIME)."""

    options: list[list[str]]

    async def handle_DATA(self, server, session, envelope):
        self.options.append(list(envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


def idn_pipelines() -> str:
    return "".join(
        f"""\
  - key: {account}
    account: {account}
    stages:
      - key: intro
        actions:
          - email: {{subject: "Hi {{{{ lead.first_name }}}}", body: "Hello"}}
"""
        for account in ("acme", "beta")
    )


@contextmanager
def utf8_servers():
    """Two SMTP servers on 127.0.0.1: one without SMTPUTF8, one offering it (as aiosmtpd's
    Controller does by default)."""
    plain, utf8 = Utf8Recorder(), Utf8Recorder()
    plain.options, utf8.options = [], []
    servers = [
        SmtpServer(plain, free_port(), enable_SMTPUTF8=False),
        SmtpServer(utf8, free_port(), enable_SMTPUTF8=True),
    ]
    for server in servers:
        server.start()
    try:
        yield servers, plain, utf8
    finally:
        for server in servers:
            server.stop()


def test_idn_domains_go_out_in_ascii_and_a_utf8_local_part_only_with_smtputf8(cli, db, tmp_path):
    leads = "Email,First Name\nuser@xn--exmple-cua.com,Una\njürgen@exämple.com,Jürgen\n"
    (tmp_path / "leads.csv").write_text(leads, encoding="utf-8")
    with utf8_servers() as (servers, plain, utf8):
        extra = {
            f"{a}_extra": smtp_account(s.port)
            for a, s in zip(("acme", "beta"), servers, strict=True)
        }
        assert cli("apply", write_yaml(tmp_path, idn_pipelines(), **extra)).exit_code == 0
        for account in ("acme", "beta"):
            args = ("leads", "import", "leads.csv", "--account", account, "--pipeline", account)
            assert cli(*args).exit_code == 0
        result = cli("tick", "--now", T0)
        assert result.exit_code == 0, result.output
    # The server without SMTPUTF8 gets the ASCII domain; the UTF-8 local part is not sent to it.
    [una] = plain.received
    assert una.rcpt_tos == ["user@xn--exmple-cua.com"] and "SMTPUTF8" not in plain.options[0]
    assert una.message["To"] == "user@xn--exmple-cua.com" and b"=?" not in una.data
    # The server offering SMTPUTF8 gets both, the UTF-8 one with SMTPUTF8.
    by_rcpt = {r.rcpt_tos[0]: (r, o) for r, o in zip(utf8.received, utf8.options, strict=True)}
    assert set(by_rcpt) == {"user@xn--exmple-cua.com", "jürgen@xn--exmple-cua.com"}
    jurgen, options = by_rcpt["jürgen@xn--exmple-cua.com"]
    assert "SMTPUTF8" in options and "To: jürgen@xn--exmple-cua.com" in jurgen.data.decode()
    assert "SMTPUTF8" not in by_rcpt["user@xn--exmple-cua.com"][1]
    sql = (
        "SELECT a.key, l.email, s.status, s.attempts, s.last_error FROM lead_stage_actions s"
        " JOIN leads l ON l.id = s.lead_id JOIN accounts a ON a.id = s.account_id"
    )
    state = {(r["key"], r["email"]): r for r in rows(db, sql)}
    failed = state[("acme", "jürgen@exämple.com")]
    assert (failed["status"], failed["attempts"]) == ("failed", 1)  # permanent: not retried
    assert "does not offer SMTPUTF8" in failed["last_error"]
    others = [r for k, r in state.items() if k != ("acme", "jürgen@exämple.com")]
    assert {r["status"] for r in others} == {"done"}


def test_outbox_writes_idn_addresses_without_encoded_words(cli, tmp_path):
    leads = "Email,First Name\nuser@xn--exmple-cua.com,Una\njürgen@exämple.com,Jürgen\n"
    (tmp_path / "leads.csv").write_text(leads, encoding="utf-8")
    assert cli("apply", write_yaml(tmp_path, idn_pipelines())).exit_code == 0
    assert (
        cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "acme").exit_code
        == 0
    )
    assert cli("tick", "--now", T0).exit_code == 0
    files = [p.read_bytes().decode("utf-8") for p in outbox(tmp_path)]
    to = sorted(line for f in files for line in f.splitlines() if line.startswith("To:"))
    assert to == ["To: jürgen@xn--exmple-cua.com", "To: user@xn--exmple-cua.com"]


# --- item 19: ${VAR} in a webhook URL, and every encoding of a secret ----------------------

TOKEN = "p&q r+s/t=u#v%w-7788"


def sms_pipeline(account: str) -> str:
    return (
        f"  - key: {account}\n    account: {account}\n    stages:\n      - key: intro\n"
        "        actions:\n          - sms: Hi\n"
    )


def test_a_webhook_url_variable_is_escaped_and_no_encoding_of_it_reaches_an_error(
    cli, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    with http_server() as (url, http):
        extra = (
            "    channels:\n"
            f"      sms: {{transport: webhook, url: '{url}/hook?token=${{HOOK_TOKEN}}&v=2',"
            " timeout: 2}"
        )
        assert (
            cli("apply", write_yaml(tmp_path, sms_pipeline("acme"), acme_extra=extra)).exit_code
            == 0
        )
        (tmp_path / "leads.csv").write_text("Phone\n+14155550100\n")
        assert (
            cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "acme").exit_code
            == 0
        )
        sent = quote(TOKEN, safe="")
        echo = f"no route for /hook?token={sent} ({quote_plus(TOKEN)}, {sent.lower()}, {TOKEN})"
        http.answer(500, echo.encode())
        result = cli("tick", "--now", T0)
        assert result.exit_code == 0, result.output
    [request] = http.requests
    assert request.path == f"/hook?token={sent}&v=2"  # one query value, the token whole
    assert parse_qs(request.path.partition("?")[2]) == {"token": [TOKEN], "v": ["2"]}
    [error] = [r["last_error"] for r in rows(db, "SELECT last_error FROM lead_stage_actions")]
    assert error.startswith("channel sms: HTTP 500: no route for /hook?token=*** (***, ***, ***)")
    blobs = [error, result.output, cli("actions", "list").output, cli("status").output]
    for form in (TOKEN, sent, sent.lower(), quote_plus(TOKEN), "r+s", "r%20s"):
        assert all(form not in blob for blob in blobs), form


def test_a_basic_auth_echo_of_the_twilio_token_is_scrubbed(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("TWILIO_SID", "AC0000")
    monkeypatch.setenv("TWILIO_TOKEN", TOKEN)
    basic = base64.b64encode(f"AC0000:{TOKEN}".encode()).decode()
    with http_server() as (url, http):
        extra = (
            "    channels:\n"
            "      sms: {transport: twilio, account_sid: '${TWILIO_SID}',"
            f" auth_token: '${{TWILIO_TOKEN}}', base_url: '{url}', from: '+15550100000'}}"
        )
        assert (
            cli("apply", write_yaml(tmp_path, sms_pipeline("acme"), acme_extra=extra)).exit_code
            == 0
        )
        (tmp_path / "leads.csv").write_text("Phone\n+14155550100\n")
        assert (
            cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "acme").exit_code
            == 0
        )
        http.answer(400, {"message": f"bad request; you sent Authorization: Basic {basic}"})
        assert cli("tick", "--now", T0).exit_code == 0
    [request] = http.requests
    assert request.headers["Authorization"] == f"Basic {basic}"  # what the server could echo
    [row] = rows(db, "SELECT status, last_error FROM lead_stage_actions")
    assert row["status"] == "failed" and "Authorization: Basic ***" in row["last_error"]
    assert basic not in cli("actions", "list").output


# --- item 20: who email is from ------------------------------------------------------------


def test_a_from_that_is_not_an_address_is_refused_by_validate(cli, tmp_path):
    extra = '    channels:\n      email: {transport: outbox, from: "Acme Sales"}'
    yaml = write_yaml(tmp_path, email_pipeline("Hi", "Hello"), acme_extra=extra)
    line = 1 + yaml.read_text().splitlines().index(extra.splitlines()[1])
    result = cli("validate", yaml)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{yaml}:{line}: account 'acme' channels.email.from 'Acme Sales' is not an email"
        ' address like "Acme Sales <sales@acme.example>"'
    ]


def test_smtp_with_an_empty_from_variable_sends_nothing_rather_than_a_placeholder(
    cli, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("SMTP_FROM", "")
    with smtp_server() as (server, smtp):
        extra = (
            "    channels:\n"
            f"      email: {{transport: smtp, host: 127.0.0.1, port: {server.port},"
            " security: none, timeout: 5, from: '${SMTP_FROM}'}"
        )
        assert (
            cli("apply", write_yaml(tmp_path, email_pipeline("Hi", "Hello"), extra)).exit_code == 0
        )
        (tmp_path / "leads.csv").write_text("Email\nana@lead.example\n")
        assert (
            cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip").exit_code
            == 0
        )
        assert cli("tick", "--now", T0).exit_code == 0
    assert smtp.received == []
    [row] = rows(db, "SELECT status, last_error FROM lead_stage_actions WHERE type = 'email'")
    assert row == {"status": "pending", "last_error": "channel email: no from address configured"}


def test_without_a_channels_section_the_outbox_shows_a_placeholder_sender(cli, tmp_path):
    yaml = tmp_path / "pipelines.yaml"
    text = write_yaml(tmp_path, email_pipeline("Hi", "Hello")).read_text()
    start, end = text.index("channels:\n"), text.index("pipelines:\n")
    yaml.write_text(text[:start] + text[end:])
    assert cli("validate", yaml).exit_code == 0
    assert cli("apply", yaml).exit_code == 0
    (tmp_path / "leads.csv").write_text("Email\nana@lead.example\n")
    assert (
        cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip").exit_code
        == 0
    )
    assert cli("tick", "--now", T0).exit_code == 0
    [eml] = outbox(tmp_path)
    assert "From: pipectl@pipectl.local\r\n" in eml.read_bytes().decode()
