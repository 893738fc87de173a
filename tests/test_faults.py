"""Faults at the wire, through `pipectl tick`: a server that never answers, 421 in the middle of a
session, HTTP 500, 429 with Retry-After, a slow HTTP server. Each is retried (the lead's fault) or
held with its channel (the server's) as promised, nothing is lost, no traceback, and the tick
stays within its budget."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .channel_servers import SmtpRecorder, http_server, smtp_server
from .conftest import rows
from .scenario import ONE_EMAIL, ONE_TEXT, T0, pipectl, serve, statuses, write_yaml

pytestmark = pytest.mark.slow  # real servers that hang, time out or answer late


@contextmanager
def silent_server(port: int | None = None) -> Iterator[tuple[int, list]]:
    """Accepts TCP connections and never says a word, like a wedged relay or API."""
    listener = socket.create_server(("127.0.0.1", port or 0), reuse_port=False)
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def email_account(port: int, timeout: int) -> str:
    return (
        "    channels:\n"
        f"      email: {{transport: smtp, host: 127.0.0.1, port: {port}, security: none,"
        f' timeout: {timeout}, from: "Acme <sales@acme.example>"}}'
    )


def sms_account(settings: str) -> str:
    return f"    channels:\n      sms: {{{settings}, from: '+15550100000'}}"


def prepare(cli, tmp_path: Path, pipeline: str, key: str, count: int, extra: str) -> None:
    assert cli("apply", write_yaml(tmp_path, pipeline, acme_extra=extra)).exit_code == 0
    path = tmp_path / "leads.csv"
    lines = ["Email,First Name,Phone"]
    lines += [f"lead{i}@acme.example,Lead{i},+1415555010{i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("leads", "import", path, "--account", "acme", "--pipeline", key)
    assert result.exit_code == 0, result.output


def sends(db: Path, kind: str) -> list[dict]:
    return rows(db, "SELECT * FROM lead_stage_actions WHERE type = ? ORDER BY id", kind)


def clean_tick(db: Path, now: str, *args: str):
    """A tick in its own process, as cron runs it: exit 0, no traceback."""
    result = pipectl(db, "tick", "--now", now, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result


def later_tick(cli, now: str, *args: str) -> None:
    """A later tick in-process, to keep the suite fast (the first of each test is a process)."""
    result = cli("tick", "--now", now, *args)
    assert result.exit_code == 0, result.output


def test_smtp_that_never_answers_times_out_and_holds_the_channel_within_the_budget(
    cli, db, tmp_path
):
    with silent_server() as (port, accepted):
        prepare(cli, tmp_path, ONE_EMAIL, "drip", 3, email_account(port, timeout=1))
        started = time.monotonic()
        clean_tick(db, T0, "--max-seconds", "5")
        assert time.monotonic() - started < 8  # 1 s timeouts in parallel, plus process start
        assert accepted  # it connected; the server just never answered
    for row in sends(db, "email"):  # the channel's fault: held as they were, not an attempt
        assert row["status"] == "pending" and row["attempts"] == 0
        assert "timed out" in row["last_error"].lower() and row["perform_at"] == T0
    with smtp_server(port) as (_, recorder):  # the server comes back on the same port
        later_tick(cli, "2027-03-01T14:10:00Z")
        assert sorted(r.rcpt_tos[0] for r in recorder.received) == [
            f"lead{i}@acme.example" for i in range(3)
        ]
    assert statuses(db) == {"done": 6}


class Closes421(SmtpRecorder):
    """Answers the second message with 421, as a server shutting a session down does."""

    data_commands = 0

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.data_commands += 1
            n = self.data_commands
        if n == 2:
            return "421 4.3.2 Service shutting down, try again later"
        return await super().handle_DATA(server, session, envelope)


def test_smtp_421_in_the_middle_of_a_session_is_retried(cli, db, tmp_path):
    recorder = Closes421()
    server = serve(recorder)
    try:
        prepare(cli, tmp_path, ONE_EMAIL, "drip", 4, email_account(server.port, timeout=5))
        clean_tick(db, T0, "--workers", "1")  # one connection: the 421 comes mid-session
        later_tick(cli, "2027-03-01T14:10:00Z", "--workers", "1")
    finally:
        server.stop()
    assert recorder.data_commands == 5  # four messages and the one refused
    per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
    assert per_lead == {f"lead{i}@acme.example": 1 for i in range(4)}
    assert statuses(db) == {"done": 8}
    retried = [r for r in sends(db, "email") if r["last_error"] or r["attempts"] > 1]
    assert len(retried) <= 1


def test_http_500_from_the_sms_webhook_is_retried(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("SMS_HOOK_TOKEN", "hook-token-1234")
    with http_server() as (url, http):
        extra = sms_account(
            f"transport: webhook, url: '{url}/sms', timeout: 2,"
            " headers: {Authorization: 'Bearer ${SMS_HOOK_TOKEN}'}"
        )
        prepare(cli, tmp_path, ONE_TEXT, "texts", 2, extra)
        http.answer(500, b"upstream exploded")
        http.answer(500, b"upstream exploded")
        clean_tick(db, T0)
        for row in sends(db, "sms"):
            assert row["status"] == "pending" and row["attempts"] == 1
            assert "HTTP 500" in row["last_error"] and row["perform_at"] > T0
        later_tick(cli, "2027-03-01T14:10:00Z")
        assert statuses(db) == {"done": 4}
        assert len(http.requests) == 4
        assert {r.json()["to"] for r in http.requests} == {"+14155550100", "+14155550101"}
        assert {r.headers["Authorization"] for r in http.requests} == {"Bearer hook-token-1234"}


def test_http_429_with_retry_after_waits_at_least_that_long(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("TWILIO_SID", "AC0001")
    monkeypatch.setenv("TWILIO_TOKEN", "twilio-token-1234")
    with http_server() as (url, http):
        extra = sms_account(
            "transport: twilio, account_sid: '${TWILIO_SID}', auth_token: '${TWILIO_TOKEN}',"
            f" base_url: '{url}', timeout: 2"
        )
        prepare(cli, tmp_path, ONE_TEXT, "texts", 1, extra)
        http.answer(429, {"message": "Too Many Requests"}, Retry_After="120")
        clean_tick(db, T0)
        [row] = sends(db, "sms")  # the channel's limit: held, probed after the server's 120 s
        assert row["status"] == "pending" and "HTTP 429" in row["last_error"]
        assert row["perform_at"] == T0 and row["attempts"] == 0
        [health] = rows(db, "SELECT next_probe_at FROM channel_health")
        assert health["next_probe_at"] >= "2027-03-01T14:02:00Z"
        later_tick(cli, "2027-03-01T14:01:30Z")  # too early: no probe
        assert sends(db, "sms")[0]["attempts"] == 0 and len(http.requests) == 1
        later_tick(cli, "2027-03-01T14:03:00Z")
        assert statuses(db) == {"done": 2}
        assert http.requests[-1].path == "/2010-04-01/Accounts/AC0001/Messages.json"


def test_slow_http_server_times_out_and_holds_the_channel(cli, db, tmp_path):
    with silent_server() as (port, accepted):
        extra = sms_account(f"transport: webhook, url: 'http://127.0.0.1:{port}/sms', timeout: 1")
        prepare(cli, tmp_path, ONE_TEXT, "texts", 2, extra)
        started = time.monotonic()
        clean_tick(db, T0, "--max-seconds", "5")
        assert time.monotonic() - started < 8
        assert accepted
    for row in sends(db, "sms"):
        assert row["status"] == "pending" and row["attempts"] == 0
        assert "timed out" in row["last_error"] and row["perform_at"] == T0
    assert statuses(db) == {"pending": 2, "waiting": 2}


def test_an_absurd_retry_after_is_capped_and_the_tick_goes_on(cli, db, tmp_path, monkeypatch):
    """A Retry-After of 30,000 years used to overflow the date, crash the tick after the send
    and leave the row `running`; the next tick sent it again."""
    with http_server() as (url, http):
        prepare(
            cli,
            tmp_path,
            ONE_TEXT,
            "texts",
            2,
            sms_account(f"transport: webhook, url: '{url}'"),
        )
        http.answer(503, b"", Retry_After="999999999999")
        clean_tick(db, T0, "--workers", "1")  # the 503 first: it holds the channel
        assert [r["status"] for r in sends(db, "sms")] == ["pending", "pending"]
        [health] = rows(db, "SELECT next_probe_at FROM channel_health")
        assert "2027-03-01T14:00:00Z" < health["next_probe_at"] <= "2027-03-02T14:01:00Z"
        assert len(http.requests) == 1
        later_tick(cli, "2027-03-02T14:01:00Z")  # a day later the probe goes, and the rest
        assert statuses(db) == {"done": 4} and len(http.requests) == 3


def test_smtp_that_hangs_up_at_once_holds_the_channel(cli, db, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def hang_up() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        prepare(cli, tmp_path, ONE_EMAIL, "drip", 2, email_account(port, timeout=2))
        clean_tick(db, T0)
    finally:
        stop.set()
        thread.join()
        listener.close()
    for row in sends(db, "email"):
        assert row["status"] == "pending" and row["attempts"] == 0 and row["perform_at"] == T0
        assert "connection" in row["last_error"].lower(), row["last_error"]
    with smtp_server(port) as (_, recorder):
        later_tick(cli, "2027-03-01T14:10:00Z")
        assert len(recorder.received) == 2
    assert statuses(db) == {"done": 4}
