"""kill -9 at several points of a tick, and eight ticks at once: later ticks finish everything,
nothing is lost, only sends in flight repeat (with their Message-ID), the database stays sound."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from .backends import is_url
from .channel_servers import SmtpRecorder, SmtpServer
from .conftest import rows
from .scenario import (
    T0,
    serve,
    setup,
    smtp_channel,
    spawn,
    start_smtp,
    statuses,
    wait_for,
    write_csv,
)

pytestmark = pytest.mark.slow  # kills real processes mid-work

PIPELINE = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait: 1m
          - move: won
      - {key: won, outcome: won}
"""
LEADS = 12
WORKERS = 4
FINISHED = {"done", "failed", "skipped"}


def lock_taken(db: Path | str, pid: int) -> bool:
    """The tick took its lock (SQLite), or recorded itself as a runner (PostgreSQL)."""
    if is_url(db):
        return bool(rows(db, "SELECT 1 FROM runners WHERE pid = ?", pid))
    try:
        return Path(f"{db}.lock").read_text().split()[:1] == [str(pid)]
    except FileNotFoundError:
        return False


def kill_9(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stderr.close()


def settle(recorder: SmtpRecorder) -> None:
    """Let the server finish DATA commands a killed tick left behind."""
    seen = -1
    while seen != len(recorder.received):
        seen = len(recorder.received)
        time.sleep(0.25)


def assert_sound(db: Path) -> None:
    """Holds at every moment, crash or not: an intact file, and per lead per enrollment at most
    one action pending, running or awaiting a reply."""
    if not is_url(db):
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            conn.close()
    doubled = rows(
        db,
        "SELECT lead_id, enrollment_id, count(*) AS n FROM lead_stage_actions "
        "WHERE status IN ('pending', 'running', 'awaiting_reply') "
        "GROUP BY lead_id, enrollment_id HAVING count(*) > 1",
    )
    assert doubled == []


def finish(cli, db: Path, minutes: range) -> None:
    """Later ticks (in-process, to keep the suite fast; the killed one was a real process)."""
    for minute in minutes:
        result = cli("tick", "--now", f"2027-03-01T14:{minute:02d}:00Z")
        assert result.exit_code == 0, result.output
        assert_sound(db)


def assert_everything_finished(db: Path, recorder: SmtpRecorder, leads: int) -> None:
    assert set(statuses(db)) <= FINISHED
    assert statuses(db) == {"done": 3 * leads}
    assert rows(db, "SELECT count(*) AS n FROM enrollments WHERE status != 'won'")[0]["n"] == 0
    per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
    assert len(per_lead) == leads  # every lead got its message
    repeats = [lead for lead, n in per_lead.items() if n > 1]
    assert len(repeats) <= WORKERS and max(per_lead.values()) <= 2  # only sends in flight
    for lead in repeats:
        assert len({r.message["Message-ID"] for r in recorder.to(lead)}) == 1
    delivered = rows(db, "SELECT count(*) AS n FROM deliveries")[0]["n"]
    assert delivered == leads  # each send's result written once


# When to kill the tick: a predicate on (db, pid, recorder), and a pause after it holds.
KILL_POINTS = {
    "right after it took the lock": (lambda db, pid, rec: lock_taken(db, pid), 0.0),
    "during recovery, admission or the claim": (lambda db, pid, rec: lock_taken(db, pid), 0.05),
    "first send on the wire": (lambda db, pid, rec: rec.connections >= 1, 0.0),
    "mid-sends": (lambda db, pid, rec: len(rec.received) >= LEADS // 3, 0.0),
    "server got the last message, results being written": (
        lambda db, pid, rec: len(rec.received) >= LEADS,
        0.0,
    ),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_at_each_point_then_later_ticks_finish_everything(cli, db, tmp_path, point):
    predicate, pause = KILL_POINTS[point]
    server, recorder = start_smtp(delay=0.15)
    try:
        setup(
            cli,
            tmp_path,
            PIPELINE,
            {("acme", "drip"): LEADS},
            acme_extra=smtp_channel(server.port),
        )
        victim = spawn(db, "tick", "--now", T0, "--workers", str(WORKERS))
        wait_for(lambda: predicate(db, victim.pid, recorder), process=victim)
        time.sleep(pause)
        kill_9(victim)
        assert_sound(db)  # the rows it left `running` (in flight or claimed ahead) recover

        recorder.delay = 0
        finish(cli, db, range(1, 4, 2))
        settle(recorder)
        assert_everything_finished(db, recorder, LEADS)
    finally:
        server.stop()


ADMISSION = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - wait: 1m
          - move: won
      - {key: won, outcome: won}
"""


def test_kill_9_during_admission_of_thousands_admits_all_or_none(cli, db, tmp_path):
    leads = 2000
    setup(cli, tmp_path, ADMISSION, {("acme", "drip"): leads})
    for pause in (0.0, 0.05, 0.12, 0.3):  # several kills, each at another moment
        victim = spawn(db, "tick", "--now", T0)
        wait_for(lambda: lock_taken(db, victim.pid), process=victim)  # noqa: B023
        time.sleep(pause)
        kill_9(victim)
        assert_sound(db)
        active = rows(db, "SELECT count(*) AS n FROM enrollments WHERE status = 'active'")[0]["n"]
        actions = rows(db, "SELECT count(*) AS n FROM lead_stage_actions")[0]["n"]
        assert active in (0, leads)  # one admission transaction: all or none
        assert actions == 2 * active
    finish(cli, db, range(2, 4))
    assert statuses(db) == {"done": 2 * leads}
    assert rows(db, "SELECT status, count(*) AS n FROM enrollments GROUP BY status") == [
        {"status": "won", "n": leads}
    ]


def test_eight_ticks_at_once_send_each_lead_exactly_one_message(cli, db, tmp_path):
    server, recorder = start_smtp(delay=0.05)
    try:
        setup(cli, tmp_path, PIPELINE, {("acme", "drip"): 30}, acme_extra=smtp_channel(server.port))
        procs = [spawn(db, "tick", "--now", T0, "--workers", "4") for _ in range(8)]
        codes = [p.wait(timeout=60) for p in procs]
        errors = [p.stderr.read() for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert set(codes) <= {0, 75} and codes.count(0) >= 1, (codes, errors)
        for code, stderr in zip(codes, errors, strict=True):
            assert "Traceback" not in stderr
            if code == 75:
                assert "another tick is running" in stderr
        assert_sound(db)
        per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
        assert len(per_lead) == 30 and set(per_lead.values()) == {1}
        assert rows(db, "SELECT count(*) AS n FROM deliveries")[0]["n"] == 30
        finish(cli, db, range(2, 3))  # the waits end; nothing is sent again
        assert statuses(db) == {"done": 90} and len(recorder.received) == 30
    finally:
        server.stop()


def test_kill_9_during_an_import_of_thousands_imports_all_or_nothing(cli, db, tmp_path):
    setup(cli, tmp_path, ADMISSION, {})
    big = write_csv(tmp_path, "big.csv", 8000)
    for pause in (0.55, 0.7, 0.85, 1.0):  # from the start of the process
        victim = spawn(db, "leads", "import", str(big), "--account", "acme", "--pipeline", "drip")
        time.sleep(pause)
        kill_9(victim)
        assert_sound(db)
        leads = rows(db, "SELECT count(*) AS n FROM leads")[0]["n"]
        queued = rows(db, "SELECT count(*) AS n FROM enrollments")[0]["n"]
        assert leads in (0, 8000) and queued == leads
    result = cli("leads", "import", big, "--account", "acme", "--pipeline", "drip")
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT count(*) AS n FROM enrollments WHERE status = 'queued'")[0]["n"] == 8000


REPLY_MOVES = """\
  - key: drip
    account: acme
    name: Drip
    on_reply: responded
    stages:
      - key: intro
        actions:
          - email: {subject: "Intro", body: "Hello"}
          - wait: 1d
      - key: responded
        actions:
          - email: {subject: "Next steps", body: "Thanks for answering"}
      - {key: won, outcome: won}
"""


def test_a_reply_during_a_send_keeps_one_open_action_per_enrollment(cli, db, tmp_path):
    """It did not: the new stage's first send was due, and sent, beside the one in flight."""
    server, recorder = start_smtp(delay=1.5)
    try:
        setup(
            cli,
            tmp_path,
            REPLY_MOVES,
            {("acme", "drip"): 1},
            acme_extra=smtp_channel(server.port),
        )
        ticking = spawn(db, "tick", "--now", T0)
        wait_for(lambda: recorder.connections >= 1, process=ticking)
        reply = cli("reply", "--account", "acme", "--email", "lead0@acme.example", "--at", T0)
        assert reply.exit_code == 0, reply.output
        try:
            assert_sound(db)
            assert statuses(db) == {"running": 1, "skipped": 1, "waiting": 1}
        finally:
            assert ticking.wait(timeout=30) == 0
            ticking.stdout.close()
            ticking.stderr.close()
        assert_sound(db)
        assert statuses(db) == {"done": 2, "skipped": 1}  # the next stage went once it could
        assert [r.message["Subject"] for r in recorder.received] == ["Intro", "Next steps"]
    finally:
        server.stop()


class SlowRefusing(SmtpRecorder):
    """Takes a while over DATA, then answers `reply` (a refusal) to the intro email."""

    delay = 1.2
    reply = "451 4.3.0 Try again later"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        if self.reply and b"Subject: Intro" in envelope.content:
            return self.reply
        return await super().handle_DATA(server, session, envelope)


def start_refusing(reply: str) -> tuple[SmtpServer, SlowRefusing]:
    recorder = SlowRefusing()
    recorder.reply = reply
    return serve(recorder), recorder


def during_the_send(cli, db, recorder, *command: str) -> None:
    """Run `command` while a tick (a real process) has the lead's email on the wire."""
    ticking = spawn(db, "tick", "--now", T0)
    wait_for(lambda: recorder.connections >= 1, process=ticking)
    result = cli(*command)
    assert result.exit_code == 0, result.output
    assert ticking.wait(timeout=30) == 0
    ticking.stdout.close()
    ticking.stderr.close()


def test_a_send_that_fails_after_the_lead_was_stopped_is_not_retried(cli, db, tmp_path):
    """It was: the retry put the row back to `pending` and a later tick sent it anyway."""
    server, recorder = start_refusing("451 4.3.0 Try again later")
    try:
        setup(
            cli, tmp_path, REPLY_MOVES, {("acme", "drip"): 1}, acme_extra=smtp_channel(server.port)
        )
        during_the_send(cli, db, recorder, "leads", "stop", "lead0@acme.example")
        recorder.reply = ""
        assert cli("tick", "--now", "2027-03-01T15:00:00Z").exit_code == 0
        assert recorder.received == []
        assert statuses(db) == {"skipped": 2}
        assert rows(db, "SELECT status FROM enrollments") == [{"status": "stopped"}]
        assert_sound(db)
    finally:
        server.stop()


def test_a_send_refused_after_a_reply_moved_the_lead_does_not_fail_the_new_stage(cli, db, tmp_path):
    """It did: the old stage's on_failure (stop) ended the enrollment in its new stage."""
    server, recorder = start_refusing("550 5.1.1 No such user")
    try:
        setup(
            cli, tmp_path, REPLY_MOVES, {("acme", "drip"): 1}, acme_extra=smtp_channel(server.port)
        )
        reply = ("reply", "--account", "acme", "--email", "lead0@acme.example", "--at", T0)
        recorder.delay = 1.5  # the reply lands before the refusal
        during_the_send(cli, db, recorder, *reply)
        intro, wait, follow_up = rows(db, "SELECT * FROM lead_stage_actions ORDER BY id")
        assert intro["status"] == "failed" and "550" in intro["last_error"]
        assert wait["status"] == "skipped"
        assert follow_up["status"] == "done"  # the responded stage went on
        assert [r.message["Subject"] for r in recorder.received] == ["Next steps"]
        assert rows(db, "SELECT status FROM enrollments")[0]["status"] == "idle"
        assert_sound(db)
    finally:
        server.stop()


def test_a_send_in_flight_at_a_crash_is_not_resent_to_a_lead_stopped_since(cli, db, tmp_path):
    server, recorder = start_refusing("")
    recorder.delay = 5
    try:
        setup(
            cli, tmp_path, REPLY_MOVES, {("acme", "drip"): 1}, acme_extra=smtp_channel(server.port)
        )
        victim = spawn(db, "tick", "--now", T0)
        wait_for(lambda: recorder.connections >= 1, process=victim)
        kill_9(victim)
        assert statuses(db)["running"] == 1  # the send in flight at the crash
        assert cli("leads", "stop", "lead0@acme.example").exit_code == 0
        recorder.delay = 0  # the killed tick's DATA is still in its 5 s
        assert cli("tick", "--now", "2027-03-01T14:01:00Z").exit_code == 0
        assert statuses(db) == {"skipped": 2}
        assert recorder.received == []  # not sent again
        assert_sound(db)
    finally:
        server.stop()


def test_after_a_crash_a_lead_that_replied_meanwhile_goes_on_in_its_new_stage(cli, db, tmp_path):
    server, recorder = start_refusing("")
    recorder.delay = 5
    try:
        setup(
            cli, tmp_path, REPLY_MOVES, {("acme", "drip"): 1}, acme_extra=smtp_channel(server.port)
        )
        victim = spawn(db, "tick", "--now", T0)
        wait_for(lambda: recorder.connections >= 1, process=victim)
        kill_9(victim)
        reply = cli("reply", "--account", "acme", "--email", "lead0@acme.example", "--at", T0)
        assert reply.exit_code == 0, reply.output
        assert_sound(db)
        recorder.delay = 0  # the killed tick's DATA is still in its 5 s
        assert cli("tick", "--now", "2027-03-01T14:01:00Z").exit_code == 0
        assert_sound(db)
        intro, wait, follow_up = rows(db, "SELECT * FROM lead_stage_actions ORDER BY id")
        assert (intro["status"], wait["status"], follow_up["status"]) == ("skipped",) * 2 + (
            "done",
        )
        assert [r.message["Subject"] for r in recorder.received] == ["Next steps"]
    finally:
        server.stop()
