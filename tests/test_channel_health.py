"""A channel that fails for reasons that are not the lead's holds its sends, probes once a
tick, and shows in `status` from the first failure; only recipient errors fail a lead."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from .channel_servers import SmtpRecorder, free_port, http_server, smtp_server
from .conftest import dump, rows
from .scenario import (
    ONE_EMAIL,
    ONE_TEXT,
    T0,
    serve,
    setup,
    smtp_channel,
    spawn,
    wait_for,
    write_yaml,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
    pytest.mark.slow,  # real servers down, refusing or late, over many ticks
]


def minute(n: int) -> str:
    return f"2027-03-01T{14 + n // 60:02d}:{n % 60:02d}:00Z"


def sends(db, channel: str = "email") -> list[dict]:
    return rows(
        db,
        "SELECT id, status, attempts, perform_at, last_error FROM lead_stage_actions"
        " WHERE type = ? ORDER BY id",
        channel,
    )


def next_probe_at(db) -> str:
    """When the failing channel may be probed next (its backoff, with jitter)."""
    (row,) = rows(db, "SELECT next_probe_at FROM channel_health")
    return row["next_probe_at"]


def enrollments(db) -> list[str]:
    return [r["status"] for r in rows(db, "SELECT status FROM enrollments ORDER BY id")]


def status(cli, now: str) -> dict:
    result = cli("status", "--now", now, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["accounts"][0]


def assert_held(db, count: int, channel: str = "email") -> None:
    """Every send still due as it was: pending at T0, not an attempt; no lead failed."""
    held = sends(db, channel)
    assert len(held) == count
    assert {(r["status"], r["attempts"], r["perform_at"]) for r in held} == {("pending", 0, T0)}
    assert set(enrollments(db)) == {"active"}


def test_sender_refused_holds_every_send_probes_once_a_tick_and_sends_all_once_fixed(
    cli, db, tmp_path
):
    with smtp_server() as (server, smtp):
        smtp.mail_reply = "553 5.7.1 <sales@acme.example>: Sender address rejected"
        setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 3}, acme_extra=smtp_channel(server.port))

        first = cli("tick", "--now", T0, "-q")
        assert first.exit_code == 0
        assert "WARNING: acme: email failing since 2027-03-01T14:00:00Z" in first.stderr
        assert "553 5.7.1" in first.stderr  # -q still speaks: cron mails the operator
        assert len(smtp.mail_froms) == 3 and smtp.received == []
        assert_held(db, 3)
        assert {r["last_error"] for r in sends(db)} == {
            f"channel email: 127.0.0.1:{server.port}: sender refused: 553 5.7.1"
            " <sales@acme.example>: Sender address rejected"
        }

        assert cli("tick", "--now", "2027-03-01T14:00:20Z").exit_code == 0
        assert len(smtp.mail_froms) == 3  # backing off: 30-60 s after the first failure
        for n in (1, 2, 3):  # one probe each time its backoff is up, nothing used up
            probe_at = next_probe_at(db)
            assert cli("tick", "--now", probe_at).exit_code == 0
            assert len(smtp.mail_froms) == 3 + n
            assert_held(db, 3)
        (failing,) = status(cli, probe_at)["failing_channels"]
        assert failing["since"] == T0 and failing["last_probe_at"][:16] == probe_at[:16]
        assert failing["held_back"] == 3 and failing["failures"] == 6

        smtp.mail_reply = None  # the operator fixes the sender at the provider
        fixed_at = next_probe_at(db)
        assert cli("tick", "--now", fixed_at).exit_code == 0
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [
        "lead0@acme.example",
        "lead1@acme.example",
        "lead2@acme.example",
    ]
    assert {(r["status"], r["attempts"]) for r in sends(db)} == {("done", 1)}
    assert enrollments(db) == ["won"] * 3
    assert status(cli, fixed_at)["failing_channels"] == []
    assert cli("status", "--now", fixed_at, "--check").exit_code == 0


@pytest.mark.parametrize("leads", [1, 2])
def test_status_flags_a_failing_channel_from_the_first_failure(cli, db, tmp_path, leads):
    with smtp_server() as (server, smtp):
        smtp.mail_reply = "553 5.7.1 Sender address rejected"
        setup(
            cli,
            tmp_path,
            ONE_EMAIL,
            {("acme", "drip"): leads},
            acme_extra=smtp_channel(server.port),
        )
        assert cli("tick", "--now", T0).exit_code == 0
    acme = status(cli, "2027-03-01T14:00:30Z")
    (failing,) = acme["failing_channels"]
    assert failing["channel"] == "email" and "553 5.7.1" in failing["error"]
    assert failing["held_back"] == leads and failing["last_delivery"] is None
    assert acme["actions"]["failed"] == 0
    check = cli("status", "--now", "2027-03-01T14:00:30Z", "--check")
    assert check.exit_code == 1
    assert "WARNING: acme: email failing since 2027-03-01T14:00:00Z" in check.stdout
    assert "email failing: since 2027-03-01T14:00:00Z" in check.stdout  # the account's line


def test_refused_login_is_held_without_the_password_and_goes_once_fixed(
    cli, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("SMTP_USER", "sales")
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-horse-3141")
    with smtp_server(auth=("sales", "right-horse-2718")) as (server, smtp):
        channel = smtp_channel(server.port).rstrip("}") + (
            ", username: '${SMTP_USER}', password: '${SMTP_PASSWORD}'}"
        )
        setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 2}, acme_extra=channel)
        assert cli("tick", "--now", T0).exit_code == 0
        assert cli("tick", "--now", minute(2)).exit_code == 0  # two failures: 1-2 minutes
        assert_held(db, 2)  # the login was refused: no message went out, no attempt
        assert smtp.connections == 3  # two sends, then one probe
        report = cli("status", "--now", minute(2), "--json")
        assert "authentication refused (535)" in report.stdout
        for shown in (report.stdout, dump(db)):
            assert "wrong-horse-3141" not in shown

        monkeypatch.setenv("SMTP_PASSWORD", "right-horse-2718")
        assert cli("tick", "--now", minute(6)).exit_code == 0
    assert len(smtp.received) == 2
    assert enrollments(db) == ["won", "won"]
    assert status(cli, minute(3))["failing_channels"] == []


def test_a_server_down_for_hours_fails_no_lead_and_everything_goes_when_it_is_back(
    cli, db, tmp_path
):
    port = free_port()  # nothing listens: connections refused
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 3}, acme_extra=smtp_channel(port))
    for n in range(0, 180, 15):  # three hours of ticks (every 15 minutes, to be quick)
        assert cli("tick", "--now", minute(n)).exit_code == 0
    assert_held(db, 3)
    acme = status(cli, minute(175))
    assert acme["failing_channels"][0]["since"] == T0
    assert "ConnectionRefusedError" in acme["failing_channels"][0]["error"]
    with smtp_server(port) as (_, smtp):
        assert cli("tick", "--now", minute(180)).exit_code == 0
    assert len(smtp.received) == 3
    assert enrollments(db) == ["won"] * 3


def test_a_refused_recipient_fails_that_lead_only_and_a_4xx_retries_it(cli, db, tmp_path):
    with smtp_server() as (server, smtp):
        smtp.replies["lead0@acme.example"] = "550 5.1.1 No such user"
        smtp.replies["lead1@acme.example"] = "451 4.3.0 Try again later"
        setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 4}, acme_extra=smtp_channel(server.port))
        assert cli("tick", "--now", T0).exit_code == 0
    gone, busy, *fine = sends(db)
    assert gone["status"] == "failed" and gone["attempts"] == 1
    assert busy["status"] == "pending" and busy["attempts"] == 1  # today's backoff
    assert busy["perform_at"] > T0
    assert [r["status"] for r in fine] == ["done", "done"]
    assert enrollments(db) == ["failed", "active", "won", "won"]
    acme = status(cli, "2027-03-01T14:00:30Z")
    assert acme["failing_channels"] == [] and acme["actions"]["failed"] == 1


SMS_CSV = "Email,First Name,Phone\n" + "".join(
    f"lead{i}@acme.example,Lead{i},+1212555010{i}\n" for i in range(3)
)


def webhook_setup(cli, tmp_path, url: str) -> None:
    channel = f"    channels:\n      sms: {{transport: webhook, url: '{url}/hooks/sms'}}"
    assert cli("apply", write_yaml(tmp_path, ONE_TEXT, acme_extra=channel)).exit_code == 0
    csv = tmp_path / "phones.csv"
    csv.write_text(SMS_CSV, encoding="utf-8")
    imported = cli("leads", "import", csv, "--account", "acme", "--pipeline", "texts")
    assert imported.exit_code == 0, imported.output


def test_sms_webhook_answering_404_holds_the_texts_until_the_url_works(cli, db, tmp_path):
    """A wrong URL sent nothing: its probes back off and are never a lead's attempt."""
    with http_server() as (url, http):
        http.default = (404, {}, b"no such hook")
        webhook_setup(cli, tmp_path, url)
        assert cli("tick", "--now", T0).exit_code == 0
        assert len(http.requests) == 3
        assert cli("tick", "--now", "2027-03-01T14:00:20Z").exit_code == 0
        assert len(http.requests) == 3  # backing off: 30-60 s after the first failure
        assert cli("tick", "--now", minute(1)).exit_code == 0
        assert len(http.requests) == 4  # one probe, held again: not an attempt
        assert {(r["status"], r["attempts"], r["perform_at"]) for r in sends(db, "sms")} == {
            ("pending", 0, T0)
        }
        (failing,) = status(cli, minute(1))["failing_channels"]
        assert failing["channel"] == "sms" and "HTTP 404: no such hook" in failing["error"]
        assert failing["failures"] == 4

        http.default = (200, {"Content-Type": "application/json"}, b'{"id": "ok"}')
        assert cli("tick", "--now", minute(2)).exit_code == 0  # failing 1 min: waits <= 1 min
        assert len(http.requests) == 7
    assert sorted(r.json()["to"] for r in http.requests[4:]) == [
        "+12125550100",
        "+12125550101",
        "+12125550102",
    ]
    assert {(r["status"], r["attempts"]) for r in sends(db, "sms")} == {("done", 1)}
    assert enrollments(db) == ["won"] * 3
    assert status(cli, minute(3))["failing_channels"] == []


def test_a_server_retry_after_delays_the_probe(cli, db, tmp_path):
    with http_server() as (url, http):
        http.default = (503, {"Retry-After": "600"}, b"maintenance")
        webhook_setup(cli, tmp_path, url)
        assert cli("tick", "--now", T0).exit_code == 0
        for n in (1, 5, 9):
            cli("tick", "--now", minute(n))
        assert len(http.requests) == 3  # no probe before the ten minutes are up
        http.default = (200, {}, b"")
        cli("tick", "--now", minute(11))
        assert len(http.requests) == 6
    assert {(r["status"], r["attempts"]) for r in sends(db, "sms")} == {("done", 1)}
    assert enrollments(db) == ["won"] * 3


def test_a_channel_error_for_one_lead_while_others_get_through_uses_that_leads_attempts(
    cli, db, tmp_path
):
    """A webhook answering 404 for one contact only: once the others get through in the
    same tick, the 404 is that lead's own, retried with its attempts, and the channel is
    not failing; a send cannot hold itself, and its channel, for good."""
    with http_server() as (url, http):
        http.default = (200, {}, b"")
        http.respond = lambda r: (
            (404, {}, b"no such contact") if b"+12125550100" in r.body else None
        )
        webhook_setup(cli, tmp_path, url)
        # One worker: lead0 goes first, fails alone, and holds the channel for this tick.
        assert cli("tick", "--now", T0, "--workers", 1).exit_code == 0
        assert [r.json()["to"] for r in http.requests] == ["+12125550100"]
        assert [r["attempts"] for r in sends(db, "sms")] == [0, 0, 0]
        # The next tick's probe is the send after it: it gets through, the rest go, and
        # lead0's 404 is now its own.
        assert cli("tick", "--now", minute(1), "--workers", 1).exit_code == 0
    lead0, *others = sends(db, "sms")
    assert [(r["status"], r["attempts"]) for r in others] == [("done", 1), ("done", 1)]
    assert lead0["status"] == "pending" and lead0["attempts"] == 1
    assert lead0["perform_at"] > minute(1) and "HTTP 404: no such contact" in lead0["last_error"]
    assert status(cli, minute(1))["failing_channels"] == []


BOTH = (
    ONE_EMAIL
    + """\
  - key: beta-drip
    account: beta
    name: Beta drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - move: won
      - {key: won, outcome: won}
"""
)


def test_a_failing_channel_holds_only_its_own_accounts_sends(cli, db, tmp_path):
    with smtp_server() as (server, smtp):
        smtp.mail_reply = "553 5.7.1 Sender address rejected"
        setup(
            cli,
            tmp_path,
            BOTH,
            {("acme", "drip"): 2, ("beta", "beta-drip"): 2},
            acme_extra=smtp_channel(server.port),
        )
        for n in range(3):
            assert cli("tick", "--now", minute(n)).exit_code == 0
    by_account: dict[str, str] = {}
    for r in rows(
        db,
        "SELECT a.key, e.status FROM enrollments e JOIN accounts a ON a.id = e.account_id"
        " ORDER BY e.id",
    ):
        by_account[r["key"]] = ",".join(filter(None, [by_account.get(r["key"]), r["status"]]))
    assert by_account == {"acme": "active,active", "beta": "won,won"}  # beta: the outbox
    report = json.loads(cli("status", "--now", minute(3), "--json").stdout)
    failing = {a["account"]: a["failing_channels"] for a in report["accounts"]}
    assert [f["channel"] for f in failing["acme"]] == ["email"] and failing["beta"] == []


class SlowRefusal(SmtpRecorder):
    """Answers MAIL FROM after `delay` seconds: a probe stays in flight long enough to kill."""

    delay: float = 0.0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_froms.append(address)
        await asyncio.sleep(self.delay)
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"


@pytest.mark.slow  # kills a real tick process
def test_a_tick_killed_during_a_probe_loses_nothing(cli, db, tmp_path):
    recorder = SlowRefusal()
    recorder.mail_reply = "553 5.7.1 Sender address rejected"
    server = serve(recorder)
    try:
        setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 3}, acme_extra=smtp_channel(server.port))
        assert cli("tick", "--now", T0).exit_code == 0
        recorder.delay = 30
        ticking = spawn(db, "tick", "--now", minute(4))  # three failures: 2-4 minutes
        wait_for(lambda: len(recorder.mail_froms) == 4, process=ticking)  # the probe, in flight
        ticking.send_signal(signal.SIGKILL)
        ticking.wait()
        ticking.stdout.close()
        ticking.stderr.close()
        assert [r["status"] for r in sends(db)].count("running") == 1
        assert len(rows(db, "SELECT * FROM channel_health")) == 1  # still failing

        recorder.delay, recorder.mail_reply = 0, None  # fixed
        assert cli("tick", "--now", minute(5)).exit_code == 0
    finally:
        server.stop()
    assert sorted(r.rcpt_tos[0] for r in recorder.received) == [
        f"lead{i}@acme.example" for i in range(3)
    ]
    assert {r["status"] for r in sends(db)} == {"done"}
    assert enrollments(db) == ["won"] * 3
    assert rows(db, "SELECT * FROM channel_health") == []


def test_a_channel_error_is_blamed_on_its_send_only_next_to_a_send_that_got_through():
    from pipectl.scheduler.run import _blame_the_send
    from pipectl.store.rows import Result

    from .unit.sends import claimed_send

    def result(outcome: str, channel: str = "email", reached: bool = False) -> Result:
        action = claimed_send(1, channel=channel, attempt=1)
        held = outcome == "held"
        return Result(action, outcome, T0, error="boom", reached=reached, channel_failed=held)

    def outcomes(results, worked=None):
        return [r.outcome for r in _blame_the_send(results, {} if worked is None else worked)]

    ok = lambda channel="email": result("done", channel, reached=True)  # noqa: E731
    # A server going down after a success: the first failure is the send's, then it holds.
    assert outcomes([ok(), result("held"), result("held")]) == ["done", "retry", "held"]
    # A failure followed by a success in the same batch: the send's own.
    assert outcomes([result("held"), ok()]) == ["retry", "done"]
    # Nothing got through: the channel's.
    assert outcomes([result("held"), result("held")]) == ["held", "held"]
    # Another channel's success says nothing about this one.
    assert outcomes([ok("sms"), result("held")]) == ["done", "held"]
    # Across batches of one tick: the latest send of the channel decides.
    worked: dict = {}
    assert outcomes([ok()], worked) == ["done"]
    assert outcomes([result("held")], worked) == ["retry"]
    assert outcomes([result("held")], worked) == ["held"]


def test_a_missing_variable_holds_the_channel_until_it_is_set(cli, db, tmp_path, monkeypatch):
    monkeypatch.delenv("ACME_SMTP_PASSWORD", raising=False)
    with smtp_server() as (server, smtp):
        channel = smtp_channel(server.port).rstrip("}") + ", password: '${ACME_SMTP_PASSWORD}'}"
        setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 2}, acme_extra=channel)
        assert cli("tick", "--now", T0).exit_code == 0
        assert cli("tick", "--now", minute(1)).exit_code == 0
        assert_held(db, 2)
        assert smtp.connections == 0  # nothing on the wire
        (failing,) = status(cli, minute(1))["failing_channels"]
        assert (
            failing["error"] == "channel email: environment variable ACME_SMTP_PASSWORD is not set"
        )
        monkeypatch.setenv("ACME_SMTP_PASSWORD", "set-at-last-42")  # no username: no login
        assert cli("tick", "--now", minute(2)).exit_code == 0
    assert len(smtp.received) == 2 and enrollments(db) == ["won", "won"]
