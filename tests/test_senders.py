"""Sender mailboxes (SPEC §7) through the CLI against real SMTP servers, one per sender, each
requiring its own login: which server a message reached and the login it used prove which
sender sent it. Days are simulated with `tick --now`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

from tests import mail_samples as samples
from tests.channel_servers import SmtpRecorder, smtp_server
from tests.conftest import rows

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

NAMES = ("ann", "bo", "cy", "di")


def config(
    ports: dict[str, int],
    senders: dict[str, str],
    actions: str,
    *,
    timezone: str = "America/New_York",
    extra_pipelines: str = "",
    inbox: str = "",
) -> str:
    """A file with one account whose email channel lists `senders` (name -> the YAML keys
    after `from`, e.g. "daily_limit: 5"), each on its own server with its own login."""
    listed = "".join(
        f"""
          - from: "{name.title()} <{name}@acme.example>"
            port: {ports[name]}
            username: {name}
            password: ${{{name.upper()}_PASSWORD}}
            {keys}"""
        for name, keys in senders.items()
    )
    return f"""\
version: 1
accounts:
  - key: acme
    timezone: {timezone}
    channels:
      email:
        transport: smtp
        host: 127.0.0.1
        security: none
        from: "Acme <sales@acme.example>"{inbox}
        senders:{listed}
pipelines:
  - key: outreach
    account: acme
    stages:
      - key: intro
        actions:
{actions}{extra_pipelines}
"""


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, tuple[int, SmtpRecorder]]]:
    """One authenticating SMTP server per sender name: name -> (port, what it received)."""
    with ExitStack() as stack:
        found = {}
        for name in NAMES:
            password = f"{name}-secret-{len(name)}"
            monkeypatch.setenv(f"{name.upper()}_PASSWORD", password)
            server, recorder = stack.enter_context(smtp_server(auth=(name, password)))
            found[name] = (server.port, recorder)
        yield found


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    return path


def import_leads(cli, tmp_path: Path, count: int, pipeline: str = "outreach") -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "email,first_name\n" + "".join(f"l{i:02d}@x.example,L{i}\n" for i in range(count))
    )
    result = cli("leads", "import", csv, "--account", "acme", "--pipeline", pipeline)
    assert result.exit_code == 0, result.output


def tick(cli, now: str) -> str:
    result = cli("tick", "--now", now, "--no-sync")
    assert result.exit_code == 0, result.output
    return result.stdout


def received_by(servers, name: str) -> list[str]:
    """Recipients of what the sender's server received, in order."""
    return [r.rcpt_tos[0] for r in servers[name][1].received]


ONE_EMAIL = '          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}\n'
TWO_EMAILS = (
    ONE_EMAIL + "          - wait: 1d\n"
    '          - email: {subject: "Again", body: "Following up"}\n'
)


@pytest.mark.slow
def test_three_senders_with_caps_5_5_2_share_30_leads_and_keep_each_lead(
    cli, tmp_path, servers, db
):
    ports = {n: servers[n][0] for n in NAMES}
    caps = {"ann": 5, "bo": 5, "cy": 2}
    text = config(ports, {n: f"daily_limit: {c}" for n, c in caps.items()}, TWO_EMAILS)
    assert cli("apply", write(tmp_path, text)).exit_code == 0
    import_leads(cli, tmp_path, 30)
    sent_per_day: list[Counter[str]] = []
    # 09:00 and 15:00 in New York each day: the caps hold across ticks of one day.
    for day in range(1, 8):
        before = Counter({n: len(servers[n][1].received) for n in caps})
        out = tick(cli, f"2027-03-0{day}T14:00:00Z")
        if day == 1:
            assert "held back 18" in out
        tick(cli, f"2027-03-0{day}T20:00:00Z")
        after = Counter({n: len(servers[n][1].received) for n in caps})
        sent_per_day.append(after - before)
    # No sender over its cap on any day; full days while first emails were waiting (a lead
    # keeps its sender, so the last days may leave a sender idle); all 60 emails sent.
    assert all(day[n] <= caps[n] for day in sent_per_day for n in caps)
    assert [dict(d) for d in sent_per_day[:3]] == [caps] * 3
    assert sum(sum(d.values()) for d in sent_per_day) == 60
    # Each lead's two emails both came through one sender, logged in as that sender.
    by_lead: dict[str, set[str]] = {}
    for name in caps:
        assert {login for login, _ in servers[name][1].logins} == {name}
        for rcpt in received_by(servers, name):
            by_lead.setdefault(rcpt, set()).add(name)
        froms = {r.message["From"].addresses[0].addr_spec for r in servers[name][1].received}
        assert froms == {f"{name}@acme.example"}
    assert len(by_lead) == 30 and all(len(s) == 1 for s in by_lead.values())
    counts = Counter(r for n in caps for r in received_by(servers, n))
    assert set(counts.values()) == {2}
    # The rest went on the following days in order: every first email (due day 1) before
    # any follow-up, and first emails in lead order.
    first_day = {
        r.rcpt_tos[0]: r.message["Date"].datetime.day
        for n in caps
        for r in servers[n][1].received
        if r.message["Subject"] != "Again"
    }
    assert [first_day[f"l{i:02d}@x.example"] for i in range(30)] == [1] * 12 + [2] * 12 + [3] * 6
    # Stored where users can query it: each lead's sender, and each day's count per sender.
    leads = rows(
        db,
        "SELECT l.email, s.address FROM leads l JOIN senders s ON s.id = l.sender_id",
    )
    assert {r["email"]: {r["address"].split("@")[0]} for r in leads} == by_lead
    days = rows(
        db,
        "SELECT s.address, d.day, d.sent FROM sender_days d JOIN senders s ON s.id = d.sender_id",
    )
    assert all(r["sent"] <= caps[r["address"].split("@")[0]] for r in days)
    assert {r["day"] for r in days} >= {f"2027-03-0{d}" for d in range(1, 6)}


def test_a_full_sender_waits_for_the_next_day_in_the_accounts_time_zone(cli, tmp_path, servers, db):
    ports = {n: servers[n][0] for n in NAMES}
    text = config(ports, {"ann": "daily_limit: 2"}, ONE_EMAIL)
    assert cli("apply", write(tmp_path, text)).exit_code == 0
    import_leads(cli, tmp_path, 5)
    assert "held back 3" in tick(cli, "2027-03-01T14:00:00Z")  # 09:00 in New York
    # 23:30 in New York is still the same day there (though the next day in UTC).
    assert "claimed 0" in tick(cli, "2027-03-02T04:30:00Z")
    status = cli("status", "--now", "2027-03-02T04:30:00Z")
    assert "overdue 0" in status.stdout
    assert (
        "waiting for a sender: 3 emails due: their senders have reached today's cap; they go"
        " when the next day opens, at 2027-03-02T05:00:00Z"
    ) in status.stdout
    assert "sender ann@acme.example: 2/2 today, 2 leads" in status.stdout
    as_json = cli("status", "--json", "--now", "2027-03-02T04:30:00Z").stdout
    assert '"waiting_for_sender": 3' in as_json and '"cap_today": 2' in as_json
    actions = rows(
        db,
        "SELECT status, attempts FROM lead_stage_actions WHERE type = 'email' ORDER BY id",
    )
    assert [(a["status"], a["attempts"]) for a in actions][2:] == [("pending", 0)] * 3
    assert "claimed 2" in tick(cli, "2027-03-02T05:00:00Z")  # midnight in New York
    assert len(servers["ann"][1].received) == 4


def test_warm_up_raises_the_cap_each_day_from_the_first_send(cli, tmp_path, servers, db):
    ports = {n: servers[n][0] for n in NAMES}
    keys = "daily_limit: 10\n            warmup: {start: 2, step: 3}"
    text = config(ports, {"bo": keys}, ONE_EMAIL, timezone="UTC")
    assert cli("apply", write(tmp_path, text)).exit_code == 0
    tick(cli, "2027-03-01T09:00:00Z")  # nothing to send: warm-up has not started
    import_leads(cli, tmp_path, 40)
    per_day = []
    for day in range(2, 8):
        before = len(servers["bo"][1].received)
        tick(cli, f"2027-03-0{day}T09:00:00Z")
        tick(cli, f"2027-03-0{day}T18:00:00Z")
        per_day.append(len(servers["bo"][1].received) - before)
        if day == 3:
            status = cli("status", "--now", "2027-03-03T19:00:00Z").stdout
            assert "sender bo@acme.example: 5/5 today (warm-up day 2: 2 + 3 a day, up to 10)" in (
                status
            )
    assert per_day == [2, 5, 8, 10, 10, 5]
    sender = rows(db, "SELECT first_sent_on FROM senders")
    assert sender == [{"first_sent_on": "2027-03-02"}]


def test_a_removed_senders_leads_move_to_another_at_their_next_email(cli, tmp_path, servers, db):
    ports = {n: servers[n][0] for n in NAMES}
    both = config(ports, {"ann": "daily_limit: 50", "bo": "daily_limit: 50"}, TWO_EMAILS)
    assert cli("apply", write(tmp_path, both)).exit_code == 0
    import_leads(cli, tmp_path, 4)
    tick(cli, "2027-03-01T14:00:00Z")
    assert len(received_by(servers, "ann")) == 2 and len(received_by(servers, "bo")) == 2
    bos = set(received_by(servers, "bo"))
    applied = cli("apply", write(tmp_path, config(ports, {"ann": "daily_limit: 50"}, TWO_EMAILS)))
    assert applied.exit_code == 0
    assert "sender acme/bo@acme.example: removed (2 leads will move to another sender)" in (
        applied.stdout
    )
    tick(cli, "2027-03-02T14:00:00Z")
    assert sorted(received_by(servers, "bo")) == sorted(bos)  # nothing more through bo
    assert set(received_by(servers, "ann")[2:]) == {f"l{i:02d}@x.example" for i in range(4)}
    moved = rows(
        db,
        "SELECT DISTINCT s.address FROM leads l JOIN senders s ON s.id = l.sender_id",
    )
    assert moved == [{"address": "ann@acme.example"}]


THREADED = (
    '          - email: {subject: "Hello {{ lead.first_name }}", body: "First"}\n'
    "          - wait: 1h\n"
    "          - email: {thread: true, body: Second}\n"
    "          - wait: 1h\n"
    '          - email: {thread: true, subject: "A new angle", body: Third}\n'
)


def test_thread_true_replies_in_the_thread_and_date_is_the_ticks_clock(cli, tmp_path, servers, db):
    ports = {n: servers[n][0] for n in NAMES}
    text = config(ports, {"cy": "daily_limit: 10"}, THREADED, timezone="UTC")
    assert cli("apply", write(tmp_path, text)).exit_code == 0
    import_leads(cli, tmp_path, 1)
    for now in ("2027-03-01T09:00:00Z", "2027-03-01T10:00:00Z", "2027-03-01T11:00:00Z"):
        tick(cli, now)
    first, second, third = (r.message for r in servers["cy"][1].received)
    assert first["In-Reply-To"] is None and first["Subject"] == "Hello L0"
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]
    assert second["Subject"] == "Re: Hello L0"
    assert third["In-Reply-To"] == second["Message-ID"]
    assert third["References"].split() == [first["Message-ID"], second["Message-ID"]]
    assert third["Subject"] == "A new angle"
    dates = [parsedate_to_datetime(m["Date"]).isoformat() for m in (first, second, third)]
    assert [d[:16] for d in dates] == [
        "2027-03-01T09:00",
        "2027-03-01T10:00",
        "2027-03-01T11:00",
    ]
    stored = rows(db, "SELECT subject FROM deliveries ORDER BY id")
    assert [r["subject"] for r in stored] == ["Hello L0", "Re: Hello L0", "A new angle"]


def test_dry_run_and_leads_show_name_the_sender(cli, tmp_path, servers, db):
    ports = {n: servers[n][0] for n in NAMES}
    text = config(ports, {"ann": "daily_limit: 2", "di": "daily_limit: 3"}, ONE_EMAIL)
    assert cli("apply", write(tmp_path, text)).exit_code == 0
    import_leads(cli, tmp_path, 2)
    dry = cli("tick", "--dry-run", "--now", "2027-03-01T14:00:00Z").stdout
    assert "would send email to l00@x.example (action" in dry
    # The most room left first: di (3), then ann and di tie at 2, and ann comes first.
    assert "l00@x.example (action 1, account acme, from di@acme.example" in dry
    assert "l01@x.example (action 2, account acme, from ann@acme.example" in dry
    assert rows(db, "SELECT sender_id FROM leads") == [{"sender_id": None}] * 2
    tick(cli, "2027-03-01T14:00:00Z")
    shown = cli("leads", "show", "l00@x.example").stdout
    assert "sender: Di <di@acme.example>" in shown
    assert [r.rcpt_tos for r in servers["ann"][1].received] == [["l01@x.example"]]


@pytest.mark.slow
def test_a_reply_to_a_threaded_follow_up_acts_on_the_enrollment_that_sent_it(
    cli, tmp_path, servers, mailbox, monkeypatch, db
):
    """The reply arrives in the sender's own inbox (a real Dovecot), names the threaded
    follow-up, and ends the wait of that pipeline only."""
    monkeypatch.setenv("INBOX_PASSWORD", mailbox.password)
    ports = {n: servers[n][0] for n in NAMES}
    waits = "          - wait_for_reply: {timeout: 3d, on_reply: replied}\n"
    stages = "      - {key: replied, outcome: won}\n"
    followup = f"""
  - key: followup
    account: acme
    stages:
      - key: intro
        actions:
{THREADED.rsplit("          - wait: 1h", 1)[0]}{waits}{stages}"""
    inbox = f"""
        inbox: {{host: 127.0.0.1, port: {mailbox.server.port}, security: none,
                 username: nobody, password: "${{INBOX_PASSWORD}}"}}"""
    keys = f"daily_limit: 10\n            inbox: {{username: {mailbox.user}}}"
    text = config(
        ports, {"ann": keys}, ONE_EMAIL + waits + stages, extra_pipelines=followup, inbox=inbox
    )
    applied = cli("apply", write(tmp_path, text))
    assert applied.exit_code == 0, applied.output
    import_leads(cli, tmp_path, 1)
    enrolled = cli("leads", "enroll", "--account", "acme", "--pipeline", "followup", "--lead", "1")
    assert enrolled.exit_code == 0, enrolled.output
    # Real time: the first sync of a mailbox reads the last 14 days of it.
    start = datetime.now(UTC).replace(microsecond=0)
    tick(cli, start.isoformat())
    tick(cli, (start + timedelta(hours=1)).isoformat())
    received = servers["ann"][1].received
    assert len(received) == 3  # outreach's email, followup's first and its threaded follow-up
    follow_up = received[-1].message
    assert follow_up["Subject"] == "Re: Hello L0"
    mailbox.append(
        samples.gmail_reply(sender="l00@x.example", to="ann@acme.example",
                            answers=follow_up["Message-ID"],
                            date=format_datetime(start + timedelta(minutes=80)))
    )  # fmt: skip
    synced = cli("sync", "--now", (start + timedelta(minutes=90)).isoformat())
    assert synced.exit_code == 0, synced.output
    db = db
    reply = rows(
        db,
        "SELECT r.kind, d.message_id, p.key FROM replies r"
        " JOIN deliveries d ON d.id = r.delivery_id"
        " JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id"
        " JOIN enrollments e ON e.id = a.enrollment_id JOIN pipelines p ON p.id = e.pipeline_id",
    )
    assert reply == [{"kind": "reply", "message_id": follow_up["Message-ID"], "key": "followup"}]
    states = rows(
        db,
        "SELECT p.key, e.status FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
        " ORDER BY p.key",
    )
    assert states == [
        {"key": "followup", "status": "won"},
        {"key": "outreach", "status": "active"},
    ]


def test_every_emails_date_is_the_ticks_clock_without_senders_too(cli, tmp_path):
    with smtp_server() as (server, smtp):
        text = f"""\
version: 1
accounts: [{{key: acme}}]
channels:
  email: {{transport: smtp, host: 127.0.0.1, port: {server.port}, security: none,
          from: "Acme <sales@acme.example>"}}
pipelines:
  - key: outreach
    account: acme
    stages:
      - key: intro
        actions:
{ONE_EMAIL}"""
        assert cli("apply", write(tmp_path, text)).exit_code == 0
        import_leads(cli, tmp_path, 1)
        tick(cli, "2031-07-04T12:34:56Z")
    (message,) = (r.message for r in smtp.received)
    assert parsedate_to_datetime(message["Date"]).isoformat() == "2031-07-04T12:34:56+00:00"


def test_a_sender_whose_login_fails_holds_only_its_own_leads(
    cli, tmp_path, servers, monkeypatch, db
):
    ports = {n: servers[n][0] for n in NAMES}
    text = config(ports, {"ann": "daily_limit: 10", "bo": "daily_limit: 10"}, ONE_EMAIL)
    assert cli("apply", write(tmp_path, text)).exit_code == 0
    import_leads(cli, tmp_path, 6)
    monkeypatch.setenv("ANN_PASSWORD", "a-wrong-password")
    ticked = cli("tick", "--now", "2027-03-01T14:00:00Z", "--no-sync")
    assert ticked.exit_code == 0
    assert "WARNING: acme: email:ann@acme.example failing since" in ticked.stderr
    assert "authentication refused (535)" in ticked.stderr
    assert "a-wrong-password" not in ticked.output
    assert len(servers["bo"][1].received) == 3 and servers["ann"][1].received == []
    db = db
    waiting = rows(
        db,
        "SELECT a.status, a.attempts, s.address FROM lead_stage_actions a"
        " JOIN leads l ON l.id = a.lead_id JOIN senders s ON s.id = l.sender_id"
        " WHERE s.address = 'ann@acme.example'",
    )
    assert [(w["status"], w["attempts"]) for w in waiting] == [("pending", 0)] * 3
    status = cli("status", "--now", "2027-03-01T14:05:00Z").stdout
    assert "email:ann@acme.example failing since 2027-03-01T14:00" in status
    assert "3 sends held back" in status
    # While ann fails, new leads go to bo; ann's own leads wait for her.
    csv = tmp_path / "more.csv"
    csv.write_text("email,first_name\nm1@x.example,M1\nm2@x.example,M2\n")
    assert cli("leads", "import", csv, "--account", "acme", "--pipeline", "outreach").exit_code == 0
    tick(cli, "2027-03-01T14:10:00Z")  # ann's probe fails again: one try a tick
    assert sorted(received_by(servers, "bo"))[-2:] == ["m1@x.example", "m2@x.example"]
    assert servers["ann"][1].received == []
    monkeypatch.setenv("ANN_PASSWORD", "ann-secret-3")  # the operator fixes the environment
    tick(cli, "2027-03-01T14:20:00Z")
    assert len(servers["ann"][1].received) == 3
    assert rows(db, "SELECT count(*) AS n FROM channel_health") == [{"n": 0}]
