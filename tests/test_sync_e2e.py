"""End to end through the CLI: mail sent over real SMTP, answers delivered into a real Dovecot,
texts through a Twilio-shaped server; `pipectl sync` and `tick` read them, and the database is
checked after each step."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import mail_samples as samples
from tests.channel_servers import smtp_server
from tests.conftest import rows
from tests.imap_server import Mailbox
from tests.scenario import pipectl, spawn, wait_for
from tests.twilio_server import ACCOUNT_SID, AUTH_TOKEN, NUMBER, twilio_server

pytestmark = pytest.mark.slow  # starts a real Dovecot IMAP server and kills syncs

START = datetime.now(UTC).replace(microsecond=0)
OURS = "ann@acme.test"
BOB, CAROL, DAVE = "bob@buyer.example", "carol@buyer.example", "dave@buyer.example"
BOB_PHONE, CAROL_PHONE = "+12125550142", "+16465550102"

CONFIG = """\
version: 1
accounts:
  - key: acme
    timezone: UTC
    country: US
channels:
  email:
    transport: smtp
    host: 127.0.0.1
    port: {smtp_port}
    security: none
    from: "Ann Seller <ann@acme.test>"
    list_unsubscribe: "<mailto:unsubscribe@acme.test>"
    inbox:
      host: 127.0.0.1
      port: {imap_port}
      security: none
      username: ${{IMAP_USER}}
      password: ${{IMAP_PASSWORD}}
  sms:
    transport: twilio
    account_sid: ${{TWILIO_SID}}
    auth_token: ${{TWILIO_TOKEN}}
    from: "{number}"
    base_url: {twilio_url}
pipelines:
  - key: outreach
    account: acme
    stages:
      - key: intro
        on_failure: bounced
        actions:
          - email: {{subject: "Quick question", body: "Hi {{{{ lead.first_name }}}}"}}
          - wait_for_reply: {{timeout: 3d, on_reply: replied, on_timeout: quiet}}
      - {{key: replied, outcome: won}}
      - {{key: quiet, outcome: lost}}
      - {{key: bounced, outcome: lost}}
  - key: texts
    account: acme
    stages:
      - key: intro
        on_failure: undelivered
        actions:
          - sms: "Hi {{{{ lead.first_name }}}}, got a minute?"
          - wait_for_reply: {{timeout: 3d, on_reply: replied, on_timeout: quiet}}
      - {{key: replied, outcome: won}}
      - {{key: quiet, outcome: lost}}
      - {{key: undelivered, outcome: lost}}
"""


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """The servers, the CLI and the database of one test."""

    def __init__(self, cli, db: Path, tmp_path: Path, mailbox: Mailbox, smtp, twilio):
        self.cli, self.db, self.tmp_path, self.mailbox = cli, db, tmp_path, mailbox
        self.smtp, (self.twilio_url, self.twilio) = smtp, twilio

    def run(self, *args: str, code: int = 0):
        result = self.cli(*args)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    def enroll(self, pipeline: str, *leads: tuple[str, str, str]) -> None:
        csv = self.tmp_path / f"{pipeline}.csv"
        csv.write_text("Email,Phone,First Name\n" + "".join(f"{e},{p},{n}\n" for e, p, n in leads))
        self.run("leads", "import", str(csv), "--account", "acme", "--pipeline", pipeline)

    def sync(self, minutes: float, code: int = 0) -> dict:
        result = self.run("sync", "--now", at(minutes), "--json", code=code)
        [acme] = json.loads(result.stdout)
        return acme

    def message_id(self, email: str) -> str:
        [row] = rows(self.db, "SELECT message_id FROM deliveries WHERE recipient = ?", email)
        return row["message_id"]

    def replies(self, **where) -> list[dict]:
        sql = "SELECT * FROM replies"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        return rows(self.db, sql + " ORDER BY id", *where.values())

    def stage(self, email: str, pipeline: str = "outreach") -> str:
        """The stage the lead is in now in that pipeline."""
        [row] = rows(
            self.db,
            "SELECT ps.key FROM lead_stages ls JOIN pipeline_stages ps"
            " ON ps.id = ls.pipeline_stage_id JOIN enrollments e ON e.id = ls.enrollment_id"
            " JOIN pipelines p ON p.id = e.pipeline_id JOIN leads l ON l.id = ls.lead_id"
            " WHERE (l.email = ? OR l.phone = ?) AND p.key = ? AND ls.exited_at IS NULL",
            email,
            email,
            pipeline,
        )
        return row["key"]

    def actions(self, email: str) -> list[dict]:
        return rows(
            self.db,
            "SELECT a.type, a.status, a.last_error FROM lead_stage_actions a JOIN leads l"
            " ON l.id = a.lead_id WHERE l.email = ? OR l.phone = ? ORDER BY a.id",
            email,
            email,
        )


@pytest.fixture
def world(cli, db, tmp_path, mailbox: Mailbox, monkeypatch):
    monkeypatch.setenv("IMAP_USER", mailbox.user)
    monkeypatch.setenv("IMAP_PASSWORD", mailbox.password)
    monkeypatch.setenv("TWILIO_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_TOKEN", AUTH_TOKEN)
    with smtp_server() as (smtp, received), twilio_server() as twilio:
        config = CONFIG.format(
            smtp_port=smtp.port,
            imap_port=mailbox.server.port,
            number=NUMBER,
            twilio_url=twilio[0],
        )
        (tmp_path / "pipelines.yaml").write_text(config)
        w = World(cli, db, tmp_path, mailbox, received, twilio)
        w.run("validate", "pipelines.yaml")
        w.run("apply")
        yield w


def test_a_reply_ends_the_wait_and_an_auto_reply_changes_nothing(world: World):
    world.enroll("outreach", (BOB, "", "Bob"))
    world.run("tick", "--now", at(0), "--no-sync")
    assert len(world.smtp.to(BOB)) == 1
    sent = world.message_id(BOB)

    # Out of office: recorded against Bob and his send, nothing else moves.
    world.mailbox.append(samples.exchange_auto_reply(sender=BOB, answers=sent))
    counts = world.sync(1)
    assert (counts["fetched"], counts["auto_replies"], counts["replies"]) == (1, 1, 0)
    [auto] = world.replies()
    assert (auto["kind"], auto["source"], auto["sender"]) == ("auto_reply", "imap", BOB)
    assert auto["lead_id"] is not None and auto["delivery_id"] is not None
    assert world.stage(BOB) == "intro"
    assert [a["status"] for a in world.actions(BOB)] == ["done", "awaiting_reply"]

    # A real answer, in Gmail's layout with the thread quoted: the wait ends.
    world.mailbox.append(samples.gmail_reply(sender=BOB, answers=sent, date=_rfc2822(at(2))))
    counts = world.sync(3)
    assert (counts["fetched"], counts["replies"]) == (1, 1)
    reply = world.replies(kind="reply")[0]
    assert reply["body"] == "Sounds good, let's talk Tuesday at 10."
    assert reply["external_id"] == "<CAF=gmail.reply.1@mail.gmail.com>"
    world.run("tick", "--now", at(4), "--no-sync")
    assert world.stage(BOB) == "replied"
    assert len(world.smtp.to(BOB)) == 1  # no follow-up

    # Incremental: nothing new, nothing fetched, nothing recorded twice.
    counts = world.sync(5)
    assert counts["fetched"] == 0
    assert len(world.replies()) == 2
    # Read-only: the team's mailbox is as it was, nothing marked seen.
    assert all("\\Seen" not in f for f in world.mailbox.flags().values())
    assert len(world.mailbox.flags()) == 2


def test_a_bounce_fails_the_send_suppresses_the_address_and_follows_on_failure(world: World):
    world.enroll("outreach", (CAROL, "", "Carol"))
    world.run("tick", "--now", at(0), "--no-sync")
    sent = world.message_id(CAROL)

    world.mailbox.append(samples.postfix_delayed(failed=CAROL, message_id=sent))
    counts = world.sync(1)
    assert counts["fetched"] == 1 and counts["bounces"] == 0
    assert world.replies()[0]["kind"] == "soft_bounce"
    assert world.stage(CAROL) == "intro"

    world.mailbox.append(samples.postfix_dsn(failed=CAROL, message_id=sent))
    counts = world.sync(2)
    assert counts["bounces"] == 1
    [delivery] = rows(world.db, "SELECT status, status_detail FROM deliveries")
    assert delivery["status"] == "bounced" and "5.1.1" in delivery["status_detail"]
    email = world.actions(CAROL)[0]
    assert email["status"] == "failed"
    assert "5.1.1" in email["last_error"] and "User unknown" in email["last_error"]
    [suppressed] = rows(world.db, "SELECT channel, address, reason FROM suppressions")
    assert suppressed == {"channel": "email", "address": CAROL, "reason": "bounce"}
    world.run("tick", "--now", at(3), "--no-sync")
    assert world.stage(CAROL) == "bounced"


def test_a_microsoft_ndr_and_an_exim_bounce_are_matched_by_the_returned_message_id(world):
    world.enroll("outreach", (CAROL, "", "Carol"), (DAVE, "", "Dave"))
    world.run("tick", "--now", at(0), "--no-sync")
    world.mailbox.append(
        samples.microsoft_ndr(failed=CAROL, message_id=world.message_id(CAROL)),
        samples.exim_dsn(failed=DAVE, message_id=world.message_id(DAVE)),
    )
    assert world.sync(1)["bounces"] == 2
    statuses = rows(world.db, "SELECT recipient, status FROM deliveries ORDER BY recipient")
    assert statuses == [
        {"recipient": CAROL, "status": "bounced"},
        {"recipient": DAVE, "status": "bounced"},
    ]


def test_an_unsubscribe_mail_opts_out_and_strangers_are_kept_unmatched(world: World):
    erin = "erin@buyer.example"
    world.enroll("outreach", (DAVE, "", "Dave"), (erin, "", "Erin"))
    world.run("tick", "--now", at(0), "--no-sync")
    world.mailbox.append(
        samples.unsubscribe_mail(sender=DAVE),
        # To the list_unsubscribe address: an opt-out whatever it says.
        samples.plain_mail(
            sender=erin,
            to="unsubscribe@acme.test",
            subject="Re: list",
            text="Take me off.",
            message_id="<erin.1@buyer.example>",
        ),
        samples.plain_mail(sender="stranger@elsewhere.test", text="Who is this?"),
    )
    counts = world.sync(1)
    assert (counts["opt_outs"], counts["unmatched"]) == (2, 1)
    leads = rows(world.db, "SELECT email, do_not_contact FROM leads ORDER BY email")
    assert leads == [
        {"email": DAVE, "do_not_contact": 1},
        {"email": erin, "do_not_contact": 1},
    ]
    assert {"address": DAVE, "reason": "opt_out"} in rows(
        world.db, "SELECT address, reason FROM suppressions"
    )
    [stranger] = world.replies(sender="stranger@elsewhere.test")
    assert stranger["lead_id"] is None
    listed = json.loads(world.run("replies", "list", "--unmatched", "--json").stdout)
    assert [r["sender"] for r in listed] == ["stranger@elsewhere.test"]


def test_a_changed_uidvalidity_rereads_but_records_each_message_once(world: World):
    world.enroll("outreach", (BOB, "", "Bob"))
    world.run("tick", "--now", at(0), "--no-sync")
    world.mailbox.append(
        samples.gmail_vacation(sender=BOB, answers=world.message_id(BOB)),
        samples.plain_mail(sender="stranger@elsewhere.test"),
        samples.no_message_id(sender="other@elsewhere.test"),
    )
    assert world.sync(1)["fetched"] == 3
    [cursor] = rows(world.db, "SELECT uidvalidity, last_uid FROM sync_cursors")
    world.mailbox.set_uidvalidity(cursor["uidvalidity"] + 1)

    world.sync(2)

    [after] = rows(world.db, "SELECT uidvalidity, last_uid FROM sync_cursors")
    assert after == {"uidvalidity": cursor["uidvalidity"] + 1, "last_uid": 3}
    # Recorded once by Message-ID; the one without an id is keyed by folder/UIDVALIDITY/UID,
    # so after the change it is new, as the spec's key says.
    ids = [r["external_id"] for r in world.replies()]
    assert ids.count("<CAJ=vacation.1@mail.gmail.com>") == 1
    assert ids.count("<plain.1@buyer.test>") == 1


def test_texts_replies_stops_and_provider_failures(world: World):
    world.enroll("texts", ("", BOB_PHONE, "Bob"), ("", CAROL_PHONE, "Carol"))
    world.run("tick", "--now", at(0), "--no-sync")
    sent = {m["to"]: m["sid"] for m in world.twilio.outbound()}
    assert set(sent) == {BOB_PHONE, CAROL_PHONE}

    world.twilio.receive(BOB_PHONE, "Sure, call me at 3", START + timedelta(minutes=1))
    world.twilio.finish(sent[BOB_PHONE], "delivered")
    world.twilio.finish(sent[CAROL_PHONE], "failed", 21610, "Unsubscribed recipient")
    counts = world.sync(2)
    assert counts["replies"] == 1 and counts["failed_sends"] == 1
    [reply] = world.replies(channel="sms")
    assert (reply["sender"], reply["source"], reply["body"]) == (
        BOB_PHONE,
        "twilio",
        "Sure, call me at 3",
    )
    carol_sms = world.actions(CAROL_PHONE)[0]
    assert carol_sms["status"] == "failed" and "21610" in carol_sms["last_error"]
    assert rows(world.db, "SELECT channel, address FROM suppressions") == [
        {"channel": "sms", "address": CAROL_PHONE}
    ]
    world.run("tick", "--now", at(3), "--no-sync")
    assert world.stage(BOB_PHONE, "texts") == "replied"
    assert world.stage(CAROL_PHONE, "texts") == "undelivered"

    # A STOP from Bob later; the first text is not recorded again.
    world.twilio.receive(BOB_PHONE, "STOP", START + timedelta(minutes=4))
    counts = world.sync(5)
    assert counts["fetched"] == 1 and counts["opt_outs"] == 1
    assert len(world.replies(channel="sms")) == 2


def test_sources_that_refuse_the_login_fail_sync_but_not_tick(world: World, monkeypatch):
    world.enroll("outreach", (BOB, "", "Bob"))
    monkeypatch.setenv("IMAP_PASSWORD", "wrong-imap-secret")
    monkeypatch.setenv("TWILIO_TOKEN", "wrong-twilio-secret")

    result = world.run("sync", "--now", at(0), code=1)
    assert "account acme" in result.stderr
    assert f"imap://{world.mailbox.user}@127.0.0.1:{world.mailbox.server.port}" in result.stderr
    assert "login refused" in result.stderr
    assert f"twilio://{ACCOUNT_SID}/{NUMBER}" in result.stderr and "HTTP 401" in result.stderr
    assert "wrong-imap-secret" not in result.output and "wrong-twilio-secret" not in result.output

    tick = world.run("tick", "--now", at(1), "--json")
    assert json.loads(tick.stdout)["sync_errors"]
    assert len(world.smtp.to(BOB)) == 1  # the sends went on
    sources = rows(world.db, "SELECT kind, last_error FROM sync_sources ORDER BY kind")
    assert [s["kind"] for s in sources] == ["imap", "twilio"]
    assert all(s["last_error"] for s in sources)
    dumped = json.dumps(rows(world.db, "SELECT * FROM sync_sources"))
    assert "wrong-imap-secret" not in dumped and "wrong-twilio-secret" not in dumped
    status = world.run("status", "--now", at(1))
    assert "WARNING: acme: imap source" in status.stdout


def test_a_sync_killed_half_way_records_each_message_once_and_loses_none(world: World, db: Path):
    total = 600
    leads = [(f"lead{i}@buyer.example", "", f"Lead{i}") for i in range(total)]
    world.enroll("outreach", *leads)
    world.mailbox.deliver(
        samples.plain_mail(
            sender=f"lead{i}@buyer.example", message_id=f"<r{i}@buyer.test>", text=f"yes {i}"
        )
        for i in range(total)
    )

    process = spawn(db, "sync", "--now", at(1))
    try:
        wait_for(lambda: _count(db) >= 20, timeout=60, process=process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = _count(db)
    assert 0 < killed_at < total, "the sync finished before it could be killed"

    result = pipectl(db, "sync", "--now", at(2), "--json", timeout=120)
    assert result.returncode == 0, result.stderr

    assert _count(db) == total
    ids = [r["external_id"] for r in rows(db, "SELECT external_id FROM replies")]
    assert len(set(ids)) == total
    [cursor] = rows(db, "SELECT last_uid FROM sync_cursors")
    assert cursor["last_uid"] == total


def _count(db: Path) -> int:
    try:
        return rows(db, "SELECT count(*) AS n FROM replies WHERE source = 'imap'")[0]["n"]
    except Exception:
        return 0


def _rfc2822(stored: str) -> str:
    when = datetime.strptime(stored, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return when.strftime("%a, %d %b %Y %H:%M:%S +0000")


def test_sends_never_need_the_inbox_password(world: World, monkeypatch):
    world.enroll("outreach", (BOB, "", "Bob"))
    monkeypatch.delenv("IMAP_PASSWORD")
    tick = world.run("tick", "--now", at(0), "--json")
    summary = json.loads(tick.stdout)
    assert summary["done"] == 1 and len(world.smtp.to(BOB)) == 1
    assert any("IMAP_PASSWORD is not set" in e for e in summary["sync_errors"])
    result = world.run("sync", "--now", at(1), code=1)
    assert "IMAP_PASSWORD is not set" in result.stderr and "account acme" in result.stderr
