"""ImapFetcher against a real Dovecot: read-only, incremental by UID, failures as SourceError."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipectl.inbound import Cursor, SourceError
from pipectl.inbound import imap as imap_module
from pipectl.inbound.imap import ImapFetcher
from tests import mail_samples as samples
from tests.imap_server import Mailbox

pytestmark = pytest.mark.slow  # starts a real Dovecot IMAP server

NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch(mailbox: Mailbox, cursors=None, **config):
    fetcher = ImapFetcher("acme", {**mailbox.config, **config}, timeout=5)
    return list(fetcher.fetch(cursors or {}, now=NOW))


def last_cursors(found) -> dict[str, Cursor]:
    return {cursor.folder: cursor for _, cursor in found}


@pytest.fixture
def commands(monkeypatch):
    """Every IMAP command the fetcher sends (the real server still answers each)."""
    sent: list[str] = []
    original = imap_module._ReadOnly._command

    def record(self, name, *args):
        sent.append(" ".join([name, *(str(a) for a in args)]))
        return original(self, name, *args)

    monkeypatch.setattr(imap_module._ReadOnly, "_command", record)
    return sent


def test_reads_new_mail_oldest_first_and_marks_nothing(mailbox: Mailbox):
    mailbox.append(samples.gmail_reply(), samples.exchange_auto_reply(), samples.postfix_dsn())
    before = mailbox.flags()

    found = fetch(mailbox)

    assert [m.kind for m, _ in found] == ["reply", "auto_reply", "bounce"]
    assert [c.last_uid for _, c in found] == [1, 2, 3]
    assert found[0][0].body == "Sounds good, let's talk Tuesday at 10."
    after = mailbox.flags()
    assert after == before  # same messages, same flags: nothing seen, moved or deleted
    assert all("\\Seen" not in flags for flags in after.values())


def test_only_examine_search_and_peek_reach_the_server(mailbox: Mailbox, commands):
    mailbox.append(samples.gmail_reply())
    fetch(mailbox)
    verbs = {c.split()[0] for c in commands}
    assert verbs <= {"CAPABILITY", "LOGIN", "LIST", "EXAMINE", "UID", "LOGOUT"}
    assert any(c.startswith("EXAMINE") for c in commands)
    fetches = [c for c in commands if c.startswith("UID FETCH")]
    assert any("BODY.PEEK[]" in c for c in fetches)
    assert all("BODY.PEEK[]" in c or c.endswith("(UID RFC822.SIZE)") for c in fetches)


def test_the_guard_refuses_commands_that_change_the_mailbox(mailbox: Mailbox):
    mailbox.append(samples.gmail_reply())
    conn = ImapFetcher("acme", mailbox.config)._connect()
    try:
        conn.select('"INBOX"', readonly=True)
        for attempt in (
            lambda: conn.uid("STORE", "1", "+FLAGS", "(\\Seen)"),
            lambda: conn.select("INBOX"),
            conn.expunge,
            lambda: conn.uid("MOVE", "1", "Trash"),
        ):
            with pytest.raises(Exception, match="reads mailboxes only"):
                attempt()
    finally:
        conn.logout()
    assert "\\Seen" not in mailbox.flags()[1]


def test_second_sync_with_nothing_new_sends_one_search_and_fetches_nothing(
    mailbox: Mailbox, commands
):
    mailbox.append(samples.gmail_reply(), samples.plain_mail())
    cursors = last_cursors(fetch(mailbox))
    commands.clear()

    assert fetch(mailbox, cursors) == []
    searches = [c for c in commands if c.startswith("UID SEARCH")]
    assert searches == ["UID SEARCH UID 3:*"]  # the server answers UID 2 to this; filtered
    assert not [c for c in commands if c.startswith("UID FETCH")]

    mailbox.append(samples.gmail_vacation())
    found = fetch(mailbox, cursors)
    assert [(m.kind, c.last_uid) for m, c in found] == [("auto_reply", 3)]


def test_first_sync_reads_14_days_back(mailbox: Mailbox):
    old = datetime.now(UTC) - timedelta(days=30)
    imap = mailbox.connect()
    try:
        imap.append("INBOX", "", old, samples.plain_mail(message_id="<old@buyer.test>"))
    finally:
        imap.logout()
    mailbox.append(samples.plain_mail(message_id="<new@buyer.test>"))
    assert [m.external_id for m, _ in fetch(mailbox)] == ["<new@buyer.test>"]


def test_changed_uidvalidity_rereads_the_folder_from_14_days_back(mailbox: Mailbox):
    mailbox.append(samples.gmail_reply(), samples.plain_mail())
    cursors = last_cursors(fetch(mailbox))
    mailbox.set_uidvalidity(cursors["INBOX"].uidvalidity + 1000)

    found = fetch(mailbox, cursors)

    assert [m.external_id for m, _ in found] == [
        "<CAF=gmail.reply.1@mail.gmail.com>",
        "<plain.1@buyer.test>",
    ]
    assert {c.uidvalidity for _, c in found} == {cursors["INBOX"].uidvalidity + 1000}


def test_many_messages_are_read_in_batches_in_uid_order(mailbox: Mailbox):
    count = imap_module.BATCH * 2 + 7
    mailbox.append(*(samples.plain_mail(message_id=f"<m{i}@buyer.test>") for i in range(count)))
    found = fetch(mailbox)
    assert [c.last_uid for _, c in found] == list(range(1, count + 1))
    assert found[-1][0].external_id == f"<m{count - 1}@buyer.test>"


def test_bad_messages_are_yielded_and_nothing_after_them_is_skipped(mailbox: Mailbox):
    mailbox.append(
        samples.broken_mime(),
        samples.unknown_charset(),
        samples.no_date(),
        samples.no_message_id(),
        samples.big_attachment(),
        samples.huge_header(),
        samples.gmail_reply(),
    )
    found = fetch(mailbox)
    assert len(found) == 7
    assert found[3][0].external_id == f"INBOX/{found[3][1].uidvalidity}/4"
    assert found[4][0].body == "Our requirements are attached."
    assert found[-1][0].body == "Sounds good, let's talk Tuesday at 10."


def test_login_refused_names_account_source_and_server_never_the_password(mailbox: Mailbox):
    with pytest.raises(SourceError) as error:
        fetch(mailbox, password="wrong-secret-value")
    text = str(error.value)
    assert text.startswith(f"account acme: imap://{mailbox.user}@127.0.0.1:{mailbox.server.port}:")
    assert "login refused" in text
    assert "wrong-secret-value" not in text and mailbox.password not in text


def test_a_non_ascii_password_logs_in_with_authenticate_plain(dovecot, commands):
    mailbox = dovecot.utf8_mailbox()
    mailbox.append(samples.plain_mail(message_id="<utf8@acme.test>"))
    found = fetch(mailbox)
    assert [m.external_id for m, _ in found] == ["<utf8@acme.test>"]
    assert "AUTHENTICATE PLAIN" in commands and not any(c.startswith("LOGIN") for c in commands)
    with pytest.raises(SourceError) as error:  # the wrong non-ASCII password: refused, unnamed
        fetch(mailbox, password="wröng-pässword")
    text = str(error.value)
    assert text.startswith(f"account acme: imap://{mailbox.user}@127.0.0.1:") and "login" in text
    assert "wröng-pässword" not in text and "Traceback" not in text


def test_a_non_ascii_password_without_auth_plain_names_account_and_server():
    """A server that offers LOGIN only (ASCII): refused before any credential is sent."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve():
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK IMAP ready\r\n")
            for line in lines:
                received.append(line)
                tag = line.split(b" ", 1)[0]
                if b"CAPABILITY" in line.upper():
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=LOGIN\r\n%s OK done\r\n" % tag)
                else:
                    conn.sendall(b"%s BAD no\r\n" % tag)

    threading.Thread(target=serve, daemon=True).start()
    config = {"host": "127.0.0.1", "port": port, "security": "none", "username": "team@acme.test"}
    try:
        with pytest.raises(SourceError) as error:
            list(
                ImapFetcher("acme", {**config, "password": "pässwörd99"}, timeout=5).fetch(
                    {}, now=NOW
                )
            )
    finally:
        server.close()
    text = str(error.value)
    assert text.startswith(f"account acme: imap://team@acme.test@127.0.0.1:{port}:")
    assert "AUTH=PLAIN" in text and "pässwörd99" not in text
    assert not any(b"LOGIN" in line or b"AUTHENTICATE" in line for line in received)


def test_server_down_is_a_source_error(mailbox: Mailbox):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(SourceError, match=rf"account acme: imap://.*:{port}: cannot connect"):
        fetch(mailbox, port=port)


@pytest.mark.parametrize("answer", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b""])
def test_garbage_or_silence_is_a_source_error_within_the_timeout(mailbox: Mailbox, answer):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            if answer:
                conn.sendall(answer)
            time.sleep(3)

    threading.Thread(target=serve, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match="cannot connect"):
            list(
                ImapFetcher("acme", {**mailbox.config, "port": port}, timeout=1).fetch({}, now=NOW)
            )
    finally:
        server.close()
    assert time.monotonic() - started < 2.5


def test_the_sent_folder_is_refused_and_other_folders_still_read(mailbox: Mailbox):
    mailbox.append(samples.plain_mail(message_id="<sent@acme.test>"), folder="Sent")
    mailbox.append(samples.gmail_reply())
    fetcher = ImapFetcher("acme", {**mailbox.config, "folders": ["Sent", "INBOX"]}, timeout=5)
    found = []
    with pytest.raises(SourceError, match="folder 'Sent' holds the team's own mail"):
        for item in fetcher.fetch({}, now=NOW):
            found.append(item)
    assert [m.external_id for m, _ in found] == ["<CAF=gmail.reply.1@mail.gmail.com>"]


def test_several_folders_each_keep_their_cursor(mailbox: Mailbox):
    mailbox.append(samples.gmail_reply())
    mailbox.append(samples.postfix_dsn(), folder="Bounces")
    found = fetch(mailbox, folders=["INBOX", "Bounces"])
    assert [(c.folder, c.last_uid, m.kind) for m, c in found] == [
        ("INBOX", 1, "reply"),
        ("Bounces", 1, "bounce"),
    ]
    assert fetch(mailbox, last_cursors(found), folders=["INBOX", "Bounces"]) == []


def test_a_missing_folder_fails_the_source_after_the_others_are_read(mailbox: Mailbox):
    mailbox.append(samples.gmail_reply())
    fetcher = ImapFetcher("acme", {**mailbox.config, "folders": ["Nope", "INBOX"]}, timeout=5)
    found = []
    with pytest.raises(SourceError, match="cannot open folder 'Nope'"):
        for item in fetcher.fetch({}, now=NOW):
            found.append(item)
    assert len(found) == 1


def test_name_and_kind_are_known_before_any_connection():
    fetcher = ImapFetcher(
        "acme", {"host": "imap.example", "username": "ann", "password": "pw-1234"}
    )
    assert (fetcher.kind, fetcher.name) == ("imap", "imap://ann@imap.example:993")
    starttls = ImapFetcher("acme", {"host": "h", "username": "u", "security": "starttls"})
    assert starttls.name == "imap://u@h:143"
    assert list(fetcher.statuses(["SM1"])) == []


def test_large_messages_are_fetched_a_few_at_a_time(mailbox: Mailbox, commands):
    mailbox.append(
        samples.big_attachment(),
        samples.big_attachment(),
        samples.plain_mail(message_id="<a@buyer.test>"),
        samples.plain_mail(message_id="<b@buyer.test>"),
    )
    found = fetch(mailbox)
    assert [c.last_uid for _, c in found] == [1, 2, 3, 4]
    bodies = [c for c in commands if c.startswith("UID FETCH") and "BODY.PEEK[]" in c]
    # 10 MB each: never both in one answer; the small ones ride with the second.
    assert [c.split()[2] for c in bodies] == ["1", "2,3,4"]


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_and_starttls_read_mail_when_the_certificate_is_trusted(
    mailbox: Mailbox, monkeypatch, security
):
    mailbox.append(samples.gmail_reply())
    monkeypatch.setenv("SSL_CERT_FILE", str(mailbox.server.cert))  # trust the test server's
    port = mailbox.server.tls_port if security == "ssl" else mailbox.server.port
    found = fetch(mailbox, security=security, port=port)
    assert [m.kind for m, _ in found] == ["reply"]


def test_an_untrusted_certificate_is_refused(mailbox: Mailbox, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent.pem")
    with pytest.raises(SourceError, match="cannot connect: .*CERTIFICATE_VERIFY_FAILED"):
        fetch(mailbox, security="ssl", port=mailbox.server.tls_port)


def test_a_folder_with_a_non_ascii_name_is_read(mailbox: Mailbox):
    mailbox.append(samples.postfix_dsn(), folder="R&APw-ckl&AOQ-ufer")  # Rückläufer, as IMAP has it
    found = fetch(mailbox, folders=["Rückläufer"])
    assert [(c.folder, m.kind) for m, c in found] == [("Rückläufer", "bounce")]
