"""A pipeline with history, for timing `pipectl report`: N leads that were enrolled over 30
days, emailed, followed up, and replied, bounced, opted out, won or lost.

The configuration goes through `pipectl apply`; the run-state rows (leads, enrollments,
lead_stages, lead_stage_actions, deliveries, replies) are written in bulk with SQL, in the
shapes the tick and the inbound sync write them, because a million sends through the tick
would take the benchmark's whole budget.

Usage: python bench/report_workload.py DB --leads N      (build)
       python bench/report_workload.py DB --time RUNS   (time the report, in-process)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipectl.store.migrations import REPORT_BACKFILL, run_script  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2027, 3, 1, 14, 0, tzinfo=UTC)
DAYS = 30  # leads are enrolled evenly over this many days from T0
CHUNK = 50_000  # leads built in memory before they are written
YAML = """\
version: 1
accounts:
  - {key: big, name: Big Campaign Co, timezone: America/New_York, country: US}
pipelines:
  - key: outreach
    account: big
    name: Outreach
    on_reply: responded
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait_for_reply: {timeout: 3d, on_timeout: follow-up}
      - key: follow-up
        actions:
          - email: {subject: "Following up", body: "Any thoughts?"}
          - wait_for_reply: 3d
          - move: lost
      - key: responded
        actions:
          - email: {subject: "Next steps", body: "Great"}
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
"""


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Rows:
    """The rows being built, with the next id of each table."""

    def __init__(self) -> None:
        self.tables: dict[str, list[tuple]] = {
            "leads": [],
            "enrollments": [],
            "lead_stages": [],
            "lead_stage_actions": [],
            "deliveries": [],
            "replies": [],
        }
        self.next_id = dict.fromkeys(self.tables, 1)
        self.first_id = dict.fromkeys(self.tables, 1)  # of the rows not yet written
        self.written = dict.fromkeys(self.tables, 0)

    def add(self, table: str, *values: object) -> int:
        row_id = self.next_id[table]
        self.next_id[table] += 1
        self.tables[table].append((row_id, *values))
        return row_id

    def change(self, table: str, row_id: int, **values: object) -> None:
        """Set columns of a row not yet written (by position in COLUMNS)."""
        names = [c.strip() for c in COLUMNS[table].split(",")]
        index = row_id - self.first_id[table]
        row = list(self.tables[table][index])
        for name, value in values.items():
            row[names.index(name)] = value
        self.tables[table][index] = tuple(row)

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write the rows built so far (a chunk of leads at a time keeps memory flat)."""
        for table, values in self.tables.items():
            columns = COLUMNS[table]
            marks = ", ".join("?" * len(columns.split(",")))
            conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
            self.written[table] += len(values)
            self.first_id[table] = self.next_id[table]
            values.clear()


COLUMNS = {
    "leads": "id, account_id, email, first_name, fields, status, do_not_contact,"
    " created_at, updated_at",
    "enrollments": "id, lead_id, pipeline_id, account_id, status, queued_at, started_at,"
    " finished_at",
    "lead_stages": "id, lead_id, enrollment_id, pipeline_stage_id, entered_at, exited_at",
    "lead_stage_actions": "id, lead_stage_id, lead_id, account_id, enrollment_id,"
    " sequence_number, type, channel, params, status, perform_at, attempts, last_error,"
    " performed_at",
    "deliveries": "id, account_id, lead_id, lead_stage_action_id, channel, recipient,"
    " message_id, sent_at, status",
    "replies": "id, account_id, lead_id, channel, sender, kind, body, received_at, source,"
    " delivery_id, opt_out, created_at",
}


class Story:
    """One lead's rows: its enrollment, stages, actions, sends and replies."""

    def __init__(self, r: Rows, account: int, pipeline: int, i: int, t: datetime):
        self.r, self.account, self.i, self.t = r, account, i, t
        self.address = f"lead{i}@big.example"
        self.lead = r.add(
            "leads", account, self.address, f"Lead{i}", "{}", None, 0, stamp(t), stamp(t)
        )
        self.enrollment = r.add(
            "enrollments", self.lead, pipeline, account, None, stamp(t), stamp(t), None
        )

    def enter(self, stage: int, at: datetime) -> int:
        return self.r.add("lead_stages", self.lead, self.enrollment, stage, stamp(at), None)

    def leave(self, lead_stage: int, at: datetime) -> None:
        self.r.change("lead_stages", lead_stage, exited_at=stamp(at))

    def move(self, lead_stage: int, stage: int, at: datetime) -> int:
        self.leave(lead_stage, at)
        return self.enter(stage, at)

    def send(self, lead_stage: int, seq: int, at: datetime, status: str = "delivered") -> int:
        failed = status == "bounced"
        action = self.r.add(
            "lead_stage_actions", lead_stage, self.lead, self.account, self.enrollment, seq,
            "email", "email", EMAIL, "failed" if failed else "done", stamp(at), 1,
            "bounced: 5.1.1 user unknown" if failed else None, stamp(at),
        )  # fmt: skip
        return self.r.add(
            "deliveries", self.account, self.lead, action, "email", self.address,
            f"<{self.i}.{seq}@x>", stamp(at), status,
        )  # fmt: skip

    def wait(self, lead_stage: int, seq: int, at: datetime, status: str) -> None:
        self.r.add(
            "lead_stage_actions", lead_stage, self.lead, self.account, self.enrollment, seq,
            "wait_for_reply", "internal", "{}", status, stamp(at), 0, None,
            stamp(at) if status == "done" else None,
        )  # fmt: skip

    def reply(self, kind: str, at: datetime, delivery: int) -> None:
        self.r.add(
            "replies", self.account, self.lead, "email", self.address, kind, "text", stamp(at),
            "imap", delivery, int(kind == "opt_out"), stamp(at),
        )  # fmt: skip

    def finish(self, status: str, at: datetime) -> None:
        self.r.change("enrollments", self.enrollment, status=status, finished_at=stamp(at))


EMAIL = json.dumps({"subject": "Hi", "body": "Hello"})


def history(conn: sqlite3.Connection, leads: int) -> Rows:
    """Every lead's story, decided by its number: of each hundred, 3 bounce, 1 opts out, 10
    reply (4 of them won), 2 send an auto-reply; the rest get a follow-up, then are lost
    (every seventh still waits)."""
    (account,) = conn.execute("SELECT id FROM accounts WHERE key = 'big'").fetchone()
    (pipeline,) = conn.execute("SELECT id FROM pipelines WHERE key = 'outreach'").fetchone()
    stage = {
        key: sid
        for key, sid in conn.execute(
            "SELECT key, id FROM pipeline_stages WHERE pipeline_id = ?", (pipeline,)
        )
    }
    r = Rows()
    step = timedelta(days=DAYS) / max(leads, 1)
    for i in range(leads):
        if i and i % CHUNK == 0:
            r.flush(conn)
        t = T0 + step * i
        s = Story(r, account, pipeline, i, t)
        outcome = i % 100
        intro = s.enter(stage["intro"], t)
        if outcome < 3:
            s.reply("bounce", t + timedelta(minutes=5), s.send(intro, 1, t, "bounced"))
            s.wait(intro, 2, t, "skipped")
            s.leave(intro, t + timedelta(minutes=5))  # on_failure: stop
            s.finish("failed", t + timedelta(minutes=5))
            continue
        delivery = s.send(intro, 1, t)
        if outcome == 3:
            s.reply("opt_out", t + timedelta(hours=2), delivery)
            s.wait(intro, 2, t, "skipped")
            s.leave(intro, t + timedelta(hours=2))
            s.finish("stopped", t + timedelta(hours=2))
        elif outcome < 14:
            at = t + timedelta(days=1)
            s.reply("reply", at, delivery)
            s.wait(intro, 2, at, "done")
            responded = s.move(intro, stage["responded"], at)
            s.send(responded, 1, at + timedelta(minutes=1))
            if outcome < 8:
                s.move(responded, stage["won"], at + timedelta(days=2))
                s.finish("won", at + timedelta(days=2))
            else:
                s.finish("idle", at)
        else:
            if outcome < 16:
                s.reply("auto_reply", t + timedelta(minutes=1), delivery)
            at = t + timedelta(days=3)
            s.wait(intro, 2, at, "done")
            follow = s.move(intro, stage["follow-up"], at)
            s.send(follow, 1, at)
            if i % 7 == 0:
                s.finish("active", at)
                s.wait(follow, 2, at + timedelta(days=3), "awaiting_reply")
            else:
                s.wait(follow, 2, at + timedelta(days=3), "done")
                s.move(follow, stage["lost"], at + timedelta(days=3))
                s.finish("lost", at + timedelta(days=3))
    r.flush(conn)
    return r


def build(db: Path, leads: int) -> dict[str, float]:
    """Apply the YAML through pipectl, then write the history; returns rows per table."""
    for p in db.parent.glob(f"{db.name}*"):
        p.unlink()
    yaml = db.with_suffix(".yaml")
    yaml.write_text(YAML)
    subprocess.run(
        [sys.executable, "-m", "pipectl", "--db", str(db), "apply", str(yaml)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    # As a database written before the report's migration: the rows first, then the
    # migration's backfill of the counters (timed), then its triggers back.
    triggers = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'report_%'"
    ).fetchall()
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'report_%'"
    ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    rows = history(conn, leads)
    conn.execute("UPDATE leads SET status = 'active'")
    started = time.perf_counter()
    run_script(conn, REPORT_BACKFILL)
    backfill_s = time.perf_counter() - started
    for (sql,) in triggers:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return {
        **rows.written,
        "backfill_s": round(backfill_s, 1),
    }


def time_report(db: Path, runs: int) -> dict[str, object]:
    """`pipectl report --pipeline outreach` in-process, `runs` times from a fresh connection
    each (the first is cold), and its figures, to check them against the workload."""
    from pipectl.report.figures import build_report
    from pipectl.store import Store

    seconds, report = [], {}
    for _ in range(runs):
        started = time.perf_counter()
        store = Store(db)
        report = build_report(store, pipeline="outreach", now="2027-05-01T00:00:00Z")
        store.close()
        seconds.append(time.perf_counter() - started)
    (p,) = report["pipelines"]
    return {
        "runs_ms": [round(s * 1000, 1) for s in seconds],
        "best_ms": round(min(seconds) * 1000, 1),
        "median_ms": round(sorted(seconds)[len(seconds) // 2] * 1000, 1),
        "enrolled": p["enrolled"],
        "emailed": p["leads"]["emailed"],
        "sent": p["sends"]["email"]["sent"],
        "replies": p["replies"]["reply"],
        "won": p["won"],
        "lost": p["lost"],
        "activity_days": len(p["activity"]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--time", type=int, metavar="RUNS", help="time the report, no build")
    opts = parser.parse_args()
    if opts.time:
        print(json.dumps(time_report(opts.db, opts.time)))
    else:
        print(json.dumps(build(opts.db, opts.leads)))
