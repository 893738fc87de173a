"""The schema, as a list of migrations applied in order when the store opens."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """The seed's six tables, accounts, the enrollment queue, deliveries, replies and ticks."""
    run_script(
        conn,
        """
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            timezone TEXT NOT NULL DEFAULT 'UTC',
            country TEXT,
            active_leads INTEGER,               -- NULL: no limit
            concurrency INTEGER NOT NULL DEFAULT 8,
            rates TEXT NOT NULL DEFAULT '{}',   -- {"email": [count, seconds], ...}
            channels TEXT NOT NULL DEFAULT '{}',-- ${VAR} placeholders, never values
            send_window TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE pipelines (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            on_reply TEXT,
            on_failure TEXT NOT NULL DEFAULT 'stop',
            removed_at TEXT,                    -- gone from the YAML but still holds leads
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE pipeline_stages (
            id INTEGER PRIMARY KEY,
            pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
            key TEXT NOT NULL,
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            outcome TEXT CHECK (outcome IN ('won', 'lost')),
            on_failure TEXT,
            removed_at TEXT,                    -- gone from the YAML but still holds leads
            UNIQUE (pipeline_id, key)
        );
        CREATE TABLE pipeline_stage_actions (
            id INTEGER PRIMARY KEY,
            pipeline_stage_id INTEGER NOT NULL REFERENCES pipeline_stages(id) ON DELETE CASCADE,
            sequence_number INTEGER NOT NULL,
            type TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            UNIQUE (pipeline_stage_id, sequence_number)
        );
        CREATE TABLE leads (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            email TEXT,
            phone TEXT,
            first_name TEXT,
            last_name TEXT,
            fields TEXT NOT NULL DEFAULT '{}',
            status TEXT,
            do_not_contact INTEGER NOT NULL DEFAULT 0,
            timezone TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX leads_account_email ON leads (account_id, email)
            WHERE email IS NOT NULL;
        CREATE INDEX leads_account_phone ON leads (account_id, phone) WHERE phone IS NOT NULL;
        CREATE INDEX leads_account_status ON leads (account_id, status);
        CREATE INDEX leads_do_not_contact ON leads (account_id) WHERE do_not_contact = 1;

        -- One row per lead per pipeline; 'queued' rows are the enrollment queue (FIFO by id).
        CREATE TABLE enrollments (
            id INTEGER PRIMARY KEY,
            lead_id INTEGER NOT NULL REFERENCES leads(id),
            pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            entry_stage_id INTEGER REFERENCES pipeline_stages(id),
            status TEXT NOT NULL,
            queued_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            UNIQUE (lead_id, pipeline_id)
        );
        CREATE INDEX enrollments_queue ON enrollments (account_id, status, id);
        CREATE INDEX enrollments_queued ON enrollments (account_id, id) WHERE status = 'queued';

        CREATE TABLE lead_stages (
            id INTEGER PRIMARY KEY,
            lead_id INTEGER NOT NULL REFERENCES leads(id),
            enrollment_id INTEGER NOT NULL REFERENCES enrollments(id),
            pipeline_stage_id INTEGER NOT NULL REFERENCES pipeline_stages(id),
            entered_at TEXT NOT NULL,
            exited_at TEXT
        );
        CREATE INDEX lead_stages_lead ON lead_stages (lead_id);
        CREATE INDEX lead_stages_enrollment ON lead_stages (enrollment_id);
        CREATE INDEX lead_stages_stage ON lead_stages (pipeline_stage_id) WHERE exited_at IS NULL;

        CREATE TABLE lead_stage_actions (
            id INTEGER PRIMARY KEY,
            lead_stage_id INTEGER NOT NULL REFERENCES lead_stages(id),
            lead_id INTEGER NOT NULL REFERENCES leads(id),
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            enrollment_id INTEGER NOT NULL REFERENCES enrollments(id),
            sequence_number INTEGER NOT NULL,
            type TEXT NOT NULL,
            channel TEXT NOT NULL,              -- 'email', 'sms' or 'internal'
            params TEXT NOT NULL DEFAULT '{}',  -- snapshot taken when the lead entered the stage
            status TEXT NOT NULL,
            perform_at TEXT,
            due_at TEXT,                        -- when it first became due: lateness is from here
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            performed_at TEXT,
            claim_token TEXT,
            claimed_at TEXT,
            UNIQUE (lead_stage_id, sequence_number)
        );
        -- Finding due work reads only due rows: per account and channel, and overall.
        CREATE INDEX lsa_due ON lead_stage_actions (account_id, channel, perform_at)
            WHERE status = 'pending';
        CREATE INDEX lsa_pending ON lead_stage_actions (perform_at) WHERE status = 'pending';
        CREATE INDEX lsa_awaiting ON lead_stage_actions (perform_at)
            WHERE status = 'awaiting_reply';
        CREATE INDEX lsa_awaiting_account ON lead_stage_actions (account_id)
            WHERE status = 'awaiting_reply';
        CREATE INDEX lsa_running ON lead_stage_actions (claim_token) WHERE status = 'running';
        CREATE INDEX lsa_lead ON lead_stage_actions (lead_id);
        CREATE INDEX lsa_failed ON lead_stage_actions (account_id) WHERE status = 'failed';
        CREATE INDEX lsa_performed ON lead_stage_actions (performed_at);

        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            lead_id INTEGER NOT NULL REFERENCES leads(id),
            lead_stage_action_id INTEGER NOT NULL REFERENCES lead_stage_actions(id),
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL,
            message_id TEXT,
            provider_id TEXT,
            sent_at TEXT NOT NULL
        );
        CREATE INDEX deliveries_window ON deliveries (account_id, channel, sent_at);
        CREATE INDEX deliveries_action ON deliveries (lead_stage_action_id);

        CREATE TABLE replies (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            lead_id INTEGER NOT NULL REFERENCES leads(id),
            channel TEXT NOT NULL,
            body TEXT,
            received_at TEXT NOT NULL,
            opt_out INTEGER NOT NULL DEFAULT 0,
            effect TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX replies_lead ON replies (lead_id);

        -- This database's own random id: Message-IDs carry it, so two databases (staging and
        -- production) sending from one domain never produce the same Message-ID.
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta (key, value) VALUES ('instance', lower(hex(randomblob(6))));

        CREATE TABLE ticks (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            now TEXT NOT NULL,
            seconds REAL,
            claimed INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0,
            retried INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            held_back INTEGER NOT NULL DEFAULT 0,
            admitted INTEGER NOT NULL DEFAULT 0,
            recovered INTEGER NOT NULL DEFAULT 0,
            pid INTEGER
        );
        """,
    )


@migration
def m004_import(conn: sqlite3.Connection) -> None:
    """Opt-outs per channel beside do_not_contact (no channel at all): an email opt-out from a
    CRM export stops email, a Do Not Call stops texts, and the other channel may go on. The
    queue in the order leads were queued (a re-enrolled lead keeps its first enrollment id)."""
    run_script(
        conn,
        """
        ALTER TABLE leads ADD COLUMN email_opt_out INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE leads ADD COLUMN sms_opt_out INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX enrollments_fifo ON enrollments (account_id, queued_at, id)
            WHERE status = 'queued';
        """,
    )


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: `executescript` would commit the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this database has not seen, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, fn in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("ROLLBACK")
                continue
            fn(conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
