"""`pipectl sync`, the sync `tick` runs first, and what `status` shows about it.

A source that cannot be read is a real one: an IMAP port on 127.0.0.1 that nobody listens on,
or a password variable that is not set. The end to end flow with Dovecot and a Twilio-shaped
server is in test_sync_e2e.py.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .channel_servers import free_port
from .conftest import dump, rows
from .scenario import T0, outbox, write_yaml

pytestmark = pytest.mark.slow  # a real IMAP server (Dovecot) and SMTP server

SECRET = "s3cret-imap-pw-5521"

ONE_EMAIL = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait_for_reply: {timeout: 2d}
"""


def set_inbox(db: Path, account: str, inbox: dict) -> None:
    """Give the account an inbox, as `channels.email.inbox` in the YAML stores it."""
    conn = sqlite3.connect(db)
    try:
        channels = json.loads(
            conn.execute("SELECT channels FROM accounts WHERE key = ?", (account,)).fetchone()[0]
        )
        channels.setdefault("email", {})["inbox"] = inbox
        conn.execute(
            "UPDATE accounts SET channels = ? WHERE key = ?", (json.dumps(channels), account)
        )
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def down(cli, tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """acme's inbox points at a closed port; returns the source's name."""
    assert cli("apply", write_yaml(tmp_path, ONE_EMAIL)).exit_code == 0
    (tmp_path / "leads.csv").write_text("Email,First Name\nann@example.com,Ann\n")
    assert (
        cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip").exit_code
        == 0
    )
    port = free_port()
    monkeypatch.setenv("IMAP_PASSWORD", SECRET)
    set_inbox(
        db,
        "acme",
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "username": "team@acme.example",
            "password": "${IMAP_PASSWORD}",
        },
    )
    return f"imap://team@acme.example@127.0.0.1:{port}"


def test_sync_without_sources_says_so(cli, tmp_path):
    assert cli("apply", write_yaml(tmp_path, ONE_EMAIL)).exit_code == 0
    result = cli("sync")
    assert result.exit_code == 0, result.output
    assert "no inbound sources configured" in result.stdout


def test_a_source_that_is_down_fails_the_sync_naming_it_never_the_password(cli, db, down):
    result = cli("sync", "--now", T0)
    assert result.exit_code == 1
    assert "account acme" in result.stderr and "127.0.0.1" in result.stderr
    assert "Traceback" not in result.output and SECRET not in result.output
    assert "acme: fetched 0" in result.stdout
    [source] = rows(db, "SELECT * FROM sync_sources")
    assert source["kind"] == "imap" and source["name"] == down
    assert source["last_attempt_at"] == T0 and source["failing_since"] == T0
    assert source["last_success_at"] is None and "127.0.0.1" in source["last_error"]
    assert SECRET not in json.dumps(rows(db, "SELECT * FROM sync_sources"))


def test_status_warns_about_a_failing_source_until_it_works(cli, db, down):
    assert cli("sync", "--now", T0).exit_code == 1
    assert cli("tick", "--now", T0, "--no-sync").exit_code == 0  # no stale-tick warning
    status = cli("status", "--now", T0)
    assert "WARNING: acme: imap source" in status.stdout and "failing since" in status.stdout
    assert "last successful sync: never" in status.stdout
    assert cli("status", "--now", T0, "--check").exit_code == 1
    report = json.loads(cli("status", "--now", T0, "--json").stdout)
    [inbound] = report["accounts"][0]["inbound"]
    assert inbound["name"] == down and inbound["last_error"]
    # It works again: the warning goes, the last successful sync shows.
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE sync_sources SET last_success_at = ?, last_error = NULL, failing_since = NULL",
        ("2027-03-01T14:00:30Z",),
    )
    conn.commit()
    conn.close()
    status = cli("status", "--now", T0)
    assert "WARNING" not in status.stdout and "last synced 2027-03-01T14:00:30Z" in status.stdout


def test_tick_sends_even_when_its_sync_fails_and_exits_0(cli, db, tmp_path, down):
    result = cli("tick", "--now", T0, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["done"] == 1 and summary["sync_errors"]
    assert len(outbox(tmp_path)) == 1
    [source] = rows(db, "SELECT last_error, last_attempt_at FROM sync_sources")
    assert source["last_error"] and source["last_attempt_at"] == T0
    quiet = cli("tick", "--now", "2027-03-01T14:01:00Z", "-q")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_an_inbox_removed_from_the_yaml_no_longer_warns(cli, db, tmp_path, down):
    assert cli("sync", "--now", T0).exit_code == 1
    assert cli("apply", write_yaml(tmp_path, ONE_EMAIL)).exit_code == 0  # no inbox any more
    result = cli("sync", "--now", T0)
    assert result.exit_code == 0 and "no inbound sources configured" in result.stdout
    assert rows(db, "SELECT * FROM sync_sources") == []
    assert "imap source" not in cli("status", "--now", T0).stdout


def test_tick_no_sync_reads_nothing(cli, db, down):
    assert cli("tick", "--now", T0, "--no-sync").exit_code == 0
    assert rows(db, "SELECT * FROM sync_sources") == []


def test_a_missing_password_variable_is_named_never_a_value(cli, db, down, monkeypatch):
    monkeypatch.delenv("IMAP_PASSWORD")
    result = cli("sync", "--now", T0)
    assert result.exit_code == 1
    assert "IMAP_PASSWORD is not set" in result.stderr and "account acme" in result.stderr
    [source] = rows(db, "SELECT name, last_error FROM sync_sources")
    assert "IMAP_PASSWORD" in source["last_error"]


def test_sync_json_lists_each_account_and_source(cli, down):
    result = cli("sync", "--now", T0, "--json", "--account", "acme")
    assert result.exit_code == 1
    [acme] = json.loads(result.stdout)
    assert acme["account"] == "acme" and acme["fetched"] == 0
    assert [(s["kind"], s["name"]) for s in acme["sources"]] == [("imap", down)]
    assert acme["sources"][0]["error"]


def test_replies_list_shows_what_arrived_and_filters(cli, db, tmp_path):
    assert cli("apply", write_yaml(tmp_path, ONE_EMAIL)).exit_code == 0
    (tmp_path / "leads.csv").write_text("Email,First Name\nann@example.com,Ann\n")
    assert (
        cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip").exit_code
        == 0
    )
    assert cli("tick", "--now", T0, "--no-sync").exit_code == 0
    from pipectl.inbound import InboundMessage
    from pipectl.store import Store

    store = Store(db)
    aid = store.config.account_by_key("acme")["id"]
    for i, (kind, sender) in enumerate(
        [("reply", "ann@example.com"), ("auto_reply", "ann@example.com"), ("reply", "x@y.example")]
    ):
        message = InboundMessage(
            "email", "imap", f"<m{i}@mail>", sender, kind, f"text {i}", f"2027-03-01T15:0{i}:00Z"
        )
        store.inbound.record_inbound(aid, message, None, None, T0)
    store.close()
    listed = json.loads(cli("replies", "list", "--json").stdout)
    assert [(r["kind"], r["sender"]) for r in listed] == [
        ("reply", "x@y.example"),
        ("auto_reply", "ann@example.com"),
        ("reply", "ann@example.com"),
    ]
    unmatched = json.loads(cli("replies", "list", "--unmatched", "--json").stdout)
    assert [r["sender"] for r in unmatched] == ["x@y.example"] and unmatched[0]["lead_id"] is None
    autos = cli("replies", "list", "--kind", "auto_reply", "--account", "acme")
    assert (
        autos.exit_code == 0 and "auto_reply" in autos.stdout and "x@y.example" not in autos.stdout
    )
    bad = cli("replies", "list", "--kind", "vacation")
    assert bad.exit_code == 2 and "unknown kind" in bad.stderr
    shown = cli("leads", "show", "ann@example.com")
    assert "auto-reply by email" in shown.stdout and "reply by email" in shown.stdout


REPLY_WAIT = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Quick question", body: "Hello"}
          - wait_for_reply: {timeout: 2d, on_reply: responded}
      - key: responded
        actions:
          - wait: 1d
"""
SENT_AT = "2026-11-30T17:00:00Z"
SYNC_AT = "2026-11-30T18:30:00Z"


def test_sync_reads_a_real_mailbox_acts_once_and_clears_the_warning(
    cli, db, tmp_path, mailbox, monkeypatch
):
    from .mail_samples import exchange_auto_reply, gmail_reply, postfix_dsn

    inbox = mailbox.config
    acme = (
        "    channels:\n"
        "      email:\n"
        '        from: "Ann <ann@acme.test>"\n'
        f"        inbox: {{host: 127.0.0.1, port: {inbox['port']}, security: none,"
        f' username: "{inbox["username"]}", password: "${{IMAP_PASSWORD}}"}}'
    )
    result = cli("apply", write_yaml(tmp_path, REPLY_WAIT, acme_extra=acme))
    assert result.exit_code == 0, result.output
    (tmp_path / "leads.csv").write_text("Email\nbob@example.com\ncarol@example.com\n")
    assert (
        cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip").exit_code
        == 0
    )
    # Sending needs no inbox password: the inbox's ${VAR}s are read by sync only.
    assert cli("tick", "--now", SENT_AT, "--no-sync").exit_code == 0
    monkeypatch.setenv("IMAP_PASSWORD", "wrong-password-3141")
    sent = {
        r["recipient"]: r["message_id"]
        for r in rows(db, "SELECT recipient, message_id FROM deliveries")
    }
    mailbox.append(
        gmail_reply(
            sender="bob@example.com",
            answers=sent["bob@example.com"],
            date="Mon, 30 Nov 2026 10:02:11 -0800",
        ),
        exchange_auto_reply(sender="bob@example.com", answers=sent["bob@example.com"]),
        postfix_dsn(failed="carol@example.com", message_id=sent["carol@example.com"]),
    )

    failed = cli("sync", "--now", SYNC_AT)
    assert failed.exit_code == 1 and "wrong-password-3141" not in failed.output
    assert "WARNING: acme: imap source" in cli("status", "--now", SYNC_AT).stdout
    assert rows(db, "SELECT * FROM replies") == []

    monkeypatch.setenv("IMAP_PASSWORD", inbox["password"])
    result = cli("sync", "--now", SYNC_AT)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "acme: fetched 3, replies 1, auto-replies 1, bounces 1, opt-outs 0, unmatched 0"
    )
    kinds = {
        r["kind"]: r
        for r in rows(db, "SELECT r.*, l.email FROM replies r JOIN leads l ON l.id = r.lead_id")
    }
    assert set(kinds) == {"reply", "auto_reply", "bounce"}
    assert (
        kinds["reply"]["email"] == "bob@example.com"
        and kinds["bounce"]["email"] == "carol@example.com"
    )
    assert (
        kinds["reply"]["body"].startswith("Sounds good") and "wrote:" not in kinds["reply"]["body"]
    )
    assert rows(
        db,
        "SELECT s.key FROM lead_stages ls JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
        " JOIN leads l ON l.id = ls.lead_id WHERE l.email = 'bob@example.com'"
        " AND ls.exited_at IS NULL",
    ) == [{"key": "responded"}]
    carol = rows(
        db,
        "SELECT a.status, a.last_error, d.status AS delivery FROM lead_stage_actions a"
        " JOIN deliveries d ON d.lead_stage_action_id = a.id"
        " WHERE d.recipient = 'carol@example.com'",
    )
    assert carol[0]["status"] == "failed" and "5.1.1" in carol[0]["last_error"]
    assert carol[0]["delivery"] == "bounced"
    assert rows(db, "SELECT address, reason FROM suppressions") == [
        {"address": "carol@example.com", "reason": "bounce"}
    ]
    status = cli("status", "--now", SYNC_AT)
    assert "imap source" not in status.stdout and f"last synced {SYNC_AT}; ok" in status.stdout
    assert all("Seen" not in flags for flags in mailbox.flags().values())

    again = cli("sync", "--now", "2026-11-30T18:31:00Z")
    assert again.exit_code == 0 and "fetched 0" in again.stdout
    assert len(rows(db, "SELECT * FROM replies")) == 3


def test_one_failing_source_never_stops_another_accounts(cli, db, tmp_path, mailbox, monkeypatch):
    from .mail_samples import plain_mail

    inbox = mailbox.config
    beta = (
        "    channels:\n"
        "      email:\n"
        f"        inbox: {{host: 127.0.0.1, port: {inbox['port']}, security: none,"
        f' username: "{inbox["username"]}", password: "${{BETA_IMAP_PASSWORD}}"}}'
    )
    acme = (
        "    channels:\n"
        "      email:\n"
        f"        inbox: {{host: 127.0.0.1, port: {free_port()}, security: none,"
        ' username: "team@acme.example", password: "${ACME_IMAP_PASSWORD}"}'
    )
    result = cli("apply", write_yaml(tmp_path, ONE_EMAIL, acme_extra=acme, beta_extra=beta))
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("ACME_IMAP_PASSWORD", "acme-pw-2718")
    monkeypatch.setenv("BETA_IMAP_PASSWORD", inbox["password"])
    mailbox.append(plain_mail())

    result = cli("sync", "--now", SYNC_AT)

    assert result.exit_code == 1
    assert "account acme" in result.stderr and "account beta" not in result.stderr
    assert "beta: fetched 1" in result.stdout and "unmatched 1" in result.stdout
    assert [r["account_id"] for r in rows(db, "SELECT account_id FROM replies")] == [
        rows(db, "SELECT id FROM accounts WHERE key = 'beta'")[0]["id"]
    ]
    sources = {
        r["key"]: r
        for r in rows(
            db,
            "SELECT a.key, s.last_success_at, s.last_error FROM sync_sources s"
            " JOIN accounts a ON a.id = s.account_id",
        )
    }
    assert sources["beta"]["last_success_at"] == SYNC_AT and sources["beta"]["last_error"] is None
    assert sources["acme"]["last_success_at"] is None and sources["acme"]["last_error"]


def test_the_teams_own_mail_in_the_thread_is_no_reply(cli, db, tmp_path, mailbox, monkeypatch):
    from .mail_samples import plain_mail

    inbox = mailbox.config
    acme = (
        "    channels:\n"
        "      email:\n"
        '        from: "Ann <ann@acme.test>"\n'
        f"        inbox: {{host: 127.0.0.1, port: {inbox['port']}, security: none,"
        f' username: "{inbox["username"]}", password: "${{IMAP_PASSWORD}}"}}'
    )
    monkeypatch.setenv("IMAP_PASSWORD", inbox["password"])
    assert cli("apply", write_yaml(tmp_path, REPLY_WAIT, acme_extra=acme)).exit_code == 0
    (tmp_path / "leads.csv").write_text("Email\nbob@example.com\n")
    assert (
        cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip").exit_code
        == 0
    )
    assert cli("tick", "--now", SENT_AT, "--no-sync").exit_code == 0
    [sent] = rows(db, "SELECT message_id FROM deliveries")
    # A colleague's note in the thread, sent from the team's own address (CC'd to the inbox).
    mailbox.append(
        plain_mail(
            sender="Ann <ann@acme.test>",
            subject="Re: Quick question",
            text="Bob, any news?",
            date="Mon, 30 Nov 2026 18:00:00 +0000",
            extra=f"In-Reply-To: {sent['message_id']}\nReferences: {sent['message_id']}",
        )
    )
    result = cli("sync", "--now", SYNC_AT)
    assert result.exit_code == 0, result.output
    assert "unmatched 1" in result.stdout
    assert rows(db, "SELECT lead_id, sender FROM replies") == [
        {"lead_id": None, "sender": "ann@acme.test"}
    ]
    assert rows(db, "SELECT status FROM lead_stage_actions WHERE type = 'wait_for_reply'") == [
        {"status": "awaiting_reply"}
    ]


def test_a_message_with_odd_values_is_still_recorded_never_stalling_the_sync(cli, db, tmp_path):
    """A fetcher's odd kind or date must not make every sync fail on that message again."""
    from pipectl.inbound import InboundMessage
    from pipectl.inbound.sync import _sane
    from pipectl.store import Store

    assert cli("apply", write_yaml(tmp_path, ONE_EMAIL)).exit_code == 0
    odd = InboundMessage("email", "imap", "<odd@x>", "a@b.example", "vacation", "hi", "")
    store = Store(db)
    try:
        aid = store.config.account_by_key("acme")["id"]
        recorded = store.inbound.record_inbound(aid, _sane(odd, T0), None, None, T0)
    finally:
        store.close()
    assert recorded.new
    assert rows(db, "SELECT kind, received_at FROM replies") == [
        {"kind": "reply", "received_at": T0}
    ]


class EchoingImap:
    """An IMAP server that refuses every login, quoting the line it received (some do)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"* OK IMAP ready\r\n")
                for line in lines:
                    self.received.append(line)
                    tag, _, command = line.rstrip(b"\r\n").partition(b" ")
                    verb = command.split(b" ", 1)[0].upper()
                    if verb == b"CAPABILITY":
                        conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n%s OK done\r\n" % tag)
                    elif verb in (b"LOGIN", b"AUTHENTICATE"):
                        if verb == b"AUTHENTICATE":
                            conn.sendall(b"+ \r\n")
                            line = line.rstrip(b"\r\n") + b" " + lines.readline()
                            self.received.append(line)
                        echo = line.rstrip(b"\r\n")
                        conn.sendall(
                            b"%s NO [AUTHENTICATIONFAILED] bad credentials in: %s\r\n" % (tag, echo)
                        )
                    else:
                        conn.sendall(b"%s BAD unknown\r\n" % tag)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echoing_imap() -> Iterator[EchoingImap]:
    server = EchoingImap()
    yield server
    server.close()


def forms_of(password: str, user: str) -> set[str]:
    """The password as it may reach a text: raw, IMAP-quoted, escaped, base64 (AUTH PLAIN)."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    forms = {password, quoted, json.dumps(password)[1:-1]}
    for text in (password, quoted):
        forms.update((repr(text)[1:-1], repr(text.encode())[2:-1]))
    forms.add(base64.b64encode(f"\0{user}\0{password}".encode()).decode())
    return forms


@pytest.mark.parametrize(
    "password", ['sec"ret\\pw', "two words pw", "back\\slash\\pw", 'it\'s "x"\\', "pässwörd-ü1"]
)
def test_a_password_the_server_echoes_never_reaches_output_or_database(
    cli, db, tmp_path, monkeypatch, echoing_imap, password
):
    assert cli("apply", write_yaml(tmp_path, ONE_EMAIL)).exit_code == 0
    monkeypatch.setenv("IMAP_PASSWORD", password)
    user = "team@acme.example"
    set_inbox(
        db,
        "acme",
        {
            "host": "127.0.0.1",
            "port": echoing_imap.port,
            "security": "none",
            "username": user,
            "password": "${IMAP_PASSWORD}",
        },
    )
    result = cli("sync", "--now", T0)
    as_json = cli("sync", "--now", T0, "--json")
    status = cli("status", "--now", T0)
    status_json = cli("status", "--now", T0, "--json")
    assert result.exit_code == 1 and as_json.exit_code == 1
    assert f"account acme: imap://{user}@127.0.0.1:{echoing_imap.port}" in result.stderr
    assert "bad credentials in:" in result.stderr and "Traceback" not in result.output
    # The server did get the password, and quoted it back.
    sent = b"".join(echoing_imap.received).decode(errors="replace")
    assert any(form in sent for form in forms_of(password, user))
    texts = {
        "sync": result.output,
        "sync --json": as_json.output,
        "status": status.output,
        "status --json": status_json.output,
        "database": dump(db),
    }
    assert "bad credentials in:" in texts["database"]
    for where, text in texts.items():
        for form in forms_of(password, user):
            assert form not in text, f"{form!r} in {where}"
