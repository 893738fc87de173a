"""Webhooks: events written beside their change, delivered signed and in order by the tick,
retried while the receiver is down, never holding up the sends."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipectl.store import Store

from .conftest import dump, rows
from .hook_receiver import HookReceiver
from .scenario import ONE_EMAIL, T0, outbox, pipectl, spawn, summary, wait_for, write_yaml

SECRET = "whsec-test-7f3a9c"  # a test receiver's secret; never a real one
PAYLOAD_KEYS = ["id", "type", "occurred_at", "account", "pipeline", "stage", "lead", "reply"]
LEAD_KEYS = ["id", "email", "phone", "first_name", "last_name", "fields", "status"]

LEADS = """\
Email,First Name,Last Name,Mobile Phone,Company Name
ann@example.com,Ann,Lee,(212) 555-0123,Acme Roofing
bob@example.com,Bob,Chen,,Beta Solar
"""


def hooks_yaml(url: str, extra: str = "") -> str:
    return f"hooks:\n  - url: {url}\n    secret: ${{HOOK_SECRET}}\n{extra}"


def prepare(cli, tmp_path: Path, pipelines: str, hooks: str, *, acme_extra: str = "") -> Path:
    """Apply the pipelines with these hooks and import the two leads into the first one."""
    path = write_yaml(tmp_path, pipelines, acme_extra=acme_extra)
    path.write_text(path.read_text() + hooks, encoding="utf-8")
    result = cli("apply", path)
    assert result.exit_code == 0, result.output
    csv = tmp_path / "leads.csv"
    csv.write_text(LEADS, encoding="utf-8")
    pipeline = pipelines.split("key: ", 1)[1].split("\n", 1)[0]
    result = cli("leads", "import", csv, "--account", "acme", "--pipeline", pipeline)
    assert result.exit_code == 0, result.output
    return path


def tick(cli, now: str, *args: str) -> dict:
    result = cli("tick", "--now", now, "--json", *args)
    assert result.exit_code == 0, result.output
    return summary(result)


def outbox_events(db: Path) -> list[dict]:
    return rows(
        db,
        "SELECT e.event_id, e.type, e.status, e.attempts, e.last_error, e.payload"
        " FROM hook_events e ORDER BY e.id",
    )


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    server = HookReceiver(SECRET).start()
    yield server
    server.stop()


# --- configuration ----------------------------------------------------------------------


def test_validate_names_each_bad_hook_setting_with_its_line(cli, db, tmp_path):
    path = write_yaml(tmp_path, ONE_EMAIL)
    path.write_text(
        path.read_text()
        + "hooks:\n"
        + "  - url: https://hooks.example/a\n"  # line +2
        + "    events: [replied, wonn, stage_entered, closed]\n"
        + "    secret: plain-text-secret\n"
        + "    headers: {Authorization: Bearer abc}\n"
        + "    account: nobody\n"
        + "    timeout: 0\n"
        + "  - url: ftp://hooks.example/b\n"
        + "  - {events: [won]}\n",
        encoding="utf-8",
    )
    first = path.read_text().splitlines().index("hooks:") + 2  # the first hook's line
    assert cli("init").exit_code == 0
    before = dump(db)

    result = cli("validate", path)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}:{first + 1}: hook https://hooks.example/a: unknown event 'wonn'; events are"
        " replied, opted_out, bounced, won, lost, failed, stage_entered",
        f"{path}:{first + 1}: hook https://hooks.example/a: unknown event 'closed'; events are"
        " replied, opted_out, bounced, won, lost, failed, stage_entered",
        f"{path}:{first + 2}: hook https://hooks.example/a secret must be an environment"
        " reference like ${HOOK_SECRET}: secrets are read from the environment at send time,"
        " never written in the YAML",
        f"{path}:{first + 3}: hook https://hooks.example/a headers.Authorization must use an"
        " environment reference, e.g. 'Bearer ${SMS_TOKEN}': secrets are never written in the"
        " YAML",
        f"{path}:{first + 4}: hook https://hooks.example/a: unknown account 'nobody'"
        " (accounts: acme, beta)",
        f"{path}:{first + 5}: hook https://hooks.example/a timeout must be seconds between 0"
        " and 300, not 0",
        f"{path}:{first + 6}: hook 2 url must be an http:// or https:// URL, not"
        " 'ftp://hooks.example/b'",
        f"{path}:{first + 7}: hook 3 needs a url",
    ]
    assert "Traceback" not in result.output
    assert cli("apply", path).exit_code == 1
    assert dump(db) == before


def test_apply_stores_hooks_as_written_and_prints_them_in_the_plan(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("HOOK_TOKEN", "tok-5531")
    path = write_yaml(tmp_path, ONE_EMAIL)
    base = path.read_text()
    path.write_text(
        base
        + hooks_yaml(
            "https://hooks.example/pipectl",
            "    events: [won, replied]\n"
            '    headers: {Authorization: "Bearer ${HOOK_TOKEN}", X-Team: sales}\n'
            "    retry: {attempts: 3, backoff: 30s}\n",
        )
        + "  - {url: 'https://crm.example/in', account: acme}\n",
        encoding="utf-8",
    )
    result = cli("apply", path)
    assert result.exit_code == 0, result.output
    assert "hook https://hooks.example/pipectl: created (replied, won)" in result.stdout
    assert "hook https://crm.example/in (account acme): created" in result.stdout
    stored = rows(db, "SELECT url, account_id, events, secret, headers, retry FROM hooks")
    assert stored == [
        {
            "url": "https://hooks.example/pipectl",
            "account_id": None,
            "events": '["replied", "won"]',
            "secret": "${HOOK_SECRET}",
            "headers": '{"Authorization": "Bearer ${HOOK_TOKEN}", "X-Team": "sales"}',
            "retry": '{"attempts": 3, "backoff": 30, "max_backoff": 3600}',
        },
        {
            "url": "https://crm.example/in",
            "account_id": rows(db, "SELECT id FROM accounts WHERE key = 'acme'")[0]["id"],
            "events": json.dumps(
                ["replied", "opted_out", "bounced", "won", "lost", "failed", "stage_entered"]
            ),
            "secret": None,
            "headers": "{}",
            "retry": '{"attempts": 15, "backoff": 60, "max_backoff": 3600}',
        },
    ]
    whole = dump(db)
    assert SECRET not in whole and "tok-5531" not in whole

    again = cli("apply", path)
    assert again.exit_code == 0 and "nothing changed" in again.stdout
    assert "2 hooks" in again.stdout

    path.write_text(base + hooks_yaml("https://hooks.example/pipectl"), encoding="utf-8")
    result = cli("apply", path)
    assert "hook https://hooks.example/pipectl: changed (events, headers, retry)" in result.stdout
    assert "hook https://crm.example/in (account acme): removed" in result.stdout
    assert [r["removed_at"] is None for r in rows(db, "SELECT removed_at FROM hooks")] == [
        True,
        False,
    ]


# --- delivery ---------------------------------------------------------------------------


def test_tick_delivers_each_event_signed_in_order_with_its_stored_id(cli, db, tmp_path, receiver):
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml(receiver.url))
    assert rows(db, "SELECT count(*) AS n FROM hook_events")[0]["n"] == 0  # queued, no stage

    result = tick(cli, T0)
    assert result["done"] == 4 and result["hooks_delivered"] == 6
    assert len(outbox(tmp_path)) == 2

    stored = outbox_events(db)
    assert [r["status"] for r in stored] == ["delivered"] * 6
    assert [r["attempts"] for r in stored] == [1] * 6
    assert all(r.verified for r in receiver.requests)
    # Received exactly as stored, in the order they happened, each id once.
    assert [e["id"] for e in receiver.accepted] == [r["event_id"] for r in stored]
    assert [json.loads(r["payload"]) for r in stored] == receiver.accepted
    assert len({e["id"] for e in receiver.accepted}) == 6
    by_lead = {
        email: [(e["type"], e["stage"]) for e in receiver.accepted if e["lead"]["email"] == email]
        for email in ("ann@example.com", "bob@example.com")
    }
    assert by_lead["ann@example.com"] == [
        ("stage_entered", "intro"),
        ("stage_entered", "won"),
        ("won", "won"),
    ]
    assert by_lead["bob@example.com"] == by_lead["ann@example.com"]
    assert [r.headers["X-Pipectl-Event"] for r in receiver.requests] == [
        e["type"] for e in receiver.accepted
    ]
    assert all(r.headers["Content-Type"] == "application/json" for r in receiver.requests)

    (won,) = [
        e for e in receiver.accepted if e["type"] == "won" and e["lead"]["first_name"] == "Bob"
    ]  # the two sends finish in either order
    assert list(won) == PAYLOAD_KEYS
    assert list(won["lead"]) == LEAD_KEYS
    assert won["type"] == "won" and won["occurred_at"] == T0
    assert (won["account"], won["pipeline"], won["stage"], won["reply"]) == (
        "acme",
        "drip",
        "won",
        None,
    )
    assert won["lead"]["status"] == "won"
    assert won["lead"]["fields"] == {"company_name": "Beta Solar"}
    assert won["lead"]["first_name"] == "Bob" and won["lead"]["last_name"] == "Chen"

    assert tick(cli, "2027-03-01T14:05:00Z")["hooks_delivered"] == 0  # each once
    assert len(receiver.requests) == 6


def test_no_hook_no_events_and_dry_run_writes_and_posts_nothing(cli, db, tmp_path, receiver):
    prepare(cli, tmp_path, ONE_EMAIL, "")
    tick(cli, T0)
    assert rows(db, "SELECT count(*) AS n FROM hook_events")[0]["n"] == 0

    path = tmp_path / "pipelines.yaml"
    path.write_text(path.read_text() + hooks_yaml(receiver.url), encoding="utf-8")
    assert cli("apply", path).exit_code == 0
    assert cli("reply", "--account", "acme", "--email", "ann@example.com", "--body", "hi",
               "--at", "2027-03-01T14:10:00Z").exit_code == 0  # fmt: skip
    before = dump(db)
    result = cli("tick", "--now", "2027-03-01T14:11:00Z", "--dry-run")
    assert result.exit_code == 0, result.output
    assert dump(db) == before and receiver.requests == []
    assert [r["status"] for r in outbox_events(db)] == ["pending"]


def test_receiver_down_then_back_gets_every_event_in_order_repeats_with_the_same_id(
    cli, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver = HookReceiver(SECRET)  # not started: nothing listens on its port
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml(receiver.url))

    first = tick(cli, T0)
    assert first["done"] == 4 and len(outbox(tmp_path)) == 2  # the sends went out
    assert first["hooks_delivered"] == 0 and first["hooks_refused"] == 1
    stored = outbox_events(db)
    assert [(r["status"], r["attempts"]) for r in stored] == [("pending", 1)] + [
        ("pending", 0)
    ] * 5  # in order: the first holds the rest until it is delivered
    assert "ConnectError" in stored[0]["last_error"]
    status = cli("status", "--now", "2027-03-01T14:00:30Z")
    assert f"hook {receiver.url} failing since {T0} (6 events waiting)" in status.stdout
    assert "6 waiting, 0 failed" in status.stdout
    listed = json.loads(cli("hooks", "list", "--json").stdout)
    assert listed[0]["waiting"] == 6 and "ConnectError" in listed[0]["last_error"]

    receiver.start()
    try:
        receiver.status = 503  # up, but refusing: it sees the event, then sees it again
        receiver.retry_after = "120"
        second = tick(cli, "2027-03-01T14:01:30Z")  # backoff 30-60s after the first try
        assert second["hooks_refused"] == 1
        (seen,) = receiver.requests
        assert seen.event["id"] == stored[0]["event_id"]
        (retry_at,) = rows(db, "SELECT next_attempt_at FROM hook_events WHERE attempts = 2")
        assert retry_at["next_attempt_at"] >= "2027-03-01T14:03:30Z"  # Retry-After honoured
        assert tick(cli, "2027-03-01T14:02:00Z")["hooks_refused"] == 0  # not due yet

        receiver.status = 200
        third = tick(cli, "2027-03-01T14:05:00Z")
        assert third["hooks_delivered"] == 6
    finally:
        receiver.stop()
    assert [e["id"] for e in receiver.accepted] == [r["event_id"] for r in stored]
    assert receiver.requests[1].event["id"] == seen.event["id"]  # the repeat: same id
    assert receiver.requests[1].body == seen.body  # and the same bytes
    assert [r["status"] for r in outbox_events(db)] == ["delivered"] * 6
    status = cli("status", "--now", "2027-03-01T14:05:30Z")
    assert "failing since" not in status.stdout and "0 waiting, 0 failed" in status.stdout


def test_event_fails_for_good_after_its_attempts_and_the_next_goes_on(cli, db, tmp_path, receiver):
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml(receiver.url, "    retry: {attempts: 2}\n"))
    receiver.status = 500
    tick(cli, T0)
    tick(cli, "2027-03-01T14:02:00Z")  # the second and last attempt
    receiver.status = 200
    tick(cli, "2027-03-01T14:05:00Z")  # the next event was refused once meanwhile
    stored = outbox_events(db)
    assert [r["status"] for r in stored] == ["failed"] + ["delivered"] * 5
    assert stored[0]["last_error"].startswith("gave up after 2 attempts: http://127.0.0.1:")
    assert "HTTP 500" in stored[0]["last_error"]
    assert [e["id"] for e in receiver.accepted] == [r["event_id"] for r in stored[1:]]
    listed = json.loads(cli("hooks", "list", "--json").stdout)
    assert (listed[0]["waiting"], listed[0]["failed"], listed[0]["last_error"]) == (0, 1, None)

    # Sent again by hand, with fresh attempts: the receiver gets it, with its id.
    assert cli("hooks", "retry", "--url", "https://nowhere.example/").exit_code == 1
    result = cli("hooks", "retry", "--url", receiver.url)
    assert result.exit_code == 0 and result.stdout.strip() == (
        "requeued 1 event; the next tick sends them"
    )
    assert tick(cli, "2027-03-01T14:06:00Z")["hooks_delivered"] == 1
    assert receiver.accepted[-1]["id"] == stored[0]["event_id"]
    assert [r["status"] for r in outbox_events(db)] == ["delivered"] * 6


@pytest.mark.slow
def test_a_hanging_receiver_holds_up_neither_the_sends_nor_the_end_of_the_tick(
    db, tmp_path, receiver
):
    receiver.hang = 30  # answers after 30 s; the hook waits 10 s (the default)
    path = write_yaml(tmp_path, ONE_EMAIL)
    path.write_text(path.read_text() + hooks_yaml(receiver.url), encoding="utf-8")
    assert pipectl(db, "apply", str(path)).returncode == 0
    csv = tmp_path / "leads.csv"
    csv.write_text(LEADS, encoding="utf-8")
    assert pipectl(db, "leads", "import", str(csv), "--account", "acme", "--pipeline", "drip",
                   ).returncode == 0  # fmt: skip

    started = time.monotonic()
    # In tmp_path: against PostgreSQL the outbox is in the directory the tick runs in.
    result = pipectl(db, "tick", "--now", T0, "--max-seconds", "3", "--json", cwd=tmp_path)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 8, took  # its budget (3 s) and start-up, not the receiver's 30 s
    assert json.loads(result.stdout)["done"] == 4
    assert len(outbox(tmp_path)) == 2
    assert len(receiver.requests) == 1  # one POST, left hanging
    # Left behind at the deadline: still pending, sent again (same id) by the next tick.
    assert [r["status"] for r in outbox_events(db)] == ["pending"] * 6
    assert receiver.requests[0].event["id"] == outbox_events(db)[0]["event_id"]
    assert rows(db, "SELECT claimed_by FROM hooks") == [{"claimed_by": None}]  # free again


# --- events from real flows ---------------------------------------------------------------

START = datetime.now(UTC).replace(microsecond=0)  # the mailbox dates what it holds by now


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


FLOWS = """\
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
    inbox:
      host: 127.0.0.1
      port: {imap_port}
      security: none
      username: ${{IMAP_USER}}
      password: ${{IMAP_PASSWORD}}
pipelines:
  - key: outreach
    account: acme
    stages:
      - key: intro
        on_failure: undeliverable
        actions:
          - email: {{subject: "Quick question", body: "Hi {{{{ lead.first_name }}}}"}}
          - wait_for_reply: {{timeout: 3d, on_reply: replied, on_timeout: quiet}}
      - {{key: replied, outcome: won}}
      - {{key: quiet, outcome: lost}}
      - {{key: undeliverable, outcome: lost}}
hooks:
  - url: {url}
    events: [replied, opted_out, bounced, won, lost, failed]
    secret: ${{HOOK_SECRET}}
  - url: {url}?only=acme
    account: acme
    events: [stage_entered]
    secret: ${{HOOK_SECRET}}
"""


@pytest.mark.slow  # a real Dovecot for the bounce
def test_replies_opt_outs_bounces_refusals_and_timeouts_each_reach_the_hook(
    cli, db, tmp_path, mailbox, receiver, monkeypatch
):
    from .channel_servers import smtp_server
    from .mail_samples import postfix_dsn

    monkeypatch.setenv("IMAP_USER", mailbox.user)
    monkeypatch.setenv("IMAP_PASSWORD", mailbox.password)
    people = {
        "ann": "ann@buyer.example",  # replies: replied, won
        "bob": "bob@buyer.example",  # STOP: opted_out
        "carol": "carol@buyer.example",  # bounces: bounced, failed, then lost
        "dave": "dave@buyer.example",  # refused by the SMTP server: failed, then lost
        "erin": "erin@buyer.example",  # never answers: lost at the timeout
    }
    with smtp_server() as (smtp, received):
        received.replies[people["dave"]] = "550 5.1.1 <dave@buyer.example>: Recipient unknown"
        (tmp_path / "pipelines.yaml").write_text(
            FLOWS.format(smtp_port=smtp.port, imap_port=mailbox.server.port, url=receiver.url)
        )
        assert cli("apply").exit_code == 0
        csv = tmp_path / "leads.csv"
        csv.write_text("Email,First Name\n" + "".join(f"{e},{n}\n" for n, e in people.items()))
        assert (
            cli("leads", "import", csv, "--account", "acme", "--pipeline", "outreach").exit_code
            == 0
        )
        assert tick(cli, at(0), "--no-sync")["failed"] == 1  # dave
        assert len(received.received) == 4

        assert cli("reply", "--account", "acme", "--email", people["ann"], "--body", "Yes, call me",
                   "--at", at(60)).exit_code == 0  # fmt: skip
        assert cli("reply", "--account", "acme", "--email", people["bob"], "--body", "STOP",
                   "--at", at(61)).exit_code == 0  # fmt: skip
        (sent,) = rows(db, "SELECT message_id FROM deliveries WHERE recipient = ?", people["carol"])
        mailbox.append(postfix_dsn(failed=people["carol"], message_id=sent["message_id"]))
        assert cli("sync", "--now", at(62)).exit_code == 0
        tick(cli, at(63), "--no-sync")
        tick(cli, at(3 * 24 * 60 + 60), "--no-sync")  # erin's wait times out

    assert all(r.verified for r in receiver.requests)
    by_hook: dict[str, list[dict]] = {}
    for request in receiver.requests:
        by_hook.setdefault(request.path, []).append(request.event)
    all_events, stages = by_hook["/pipectl"], by_hook["/pipectl?only=acme"]
    got = {
        name: [e["type"] for e in all_events if e["lead"]["email"] == email]
        for name, email in people.items()
    }
    assert got == {
        "ann": ["replied", "won"],
        "bob": ["opted_out"],
        "carol": ["bounced", "failed", "lost"],
        "dave": ["failed", "lost"],
        "erin": ["lost"],
    }
    replied = next(e for e in all_events if e["type"] == "replied")
    assert (replied["pipeline"], replied["stage"], replied["occurred_at"]) == (
        "outreach",
        "intro",
        at(60),
    )
    assert replied["reply"]["body"] == "Yes, call me" and replied["reply"]["kind"] == "reply"
    opted = next(e for e in all_events if e["type"] == "opted_out")
    assert opted["reply"]["body"] == "STOP" and opted["lead"]["status"] == "stopped"
    bounced = next(e for e in all_events if e["type"] == "bounced")
    assert bounced["reply"]["kind"] == "bounce" and bounced["stage"] == "intro"
    failed = [e for e in all_events if e["type"] == "failed"]
    assert [e["stage"] for e in failed] == ["intro", "intro"]
    assert {e["type"] for e in stages} == {"stage_entered"}
    assert [e["stage"] for e in stages if e["lead"]["email"] == people["ann"]] == [
        "intro",
        "replied",
    ]
    stored = rows(db, "SELECT event_id FROM hook_events ORDER BY id")
    assert len(stored) == len(receiver.requests) == len(receiver.accepted)
    assert sorted(e["id"] for e in receiver.accepted) == sorted(r["event_id"] for r in stored)


# --- pipectl hooks test -------------------------------------------------------------------


def test_hooks_test_posts_a_signed_sample_and_says_what_the_receiver_answered(cli, receiver):
    result = cli("hooks", "test", receiver.url, "--secret-env", "HOOK_SECRET",
                 "--header", "X-Team: sales", "--event", "won")  # fmt: skip
    assert result.exit_code == 0, result.output
    (request,) = receiver.requests
    assert request.verified and request.headers["X-Team"] == "sales"
    assert request.headers["X-Pipectl-Event"] == "won"
    assert list(request.event) == PAYLOAD_KEYS and request.event["type"] == "won"
    assert result.stdout.strip() == (
        f"HTTP 200: delivered a sample won event (signed, id {request.event['id']})"
    )

    receiver.status = 410
    refused = cli("hooks", "test", receiver.url, "--secret-env", "HOOK_SECRET")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"error: hooks test: not delivered: http://127.0.0.1:{receiver.port}: HTTP 410: no"
    )
    unsigned = cli("hooks", "test", receiver.url)  # this receiver wants a signature
    assert unsigned.exit_code == 1 and "HTTP 401" in unsigned.stderr

    missing = cli("hooks", "test", receiver.url, "--secret-env", "NOT_SET_ANYWHERE")
    assert missing.exit_code == 1
    assert "environment variable NOT_SET_ANYWHERE is not set" in missing.stderr
    assert len(receiver.requests) == 3  # nothing posted without its secret


def test_hooks_test_reports_a_receiver_that_is_down_and_never_shows_the_secret(cli, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    port = HookReceiver(None).port
    result = cli("hooks", "test", f"http://127.0.0.1:{port}/in?token=${{HOOK_SECRET}}",
                 "--secret-env", "HOOK_SECRET")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: hooks test: not delivered: http://127.0.0.1:{port}: Connect"
    )
    assert SECRET not in result.output and "Traceback" not in result.output
    bad = cli("hooks", "test", "mailto:someone@example.com")
    assert bad.exit_code == 2 and "http:// or https://" in bad.stderr


def test_a_hook_of_one_account_hears_only_it_and_a_removed_hook_fails_its_waiting_events(
    cli, db, tmp_path, receiver
):
    beta = ONE_EMAIL.replace("key: drip", "key: beta-drip").replace(
        "account: acme", "account: beta"
    )
    down = "http://127.0.0.1:9/down"  # nothing listens there: its events wait
    hooks = (
        f"hooks:\n  - {{url: '{receiver.url}', account: beta, secret: '${{HOOK_SECRET}}'}}\n"
        f"  - {{url: '{down}', events: [won]}}\n"
    )
    path = prepare(cli, tmp_path, ONE_EMAIL + beta, hooks)  # Ann and Bob in acme's drip
    csv = tmp_path / "beta.csv"
    csv.write_text("Email,First Name\ncara@beta.example,Cara\n", encoding="utf-8")
    assert (
        cli("leads", "import", csv, "--account", "beta", "--pipeline", "beta-drip").exit_code == 0
    )
    tick(cli, T0)

    assert {e["account"] for e in receiver.accepted} == {"beta"}
    assert [e["type"] for e in receiver.accepted] == ["stage_entered", "stage_entered", "won"]
    waiting = rows(db, "SELECT status FROM hook_events e JOIN hooks h ON h.id = e.hook_id"
                       " WHERE h.url = ?", down)  # fmt: skip
    assert [w["status"] for w in waiting] == ["pending"] * 3  # won, for Ann, Bob and Cara

    path.write_text(path.read_text().replace(f"  - {{url: '{down}', events: [won]}}\n", ""))
    result = cli("apply", path)
    assert f"hook {down}: removed" in result.stdout
    gone = rows(db, "SELECT e.status, e.last_error FROM hook_events e JOIN hooks h"
                    " ON h.id = e.hook_id WHERE h.url = ?", down)  # fmt: skip
    assert (
        gone
        == [
            {
                "status": "failed",
                "last_error": "the hook was removed from the YAML before this event was delivered",
            }
        ]
        * 3
    )
    assert [h["url"] for h in json.loads(cli("hooks", "list", "--json").stdout)] == [receiver.url]
    assert down not in cli("status", "--now", "2027-03-01T14:01:00Z").stdout


def test_one_hook_is_posted_to_by_one_runner_at_a_time(cli, db, tmp_path, monkeypatch):
    """With many runners (PostgreSQL), a hook's events go from one at a time, in order: a
    runner claims the hook until it releases it, or its lease runs out (it died)."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml("http://127.0.0.1:9/down"))
    cli("tick", "--now", T0)  # writes the events; the receiver is down
    later, lease = "2027-03-01T15:00:00Z", "2027-03-01T15:01:00Z"
    store = Store(db)
    try:
        (first,) = store.hook_delivery.due_batches(later, (), 100, token="a", lease_until=lease)
        assert len(first.events) == 6
        assert store.hook_delivery.due_batches(later, (), 100, token="b", lease_until=lease) == []
        # Runner a died: after its lease, b takes the hook, from the same oldest event.
        after = "2027-03-01T15:01:00Z"
        (taken,) = store.hook_delivery.due_batches(after, (), 100, token="b", lease_until=lease)
        assert taken.events[0].event_id == first.events[0].event_id
        store.hook_delivery.release_hooks([taken.hook.id], "b")
        assert store.hook_delivery.due_batches(later, (), 100, token="c", lease_until=lease) != []
    finally:
        store.close()


def test_a_url_from_the_environment_is_read_when_posting_and_never_stored(
    cli, db, tmp_path, receiver, monkeypatch
):
    monkeypatch.setenv("HOOK_URL", receiver.url + "?token=t0k3n-8812")
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml("${HOOK_URL}", "    events: [won, opted_out]\n"))
    assert tick(cli, T0)["hooks_delivered"] == 2
    assert [r.path for r in receiver.requests] == ["/pipectl?token=t0k3n-8812"] * 2
    assert rows(db, "SELECT url FROM hooks") == [{"url": "${HOOK_URL}"}]

    monkeypatch.delenv("HOOK_URL")  # then an event: it waits, naming what is missing
    assert cli("reply", "--account", "acme", "--email", "ann@example.com", "--body", "STOP",
               "--at", "2027-03-01T14:05:00Z").exit_code == 0  # fmt: skip
    assert tick(cli, "2027-03-01T14:06:00Z")["hooks_refused"] == 1
    (hook,) = json.loads(cli("hooks", "list", "--json").stdout)
    assert (hook["url"], hook["waiting"]) == ("${HOOK_URL}", 1)
    assert hook["last_error"] == "hook: environment variable HOOK_URL is not set"
    assert "t0k3n-8812" not in dump(db)


@pytest.mark.slow  # a receiver taking 0.7 s an event, ticks of seconds
def test_a_slow_receiver_keeps_what_it_took_when_the_tick_ends(cli, db, tmp_path, receiver):
    """Each event's outcome is written as it comes: a receiver slower than the tick's time
    gets the events it answered recorded, and the next tick goes on from there instead of
    posting them all again."""
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml(receiver.url))
    receiver.hang = 0.7  # answers 2xx, slowly
    tick(cli, T0, "--max-seconds", "2")
    delivered = [e for e in outbox_events(db) if e["status"] == "delivered"]
    assert delivered, "the events the receiver answered in time are recorded"
    receiver.hang = 0.0
    time.sleep(1)  # the POST left running at the end of the tick is answered
    tick(cli, "2027-03-01T14:05:00Z")
    assert [e["status"] for e in outbox_events(db)] == ["delivered"] * 6
    ids = [event["id"] for event in receiver.accepted]
    assert len(set(ids)) == 6 and len(ids) - 6 <= 1  # at most the one left running, again


@pytest.mark.slow  # a real `pipectl run` and a receiver taking 3 s an event
def test_run_stops_on_sigterm_while_it_posts_events_and_leaves_the_rest_pending(
    cli, db, tmp_path, receiver
):
    """SIGTERM during the webhook deliveries after the sends: `run` used to post on until the
    tick's time was up (`--interval` less 10 s: 90 s here), so systemd would kill it mid-POST.
    It stops at once; the POST in flight is left behind and goes again, same id, next tick."""
    prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml(receiver.url))
    receiver.hang = 3.0  # a slow CRM: each event takes 3 s to answer
    service = spawn(db, "run", "--interval", "100")
    try:
        wait_for(lambda: len(receiver.requests) >= 1, process=service)
        stopped_at = time.monotonic()
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        if service.poll() is None:
            service.kill()
    assert code == 0, service.stderr.read()
    assert took < 6, f"run took {took:.1f} s to stop after SIGTERM"
    time.sleep(3.5)  # the POST left in flight is answered
    assert len(receiver.requests) <= 2  # none started after the signal (one may have, before)
    events = outbox_events(db)
    assert len(events) == 6 and sum(e["status"] == "pending" for e in events) >= 4
    receiver.hang = 0.0
    tick(cli, "2027-03-01T14:05:00Z")
    assert [e["status"] for e in outbox_events(db)] == ["delivered"] * 6
    ids = [event["id"] for event in receiver.accepted]
    assert set(ids) == {e["event_id"] for e in events} and len(ids) - 6 <= 2


def test_a_missing_secret_variable_posts_nothing_and_uses_up_no_attempts(
    cli, db, tmp_path, monkeypatch
):
    """As a channel's sends wait for a missing `${VAR}` without using attempts, so do a
    hook's events: they used to fail for good after the hook's attempts (about 8 hours)."""
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    receiver = HookReceiver(SECRET).start()
    try:
        prepare(cli, tmp_path, ONE_EMAIL, hooks_yaml(receiver.url, "    retry: {attempts: 2}\n"))
        for minute in range(0, 120, 30):  # two hours of ticks, more than its 2 attempts
            tick(cli, f"2027-03-01T{14 + minute // 60:02d}:{minute % 60:02d}:00Z")
        events = outbox_events(db)
        assert receiver.requests == []  # nothing unsigned went out
        assert {(e["status"], e["attempts"]) for e in events} == {("pending", 0)}
        assert "HOOK_SECRET is not set" in events[0]["last_error"]
        monkeypatch.setenv("HOOK_SECRET", SECRET)  # the operator sets it
        tick(cli, "2027-03-01T16:30:00Z")
    finally:
        receiver.stop()
    assert [e["status"] for e in outbox_events(db)] == ["delivered"] * 6
    assert [r.verified for r in receiver.requests] == [True] * 6
