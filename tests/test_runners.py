"""Many runners against one PostgreSQL database: every send once, limits held across runners,
a dead runner's sends recovered after its lease, and `db copy` of a database mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from .backends import new_schema
from .channel_servers import SmtpRecorder, SmtpServer, free_port
from .conftest import dump, rows
from .scenario import ONE_EMAIL, T0, setup, smtp_channel, spawn, statuses, wait_for

pytestmark = pytest.mark.slow


class Crowded(SmtpRecorder):
    """Takes `delay` seconds per message and notes how many of each account's messages it
    held at once (the recipient's domain names the account)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    async def handle_DATA(self, server, session, envelope):
        account = envelope.rcpt_tos[0].rsplit("@", 1)[1].split(".")[0]
        with self.lock:
            self.now[account] += 1
            self.most[account] = max(self.most[account], self.now[account])
        try:
            await asyncio.sleep(self.delay)
            return await super().handle_DATA(server, session, envelope)
        finally:
            with self.lock:
                self.now[account] -= 1


def smtp(delay: float) -> tuple[SmtpServer, Crowded]:
    recorder = Crowded(delay)
    server = SmtpServer(recorder, free_port())
    server.start()
    return server, recorder


@pytest.fixture
def pg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A PostgreSQL schema, a short lease for every runner started here, cwd in tmp_path."""
    monkeypatch.setenv("PIPECTL_LEASE_SECONDS", "3")
    monkeypatch.chdir(tmp_path)
    yield from new_schema()


@pytest.fixture
def pg_cli(pg, tmp_path: Path):
    from typer.testing import CliRunner

    from pipectl.cli import app

    from .conftest import Run

    def run(*args: str) -> Run:
        result = CliRunner().invoke(app, ["--db", pg, *map(str, args)])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stderr))
    return out


def test_four_runners_send_every_message_once_within_limits_held_across_them(pg, pg_cli, tmp_path):
    """4 runners at once, 5,000 sends to a server that takes 50 ms each: each lead gets its
    message once, and neither account's concurrency nor beta's rate is exceeded by the
    runners together."""
    server, recorder = smtp(delay=0.05)
    beta = ONE_EMAIL.replace("key: drip", "key: drip-b").replace("account: acme", "account: beta")
    try:
        setup(
            pg_cli,
            tmp_path,
            ONE_EMAIL + beta,
            {("acme", "drip"): 4900, ("beta", "drip-b"): 500},
            acme_extra="    limits: {concurrency: 24}\n" + smtp_channel(server.port),
            beta_extra="    limits: {concurrency: 6, rates: {email: 100/hour}}\n"
            + smtp_channel(server.port),
        )
        started = time.monotonic()
        runners = [
            spawn(pg, "tick", "--now", T0, "--workers", "16", "--max-seconds", "120", "--json")
            for _ in range(4)
        ]
        ended = finish(runners)
        seconds = time.monotonic() - started
    finally:
        server.stop()
    assert [code for code, _ in ended] == [0, 0, 0, 0], ended
    per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
    acme = [a for a in per_lead if a.endswith("@acme.example")]
    assert len(acme) == 4900 and len(per_lead) == 5000, len(per_lead)
    assert set(per_lead.values()) == {1}  # no message twice
    assert recorder.most["acme"] <= 24 and recorder.most["beta"] <= 6, recorder.most
    assert recorder.most["acme"] >= 16  # the runners together used the room
    assert rows(pg, "SELECT count(*) AS n FROM deliveries")[0]["n"] == 5000
    assert rows(pg, "SELECT max(attempts) AS n FROM lead_stage_actions")[0]["n"] == 1
    # 100 emails an hour, all runners together: 100 leads emailed and won, 400 due later.
    assert statuses(pg, "beta") == {"done": 200, "pending": 400, "waiting": 400}
    workers = rows(pg, "SELECT id, stopped_at FROM runners")
    assert len(workers) == 4 and all(w["stopped_at"] for w in workers)
    print(f"4 runners: 5,000 sends in {seconds:.1f} s")


def test_a_runner_killed_mid_tick_has_its_sends_recovered_after_its_lease(pg, pg_cli, tmp_path):
    """kill -9 of one runner while its sends are on the wire: another runner goes on with its
    own; a runner started within the lease leaves the dead one's sends alone; after the lease
    they are sent, the only repeats being the dead runner's in-flight sends, with the same
    Message-ID."""
    server, recorder = smtp(delay=0.3)
    try:
        setup(
            pg_cli,
            tmp_path,
            ONE_EMAIL,
            {("acme", "drip"): 120},
            acme_extra="    limits: {concurrency: 16}\n" + smtp_channel(server.port),
        )
        args = ("tick", "--now", T0, "--workers", "8", "--max-seconds", "60")
        first, second = spawn(pg, *args), spawn(pg, *args)
        on_wire = (
            "SELECT r.id, r.pid FROM runners r JOIN lead_stage_actions a"
            " ON substr(a.claim_token, 1, 12) = r.id WHERE a.status = 'running'"
            " AND a.claimed_at IS NOT NULL LIMIT 1"
        )
        wait_for(lambda: rows(pg, on_wire) and len(recorder.received) >= 10, timeout=60)
        victim_id, pid = rows(pg, on_wire)[0].values()
        victim, other = (first, second) if first.pid == pid else (second, first)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # As if it ran on another host: no pid to check, only its lease says it is gone.
        rows(
            pg,
            "UPDATE runners SET host = 'elsewhere', machine = 'elsewhere'"
            f" WHERE id = '{victim_id}'",
        )
        orphans = rows(
            pg,
            "SELECT id FROM lead_stage_actions WHERE status = 'running'"
            f" AND claim_token LIKE '{victim_id}%'",
        )
        assert orphans, "the victim died with sends in flight"
        soon = spawn(pg, *args)  # within the lease: the victim's claims are still its own
        assert finish([soon, other]) == [(0, ""), (0, "")]
        left = rows(
            pg,
            "SELECT count(*) AS n FROM lead_stage_actions WHERE status = 'running'"
            f" AND claim_token LIKE '{victim_id}%'",
        )[0]["n"]
        assert left == len(orphans)
        time.sleep(3.5)  # the lease runs out
        status = json.loads(pg_cli("status", "--json").stdout)
        quiet = [r["id"] for r in status["runners"] if r["state"] == "quiet"]
        assert quiet == [victim_id]
        assert any(f"runner {victim_id} on elsewhere" in w for w in status["warnings"])
        late = spawn(pg, *args)
        assert finish([late]) == [(0, "")]
        status = json.loads(pg_cli("status", "--json").stdout)
        assert not [r for r in status["runners"] if r["state"] == "quiet"]  # taken over
        time.sleep(0.5)
    finally:
        server.stop()
    assert statuses(pg) == {"done": 240}  # each lead emailed, and won
    per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
    assert len(per_lead) == 120
    repeated = [lead for lead, n in per_lead.items() if n > 1]
    assert len(repeated) <= len(orphans)
    for lead in repeated:
        ids = {m.message["Message-ID"] for m in recorder.received if m.rcpt_tos[0] == lead}
        assert len(ids) == 1  # the same Message-ID both times


ROUNDS = """
import sys
from datetime import datetime, UTC, timedelta
from pipectl.scheduler.run import tick

db = sys.argv[1]
for i in range(100):
    tick(db, now=datetime(2027, 3, 1, 14, tzinfo=UTC), workers=2, max_seconds=0.05,
         sync_seconds=0)
"""

CHAIN = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "One", body: "1"}
          - email: {subject: "Two", body: "2"}
          - email: {subject: "Three", body: "3"}
          - move: won
      - {key: won, outcome: won}
"""


def test_eight_runners_a_hundred_rounds_each_claim_nothing_twice(pg, pg_cli, tmp_path):
    setup(pg_cli, tmp_path, CHAIN, {("acme", "drip"): 300})
    runners = [
        subprocess.Popen(
            [sys.executable, "-c", ROUNDS, pg],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        for _ in range(8)
    ]
    for p in runners:
        _, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
    pg_cli("tick", "--now", T0)  # whatever the rounds left due
    assert (
        rows(
            pg,
            "SELECT lead_stage_action_id, count(*) AS n FROM deliveries"
            " GROUP BY lead_stage_action_id HAVING count(*) > 1",
        )
        == []
    )
    assert rows(pg, "SELECT count(*) AS n FROM deliveries")[0]["n"] == 900
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 900
    assert rows(pg, "SELECT max(attempts) AS n FROM lead_stage_actions")[0]["n"] == 1
    assert statuses(pg) == {"done": 1200}
    assert len(rows(pg, "SELECT id FROM runners WHERE pid != ?", os.getpid())) == 8


MID_RUN = """\
  - key: drip
    account: acme
    name: Drip
    on_reply: answered
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait_for_reply: {timeout: 2d, on_timeout: nudge}
      - key: nudge
        actions:
          - wait: 1d
          - sms: "Still there?"
          - move: lost
      - key: answered
        actions:
          - email: {subject: "Next steps", body: "Call?"}
          - move: won
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
"""


def test_db_copy_mid_run_then_ticks_against_postgresql_finish_it(cli, db, tmp_path):
    """A SQLite database with sends done, leads awaiting replies, waits pending and leads
    queued is copied; the same commands then finish the run on PostgreSQL exactly as they
    would have on SQLite."""
    setup(
        cli,
        tmp_path,
        MID_RUN,
        {("acme", "drip"): 30},
        acme_extra="    limits: {active_leads: 20}",
    )
    cli("tick", "--now", T0)
    cli(
        "reply",
        "--account",
        "acme",
        "--email",
        "lead3@acme.example",
        "--at",
        "2027-03-01T15:00:00Z",
    )
    assert rows(db, "SELECT count(*) AS n FROM enrollments WHERE status = 'queued'")[0]["n"] == 10
    twin = tmp_path / "twin.db"  # the same run, left on SQLite
    with sqlite3.connect(db) as source, sqlite3.connect(twin) as copy:
        source.backup(copy)
    for url in new_schema():
        copied = cli("db", "copy", "--to", url, "--json")
        assert copied.exit_code == 0, copied.output
        counts = json.loads(copied.stdout)
        assert (
            counts["leads"] == 30
            and counts["lead_stage_actions"]
            == rows(db, "SELECT count(*) AS n FROM lead_stage_actions")[0]["n"]
        )
        tables = ("leads", "enrollments", "lead_stages", "lead_stage_actions", "deliveries")
        for table in tables:
            assert rows(url, f"SELECT * FROM {table} ORDER BY id") == rows(
                db, f"SELECT * FROM {table} ORDER BY id"
            )
        again = cli("db", "copy", "--to", url)
        assert again.exit_code == 1 and "is not empty" in again.stderr
        before = dump(url)
        for when in (
            "2027-03-01T15:01:00Z",
            "2027-03-03T14:01:00Z",
            "2027-03-04T14:02:00Z",
            "2027-03-06T14:03:00Z",
            "2027-03-07T14:04:00Z",
        ):
            for target in (url, str(twin)):
                result = cli_at(target, "tick", "--now", when)
                assert result.returncode == 0, result.stderr
        assert dump(url) != before
        query = "SELECT lead_id, status FROM enrollments ORDER BY id"
        assert rows(url, query) == rows(twin, query)
        assert {r["status"] for r in rows(url, query)} == {"won", "failed"}  # no phone to text
        query = "SELECT lead_stage_action_id, recipient, message_id FROM deliveries ORDER BY 1"
        assert rows(url, query) == rows(twin, query)  # ids kept: the same Message-IDs
        reports = [json.loads(cli_at(t, "report", "--json").stdout) for t in (url, str(twin))]
        for report in reports:
            report.pop("generated_at")
        import difflib

        a, b = (json.dumps(r, indent=1, sort_keys=True).splitlines() for r in reports)
        assert reports[0] == reports[1], "\n".join(difflib.unified_diff(a, b, lineterm=""))


def cli_at(target: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipectl", "--db", target, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_db_copy_leaves_statistics_so_the_first_ticks_plan_for_the_rows_copied(cli, db, tmp_path):
    """The copied tables are analyzed: the planner knows how many rows each holds. Without
    statistics (a server without autovacuum, or before it comes round) it planned every
    tick's recovery for thousands of `running` rows, with parallel workers, at 1M leads."""
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 40})
    cli("tick", "--now", T0)
    actions = rows(db, "SELECT count(*) AS n FROM lead_stage_actions")[0]["n"]
    assert actions == 80
    for url in new_schema():
        assert cli("db", "copy", "--to", url).exit_code == 0
        planned = rows(
            url,
            "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'"
            " AND relnamespace = current_schema()::regnamespace"
            " AND relname IN ('leads', 'enrollments', 'lead_stage_actions')",
        )
        assert {r["relname"]: r["reltuples"] for r in planned} == {
            "leads": 40,
            "enrollments": 40,
            "lead_stage_actions": actions,
        }


CATALOG = (
    "SELECT 'key' AS kind, conname AS name, pg_get_constraintdef(oid) AS definition"
    " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace UNION ALL"
    " SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    " ORDER BY 1, 2"
)


def test_db_copy_puts_back_every_key_and_index_a_new_database_has(cli, db, tmp_path):
    """The copy loads the rows before the foreign keys and the query indexes (as pg_restore
    does) and then adds them again: the copied database has the very keys and indexes that
    migrations give a new one, and they hold."""
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 5})
    cli("tick", "--now", T0)
    for copied, made in ((c, m) for c in new_schema() for m in new_schema()):
        assert cli("db", "copy", "--to", copied).exit_code == 0
        assert cli_at(made, "init").returncode == 0
        schemas = [rows(url, "SELECT current_schema() AS s")[0]["s"] for url in (copied, made)]
        catalogs = [
            [{**r, "definition": r["definition"].replace(f"{s}.", "")} for r in rows(url, CATALOG)]
            for url, s in zip((copied, made), schemas, strict=True)
        ]
        kinds = Counter(r["kind"] for r in catalogs[0])
        assert kinds["key"] > 20 and kinds["index"] > 40
        assert catalogs[0] == catalogs[1]
        orphan = rows(
            copied,
            "SELECT count(*) AS n FROM lead_stage_actions a"
            " WHERE NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = a.lead_id)",
        )
        assert orphan == [{"n": 0}]


def test_db_copy_of_a_file_whose_foreign_keys_do_not_hold_copies_nothing(cli, db, tmp_path):
    """A SQLite file edited by hand with its foreign keys off can name a lead that is not
    there: the keys, added back after the rows, refuse it, and the target stays empty."""
    setup(cli, tmp_path, ONE_EMAIL, {("acme", "drip"): 5})
    cli("tick", "--now", T0)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("UPDATE lead_stage_actions SET lead_id = 999999 WHERE id = 2")
    for url in new_schema():
        result = cli_at(str(db), "db", "copy", "--to", url)
        assert result.returncode == 1, result.stdout
        assert "lead_stage_actions" in result.stderr and "foreign key" in result.stderr
        assert "Traceback" not in result.stderr
        assert rows(url, "SELECT count(*) AS n FROM leads") == [{"n": 0}]
        assert rows(url, "SELECT count(*) AS n FROM lead_stage_actions") == [{"n": 0}]


def test_db_copy_refuses_what_is_not_a_sqlite_file_into_postgresql(cli, db, tmp_path):
    cli("init")
    result = cli("db", "copy", "--to", str(tmp_path / "other.db"))
    assert result.exit_code == 1 and "postgresql://" in result.stderr
    for url in new_schema():
        moved = subprocess.run(
            [sys.executable, "-m", "pipectl", "--db", url, "db", "copy", "--to", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert moved.returncode == 1 and "reads a SQLite database" in moved.stderr
        assert "Traceback" not in moved.stderr
