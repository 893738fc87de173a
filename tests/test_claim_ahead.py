"""A tick claims more sends than its workers can start at once: what that must not change.

Each account's concurrency still caps its sends in flight, each send counts as an attempt
only when it starts, a lead who opts out while its claimed send waits in the tick does not
get it, a send whose window closes meanwhile waits for the next opening, and claims a tick
did not start are put back when it stops.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pipectl.store.pg_schema import WRITE_LOCK

from .backends import is_url
from .conftest import rows
from .scenario import (
    ONE_EMAIL,
    T0,
    SlowSmtp,
    pipectl,
    serve,
    setup,
    smtp_channel,
    spawn,
    wait_for,
)

pytestmark = pytest.mark.slow  # real ticks against slow servers, timing-sensitive


class CountingSmtp(SlowSmtp):
    """Also counts the messages being accepted at the same moment."""

    active: int = 0
    most: int = 0

    async def handle_DATA(self, server, session, envelope):
        self.active += 1  # one event loop: no lock needed
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(self.delay)
            return await super(SlowSmtp, self).handle_DATA(server, session, envelope)
        finally:
            self.active -= 1


@contextmanager
def slow_acme(
    cli, tmp_path, pipeline: str, leads: int, concurrency: int, recorder: SlowSmtp
) -> Iterator[SlowSmtp]:
    """Acme's `leads` leads in `pipeline`, its email going to `recorder` (a slow SMTP
    server on 127.0.0.1), at most `concurrency` sends in flight."""
    server = serve(recorder)
    try:
        setup(
            cli,
            tmp_path,
            pipeline,
            {("acme", "drip"): leads},
            acme_extra=f"    limits: {{concurrency: {concurrency}}}\n" + smtp_channel(server.port),
        )
        yield recorder
    finally:
        server.stop()


def slow(delay: float, recorder: SlowSmtp | None = None) -> SlowSmtp:
    recorder = recorder or SlowSmtp()
    recorder.delay = delay
    return recorder


EMAIL_ONLY = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
"""


def test_an_account_never_has_more_sends_in_flight_than_its_concurrency(cli, db, tmp_path):
    with slow_acme(cli, tmp_path, EMAIL_ONLY, 12, 2, slow(0.3, CountingSmtp())) as recorder:
        ticking = spawn(db, "tick", "--now", T0, "--workers", "8")
        wait_for(lambda: len(recorder.received) >= 1, process=ticking)
        late = "2027-03-01T14:05:00Z"  # as if the tick had been stuck for five minutes
        status = pipectl(db, "status", "--json", "--account", "acme", "--now", late)
        assert ticking.wait(timeout=30) == 0
    assert recorder.most == 2  # the limit was reached, never passed, with 8 workers free
    assert len(recorder.received) == 12
    acme = json.loads(status.stdout)["accounts"][0]
    # While it ran: every send claimed at once, but only two of them sending; the others
    # wait in the tick, and past the SLA they are overdue all the same.
    assert acme["limits"]["concurrency"] == {"limit": 2, "used": 2}
    assert acme["actions"]["running"] > 2
    assert acme["actions"]["due_now"] == 0 and acme["actions"]["overdue"] >= 3
    assert acme["actions"]["oldest_due"] == T0


def test_a_claimed_send_is_not_sent_to_a_lead_who_opted_out_before_it_started(cli, db, tmp_path):
    with slow_acme(cli, tmp_path, ONE_EMAIL, 5, 1, slow(0.5)) as recorder:
        ticking = spawn(db, "tick", "--now", T0, "--workers", "2")
        wait_for(lambda: len(recorder.received) >= 1, process=ticking)
        last = rows(
            db,
            "SELECT a.status, a.attempts, a.claimed_at FROM lead_stage_actions a "
            "JOIN leads l ON l.id = a.lead_id WHERE l.email = 'lead4@acme.example' "
            "AND a.type = 'email'",
        )[0]
        assert (last["status"], last["attempts"], last["claimed_at"]) == ("running", 0, None)

        stop = pipectl(
            db, "reply", "--account", "acme", "--email", "lead4@acme.example",
            "--body", "STOP", "--at", "2027-03-01T14:00:01Z",
        )  # fmt: skip
        assert stop.returncode == 0, stop.stderr
        assert ticking.wait(timeout=30) == 0
    per_lead = Counter(r.rcpt_tos[0] for r in recorder.received)
    assert per_lead == {f"lead{i}@acme.example": 1 for i in range(4)}
    lead = rows(
        db, "SELECT id, status, do_not_contact FROM leads WHERE email = ?", "lead4@acme.example"
    )[0]
    assert (lead["status"], lead["do_not_contact"]) == ("stopped", 1)
    email = rows(
        db,
        "SELECT status, attempts FROM lead_stage_actions WHERE lead_id = ? AND type = 'email'",
        lead["id"],
    )[0]
    assert (email["status"], email["attempts"]) == ("skipped", 0)


WINDOWED = """\
  - key: drip
    account: acme
    name: Drip
    send_window: {hours: "09:00-17:00"}
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - move: won
      - {key: won, outcome: won}
"""


def test_a_claimed_send_whose_window_closed_while_it_waited_goes_when_it_opens(cli, db, tmp_path):
    with slow_acme(cli, tmp_path, WINDOWED, 3, 1, slow(2.0)) as recorder:
        # All three claimed at 16:59:57 (UTC); one at a time, 2 s each: the third would
        # start at 17:00:01, when the window has closed.
        ticking = spawn(db, "tick", "--now", "2027-03-01T16:59:57Z", "--workers", "4")
        assert ticking.wait(timeout=30) == 0
    assert sorted(r.rcpt_tos[0] for r in recorder.received) == [
        "lead0@acme.example",
        "lead1@acme.example",
    ]
    third = rows(
        db,
        "SELECT a.status, a.perform_at, a.attempts FROM lead_stage_actions a "
        "JOIN leads l ON l.id = a.lead_id WHERE l.email = 'lead2@acme.example' "
        "AND a.type = 'email'",
    )[0]
    assert third == {"status": "pending", "perform_at": "2027-03-02T09:00:00Z", "attempts": 0}


def writer(db):
    """A connection in a write transaction: SQLite's file lock, or PostgreSQL's write lock."""
    if is_url(db):
        import psycopg

        conn = psycopg.connect(db, autocommit=True)
        conn.execute("BEGIN")
        conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        return conn
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_tick_stopped_while_the_database_is_busy_still_puts_its_claims_back(
    cli, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("PIPECTL_BUSY_TIMEOUT_MS", "300")
    with slow_acme(cli, tmp_path, EMAIL_ONLY, 5, 1, slow(1.0)) as recorder:
        ticking = spawn(db, "tick", "--now", T0, "--workers", "2")
        wait_for(lambda: recorder.connections >= 1, process=ticking)
        other = writer(db)  # another writer holds the database...
        ticking.send_signal(signal.SIGTERM)  # ...while the tick is told to stop
        time.sleep(1.5)  # the send in flight comes back; writing it finds the database busy
        other.execute("ROLLBACK")
        other.close()
        assert ticking.wait(timeout=30) == 0, ticking.stderr.read()
    assert len(recorder.received) == 1
    emails = rows(db, "SELECT status, attempts FROM lead_stage_actions ORDER BY id")
    assert [(e["status"], e["attempts"]) for e in emails] == [("done", 1)] + [("pending", 0)] * 4
