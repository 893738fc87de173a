"""Promises about processes, shown with real processes: the lock, overlap, kill -9, SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from .conftest import rows
from .scenario import (
    ONE_EMAIL,
    T0,
    pipectl,
    setup,
    smtp_channel,
    spawn,
    start_smtp,
    statuses,
    wait_for,
)

pytestmark = pytest.mark.slow  # real tick processes, signals and kill -9


def test_second_tick_exits_75_at_once_and_names_the_holder(db, cli, tmp_path):
    cli("init")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pipectl.scheduler.lock import TickLock;"
            " TickLock(sys.argv[1]).acquire();"
            " print('held', flush=True); time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        second = pipectl(db, "tick")
        elapsed = time.monotonic() - started
        assert second.returncode == 75
        assert f"another tick is running (pid {holder.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert elapsed < 3  # process start included; the lock itself never waits
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the next tick runs.
    assert pipectl(db, "tick", "--now", T0).returncode == 0


def test_four_ticks_at_once_send_each_lead_exactly_one_message(db, cli, tmp_path):
    server, recorder = start_smtp(delay=0.05)
    try:
        setup(
            cli,
            tmp_path,
            ONE_EMAIL,
            {("acme", "drip"): 40},
            acme_extra=smtp_channel(server.port),
        )
        procs = [spawn(db, "tick", "--now", T0, "--workers", "4") for _ in range(4)]
        codes = [p.wait(timeout=60) for p in procs]
        assert set(codes) <= {0, 75} and 0 in codes
        assert all("Traceback" not in p.stderr.read() for p in procs)
        per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
        assert len(per_lead) == 40 and set(per_lead.values()) == {1}
        assert statuses(db) == {"done": 80}
    finally:
        server.stop()


def test_kill_9_mid_tick_loses_nothing_and_repeats_only_sends_in_flight(db, cli, tmp_path):
    server, recorder = start_smtp(delay=0.3)
    try:
        setup(
            cli,
            tmp_path,
            ONE_EMAIL,
            {("acme", "drip"): 20},
            acme_extra=smtp_channel(server.port),
        )
        victim = spawn(db, "tick", "--now", T0, "--workers", "4")
        wait_for(lambda: len(recorder.received) >= 6)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        unfinished = rows(
            db,
            "SELECT count(*) AS n FROM lead_stage_actions WHERE status IN ('pending', 'running')",
        )[0]["n"]
        assert unfinished > 0  # the dead tick left work behind (claims or due rows)

        recorder.delay = 0
        for minute in range(3):
            later = pipectl(db, "tick", "--now", f"2027-03-01T14:0{minute + 1}:00Z")
            assert later.returncode == 0, later.stderr
        time.sleep(0.5)  # let the server finish the killed tick's last DATA commands

        assert statuses(db) == {"done": 40}
        per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
        assert len(per_lead) == 20
        repeats = [lead for lead, n in per_lead.items() if n > 1]
        assert len(repeats) <= 4  # only the sends in flight at the kill (4 workers)
        for lead in repeats:
            ids = {r.message["Message-ID"] for r in recorder.to(lead)}
            assert len(ids) == 1  # the same Message-ID both times
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    finally:
        server.stop()


def test_sigterm_lets_sends_in_flight_finish_and_be_recorded(db, cli, tmp_path):
    server, recorder = start_smtp(delay=0.3)
    try:
        setup(
            cli,
            tmp_path,
            ONE_EMAIL,
            {("acme", "drip"): 20},
            acme_extra=smtp_channel(server.port),
        )
        ticking = spawn(db, "tick", "--now", T0, "--workers", "4")
        wait_for(lambda: len(recorder.received) >= 2)
        ticking.send_signal(signal.SIGTERM)
        assert ticking.wait(timeout=20) == 0
        left = rows(db, "SELECT status, count(*) AS n FROM lead_stage_actions GROUP BY status")
        assert "running" not in {r["status"] for r in left}
        emails_done = rows(
            db,
            "SELECT count(*) AS n FROM lead_stage_actions WHERE type = 'email' AND status = 'done'",
        )[0]["n"]
        assert emails_done == len(recorder.received) < 20  # every send recorded; it stopped early
        # The sends it had claimed but not started are due again, never having been tried.
        unsent = rows(
            db,
            "SELECT attempts FROM lead_stage_actions WHERE type = 'email' AND status = 'pending'",
        )
        assert len(unsent) == 20 - emails_done and {r["attempts"] for r in unsent} == {0}
        assert pipectl(db, "tick", "--now", "2027-03-01T14:01:00Z").returncode == 0
        assert statuses(db) == {"done": 40}
    finally:
        server.stop()


def test_run_ticks_in_a_loop_and_stops_cleanly_on_sigterm(db, cli, tmp_path):
    setup(cli, tmp_path, ONE_EMAIL.replace("smtp", "outbox"), {("acme", "drip"): 3})
    service = spawn(db, "run", "--interval", "1")
    try:
        wait_for(lambda: rows(db, "SELECT count(*) AS n FROM ticks")[0]["n"] >= 2)
    finally:
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=10)
    assert code == 0
    assert "Traceback" not in service.stderr.read()
    assert statuses(db) == {"done": 6}
    assert (
        rows(db, "SELECT count(*) AS n FROM lead_stage_actions WHERE status = 'running'")[0]["n"]
        == 0
    )
