"""The schema, as a list of migrations applied in order when the store opens."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from ..statuses import ActionStatus, EnrollmentStatus, HookEvent, HookEventStatus, sql_list

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
def m002_inbound(conn: sqlite3.Connection) -> None:
    """Inbound sync: reply kinds and sources, unmatched replies, delivery status, suppressions,
    and where each inbox and SMS source left off."""
    run_script(
        conn,
        """
        -- replies.lead_id becomes optional (unmatched messages are kept): rebuild the table.
        CREATE TABLE replies_new (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            lead_id INTEGER REFERENCES leads(id),   -- NULL: matched no lead
            channel TEXT NOT NULL,
            sender TEXT,                            -- the address or number it came from
            kind TEXT NOT NULL DEFAULT 'reply'
                CHECK (kind IN ('reply', 'auto_reply', 'opt_out', 'bounce', 'soft_bounce')),
            subject TEXT,
            body TEXT,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'manual'
                CHECK (source IN ('manual', 'csv', 'imap', 'twilio')),
            external_id TEXT,                       -- Message-ID, folder/UIDVALIDITY/UID, or sid
            delivery_id INTEGER REFERENCES deliveries(id),  -- the send it answers, when known
            opt_out INTEGER NOT NULL DEFAULT 0,
            effect TEXT,
            created_at TEXT NOT NULL
        );
        INSERT INTO replies_new (id, account_id, lead_id, channel, sender, kind, body,
                                 received_at, source, opt_out, effect, created_at)
            SELECT r.id, r.account_id, r.lead_id, r.channel,
                   CASE r.channel WHEN 'sms' THEN l.phone ELSE l.email END,
                   CASE r.opt_out WHEN 1 THEN 'opt_out' ELSE 'reply' END,
                   r.body, r.received_at, 'manual', r.opt_out, r.effect, r.created_at
            FROM replies r LEFT JOIN leads l ON l.id = r.lead_id;
        DROP TABLE replies;
        ALTER TABLE replies_new RENAME TO replies;
        CREATE INDEX replies_lead ON replies (lead_id);
        CREATE INDEX replies_account_time ON replies (account_id, received_at);
        CREATE INDEX replies_unmatched ON replies (account_id) WHERE lead_id IS NULL;
        -- Every inbound message is recorded at most once per account and source.
        CREATE UNIQUE INDEX replies_external ON replies (account_id, source, external_id)
            WHERE external_id IS NOT NULL;

        ALTER TABLE deliveries ADD COLUMN status TEXT NOT NULL DEFAULT 'sent'
            CHECK (status IN ('sent', 'delivered', 'bounced', 'undelivered'));
        ALTER TABLE deliveries ADD COLUMN status_detail TEXT;   -- DSN status or provider error
        ALTER TABLE deliveries ADD COLUMN status_at TEXT;
        -- A reply names the send it answers by its Message-ID; an SMS status by provider id.
        CREATE INDEX deliveries_message_id ON deliveries (account_id, message_id)
            WHERE message_id IS NOT NULL;
        CREATE INDEX deliveries_provider_id ON deliveries (account_id, provider_id)
            WHERE provider_id IS NOT NULL;

        -- Addresses never to send to again, per account and channel.
        CREATE TABLE suppressions (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
            address TEXT NOT NULL,                  -- lower-case email or E.164
            reason TEXT NOT NULL
                CHECK (reason IN ('bounce', 'opt_out', 'provider', 'manual', 'complaint')),
            detail TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (account_id, channel, address)
        );

        -- One row per inbound source (an IMAP mailbox, an SMS number) and account: where it
        -- left off and whether its last sync worked.
        CREATE TABLE sync_sources (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            kind TEXT NOT NULL CHECK (kind IN ('imap', 'twilio')),
            name TEXT NOT NULL,                     -- e.g. imap://user@host:993, no secret
            last_attempt_at TEXT,
            last_success_at TEXT,
            last_error TEXT,                        -- NULL once a sync succeeds
            failing_since TEXT,
            UNIQUE (account_id, kind, name)
        );
        -- Per folder of an IMAP source (or one row per cursor of an SMS source).
        CREATE TABLE sync_cursors (
            source_id INTEGER NOT NULL REFERENCES sync_sources(id),
            folder TEXT NOT NULL,
            uidvalidity INTEGER,
            last_uid INTEGER,
            position TEXT,                          -- an SMS source's last DateSent read
            PRIMARY KEY (source_id, folder)
        );
        """,
    )


@migration
def m003_channel_health(conn: sqlite3.Connection) -> None:
    """A row per account and channel while it fails for reasons that are not the lead's: its
    sends are held, and one probe per tick tries it, until a send gets through."""
    run_script(
        conn,
        """
        CREATE TABLE channel_health (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            channel TEXT NOT NULL,              -- 'email' or 'sms'
            failing_since TEXT NOT NULL,
            last_error TEXT NOT NULL,           -- scrubbed: never a secret
            failures INTEGER NOT NULL DEFAULT 1,-- sends that failed this way since then
            last_probe_at TEXT,
            next_probe_at TEXT,                 -- the server's Retry-After, if it gave one
            probe_action_id INTEGER,            -- the last send tried: probes take turns
            probe_token TEXT,                   -- the tick that last tried it: one try a tick
            PRIMARY KEY (account_id, channel)
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


@migration
def m008_report(conn: sqlite3.Connection) -> None:
    """`pipectl report`: counters kept by triggers as the run-state rows are written, so a
    report over a million leads reads a few thousand counter rows, never the rows themselves."""
    run_script(conn, REPORT_SCHEMA)
    run_script(conn, REPORT_BACKFILL)


# A 15-minute UTC slot of a stored time ('2027-03-01T14:15'): fine enough to fold into days
# of any time zone (offsets are whole quarter hours), coarse enough to stay small.
def _slot(column: str) -> str:
    return (
        f"substr({column}, 1, 14) || "
        f"printf('%02d', CAST(substr({column}, 15, 2) AS INTEGER) / 15 * 15)"
    )


# The pipeline of a send (its action's enrollment).
_SEND_PIPELINE = (
    "(SELECT e.pipeline_id FROM lead_stage_actions a JOIN enrollments e ON e.id = a.enrollment_id"
    " WHERE a.id = {action})"
)
_COUNT = (
    "INSERT INTO report_counts (account_id, pipeline_id, metric, detail, slot, stage_id,"
    " from_stage_id, n) "
)
_UPSERT = " ON CONFLICT DO UPDATE SET n = n + excluded.n"


# A reply's enrollments: that of the send it answers, else every one of the lead's.
_REPLY_ENROLLMENTS = (
    "enrollments e0 WHERE e0.lead_id = NEW.lead_id AND (NEW.delivery_id IS NULL OR e0.id ="
    " (SELECT a.enrollment_id FROM deliveries d JOIN lead_stage_actions a"
    " ON a.id = d.lead_stage_action_id WHERE d.id = NEW.delivery_id))"
)

REPORT_SCHEMA = f"""
-- What happened per pipeline and 15-minute slot: enrolled, entered / exited / moved per stage,
-- sent / delivered / bounced / undelivered per channel, replies by kind, and the
-- first email, send, reply and opt-out of each enrollment (leads, not messages).
CREATE TABLE report_counts (
    account_id INTEGER NOT NULL,
    pipeline_id INTEGER NOT NULL,           -- 0: a reply that matched no lead
    metric TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',        -- the channel, where the metric has one
    slot TEXT NOT NULL,                     -- UTC, 15 minutes: 2027-03-01T14:15
    stage_id INTEGER NOT NULL DEFAULT 0,    -- entered, exited, moved: the stage
    from_stage_id INTEGER NOT NULL DEFAULT 0,   -- moved: the stage it left
    n INTEGER NOT NULL,
    PRIMARY KEY (account_id, pipeline_id, metric, slot, detail, stage_id, from_stage_id)
) WITHOUT ROWID;
CREATE TABLE report_firsts (
    enrollment_id INTEGER NOT NULL,
    what TEXT NOT NULL,                     -- emailed, contacted, replied, opted_out
    PRIMARY KEY (enrollment_id, what)
) WITHOUT ROWID;

CREATE TRIGGER report_enrolled AFTER UPDATE OF started_at ON enrollments
WHEN NEW.started_at IS NOT NULL AND NEW.started_at IS NOT OLD.started_at
BEGIN
    {_COUNT} VALUES (NEW.account_id, NEW.pipeline_id, 'enrolled', '',
        {_slot("NEW.started_at")}, 0, 0, 1){_UPSERT};
END;

CREATE TRIGGER report_entered AFTER INSERT ON lead_stages
BEGIN
    {_COUNT} SELECT e.account_id, e.pipeline_id, 'entered', '', {_slot("NEW.entered_at")},
        NEW.pipeline_stage_id,
        coalesce((SELECT p.pipeline_stage_id FROM lead_stages p
                  WHERE p.enrollment_id = NEW.enrollment_id AND p.id < NEW.id
                  AND p.exited_at = NEW.entered_at ORDER BY p.id DESC LIMIT 1), 0), 1
    FROM enrollments e WHERE e.id = NEW.enrollment_id{_UPSERT};
END;

-- An exit; `pipectl retry` reopening a stage the lead had left takes it back.
CREATE TRIGGER report_exited AFTER UPDATE OF exited_at ON lead_stages
WHEN (OLD.exited_at IS NULL) != (NEW.exited_at IS NULL)
BEGIN
    {_COUNT} SELECT e.account_id, e.pipeline_id, 'exited', '',
        {_slot("coalesce(NEW.exited_at, OLD.exited_at)")}, NEW.pipeline_stage_id, 0,
        CASE WHEN NEW.exited_at IS NULL THEN -1 ELSE 1 END
    FROM enrollments e WHERE e.id = NEW.enrollment_id{_UPSERT};
END;

-- A send, and its lead's first send and first email: the INSERT OR IGNORE adds a row per
-- first (contacted: any channel; emailed), and `changes()` says how many it added (for an
-- email, 2 means both, 1 means only emailed), so a later send costs one index probe.
CREATE TRIGGER report_sent AFTER INSERT ON deliveries
BEGIN
    INSERT OR IGNORE INTO report_firsts (enrollment_id, what)
    SELECT a.enrollment_id, w.what FROM lead_stage_actions a
    JOIN (SELECT 'contacted' AS what UNION ALL SELECT 'emailed' WHERE NEW.channel = 'email') w
    WHERE a.id = NEW.lead_stage_action_id;
    {_COUNT} SELECT NEW.account_id, e.pipeline_id, w.metric, w.detail, {_slot("NEW.sent_at")},
        0, 0, 1
    FROM lead_stage_actions a JOIN enrollments e ON e.id = a.enrollment_id
    JOIN (SELECT 'sent' AS metric, NEW.channel AS detail
          UNION ALL SELECT 'contacted', '' WHERE changes() = 2
              OR (changes() = 1 AND NEW.channel != 'email')
          UNION ALL SELECT 'emailed', '' WHERE changes() >= 1 AND NEW.channel = 'email') w
    WHERE a.id = NEW.lead_stage_action_id{_UPSERT};
END;

-- A send's later status (delivered, bounced, undelivered) counts in the slot it was sent in.
CREATE TRIGGER report_delivery_status AFTER UPDATE OF status ON deliveries
WHEN NEW.status IS NOT OLD.status
BEGIN
    {_COUNT} SELECT NEW.account_id, {_SEND_PIPELINE.format(action="NEW.lead_stage_action_id")},
        s.status, NEW.channel, {_slot("NEW.sent_at")}, 0, 0, s.n
    FROM (SELECT NEW.status AS status, 1 AS n UNION ALL SELECT OLD.status, -1) s
    WHERE s.status != 'sent'{_UPSERT};
END;

-- A reply counts for the pipeline of the send it answers; else for every pipeline the lead
-- is in (as `pipectl reply` acts on each); one that matched no lead, under pipeline 0.
CREATE TRIGGER report_reply AFTER INSERT ON replies
BEGIN
    {_COUNT} SELECT NEW.account_id, p.pipeline_id, NEW.kind, NEW.channel,
        {_slot("NEW.received_at")}, 0, 0, 1
    FROM (SELECT 0 AS pipeline_id WHERE NEW.lead_id IS NULL
          UNION ALL SELECT {_SEND_PIPELINE.format(action="d.lead_stage_action_id")}
          FROM deliveries d WHERE d.id = NEW.delivery_id AND NEW.lead_id IS NOT NULL
          UNION ALL SELECT e.pipeline_id FROM enrollments e
          WHERE e.lead_id = NEW.lead_id AND NEW.delivery_id IS NULL) p
    WHERE p.pipeline_id IS NOT NULL{_UPSERT};
END;

-- The first human reply and the first opt-out of each of those enrollments.
CREATE TRIGGER report_replied AFTER INSERT ON replies
WHEN NEW.kind IN ('reply', 'opt_out') AND NEW.lead_id IS NOT NULL
BEGIN
    {_COUNT} SELECT e.account_id, e.pipeline_id,
        CASE NEW.kind WHEN 'reply' THEN 'replied' ELSE 'opted_out' END, '',
        {_slot("NEW.received_at")}, 0, 0, 1
    FROM {_REPLY_ENROLLMENTS.replace("e0", "e")} AND NOT EXISTS
        (SELECT 1 FROM report_firsts f WHERE f.enrollment_id = e.id
         AND f.what = CASE NEW.kind WHEN 'reply' THEN 'replied' ELSE 'opted_out' END){_UPSERT};
    INSERT OR IGNORE INTO report_firsts (enrollment_id, what)
    SELECT e0.id, CASE NEW.kind WHEN 'reply' THEN 'replied' ELSE 'opted_out' END
    FROM {_REPLY_ENROLLMENTS};
END;
"""


# The same counts from the rows already there (a database from before this migration).
_ATTRIBUTED_REPLIES = """
    SELECT r.*, coalesce(
        (SELECT e.pipeline_id FROM deliveries d JOIN lead_stage_actions a
         ON a.id = d.lead_stage_action_id JOIN enrollments e ON e.id = a.enrollment_id
         WHERE d.id = r.delivery_id), e.pipeline_id, 0) AS pipeline_id,
        coalesce((SELECT a.enrollment_id FROM deliveries d JOIN lead_stage_actions a
         ON a.id = d.lead_stage_action_id WHERE d.id = r.delivery_id), e.id) AS enrollment_id
    FROM replies r LEFT JOIN enrollments e
    ON e.lead_id = r.lead_id AND r.delivery_id IS NULL
"""
_FIRSTS = f"""
    SELECT a.enrollment_id, w.what, min(d.sent_at) AS at FROM deliveries d
    JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id
    JOIN (SELECT 'contacted' AS what, NULL AS channel UNION ALL SELECT 'emailed', 'email') w
    ON w.channel IS NULL OR w.channel = d.channel
    GROUP BY a.enrollment_id, w.what
    UNION ALL
    SELECT r.enrollment_id, CASE r.kind WHEN 'reply' THEN 'replied' ELSE 'opted_out' END,
        min(r.received_at)
    FROM ({_ATTRIBUTED_REPLIES}) r WHERE r.kind IN ('reply', 'opt_out')
    AND r.enrollment_id IS NOT NULL GROUP BY 1, 2
"""
REPORT_BACKFILL = f"""
{_COUNT} SELECT account_id, pipeline_id, 'enrolled', '', {_slot("started_at")}, 0, 0, count(*)
FROM enrollments WHERE started_at IS NOT NULL GROUP BY 1, 2, 5{_UPSERT};
{_COUNT} SELECT e.account_id, e.pipeline_id, 'entered', '', {_slot("s.entered_at")},
    s.pipeline_stage_id,
    coalesce((SELECT p.pipeline_stage_id FROM lead_stages p
              WHERE p.enrollment_id = s.enrollment_id AND p.id < s.id
              AND p.exited_at = s.entered_at ORDER BY p.id DESC LIMIT 1), 0) AS from_stage,
    count(*)
FROM lead_stages s JOIN enrollments e ON e.id = s.enrollment_id
WHERE true GROUP BY 1, 2, 5, 6, 7{_UPSERT};
{_COUNT} SELECT e.account_id, e.pipeline_id, 'exited', '', {_slot("s.exited_at")},
    s.pipeline_stage_id, 0, count(*)
FROM lead_stages s JOIN enrollments e ON e.id = s.enrollment_id
WHERE s.exited_at IS NOT NULL GROUP BY 1, 2, 5, 6{_UPSERT};
{_COUNT} SELECT d.account_id, e.pipeline_id,
    CASE s.metric WHEN 'sent' THEN 'sent' ELSE d.status END, d.channel, {_slot("d.sent_at")}, 0, 0,
    count(*)
FROM deliveries d JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id
JOIN enrollments e ON e.id = a.enrollment_id
JOIN (SELECT 'sent' AS metric UNION ALL SELECT 'status') s
WHERE s.metric = 'sent' OR d.status != 'sent'
GROUP BY 1, 2, 3, 4, 5{_UPSERT};
{_COUNT} SELECT r.account_id, r.pipeline_id, r.kind, r.channel, {_slot("r.received_at")}, 0, 0,
    count(*)
FROM ({_ATTRIBUTED_REPLIES}) r WHERE true GROUP BY 1, 2, 3, 4, 5{_UPSERT};
INSERT OR IGNORE INTO report_firsts (enrollment_id, what)
SELECT enrollment_id, what FROM ({_FIRSTS}) WHERE true;
{_COUNT} SELECT e.account_id, e.pipeline_id, f.what, '', {_slot("f.at")}, 0, 0, count(*)
FROM ({_FIRSTS}) f JOIN enrollments e ON e.id = f.enrollment_id
WHERE true GROUP BY 1, 2, 3, 5{_UPSERT};
"""


@migration
def m010_statuses(conn: sqlite3.Connection) -> None:
    """CHECK constraints on the status columns, from the enums in `pipectl/statuses.py`: a
    misspelt status is refused by the database instead of stranding a lead."""
    # Triggers and views name these tables: a dropped table would break them (and take its own
    # triggers along), so they are set aside and created again once the tables are back.
    kept = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger')"
        " AND sql IS NOT NULL ORDER BY type = 'trigger', rowid"
    ).fetchall()
    for kind, name, _ in kept:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    add_checks(conn, "lead_stage_actions", {"status": sql_list(ActionStatus)})
    add_checks(conn, "enrollments", {"status": sql_list(EnrollmentStatus)})
    add_checks(conn, "leads", {"status": sql_list(EnrollmentStatus)})
    for _, _, sql in kept:
        conn.execute(sql)


m010_statuses.rebuilds_tables = True  # type: ignore[attr-defined]


@migration
def m011_senders(conn: sqlite3.Connection) -> None:
    """Sender mailboxes: their daily caps and warm-up, a counter of sends per local day, the
    sender each lead keeps (`leads.sender_id`), and per email the sender, subject and thread."""
    run_script(
        conn,
        """
        CREATE TABLE senders (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            address TEXT NOT NULL,              -- lower-case address of `from`: its identity
            sender TEXT NOT NULL,               -- `from` as written, e.g. "Ann Lee <ann@...>"
            settings TEXT NOT NULL DEFAULT '{}',-- email channel keys it overrides; ${VAR} kept
            daily_limit INTEGER NOT NULL,
            warmup_start INTEGER,               -- day 1 allows this many
            warmup_step INTEGER,                -- and each day after, this many more
            first_sent_on TEXT,                 -- the account-local date of its first send
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            removed_at TEXT,                    -- gone from the YAML: its leads move on
            UNIQUE (account_id, address)
        );
        CREATE TABLE sender_days (
            sender_id INTEGER NOT NULL REFERENCES senders(id) ON DELETE CASCADE,
            day TEXT NOT NULL,                  -- YYYY-MM-DD in the account's time zone
            sent INTEGER NOT NULL DEFAULT 0,    -- emails really sent that day
            PRIMARY KEY (sender_id, day)
        );
        ALTER TABLE leads ADD COLUMN sender_id INTEGER REFERENCES senders(id);
        ALTER TABLE deliveries ADD COLUMN sender_id INTEGER REFERENCES senders(id);
        ALTER TABLE deliveries ADD COLUMN subject TEXT;
        ALTER TABLE deliveries ADD COLUMN thread_references TEXT;
        CREATE INDEX leads_sender ON leads (sender_id) WHERE sender_id IS NOT NULL;
        CREATE INDEX deliveries_lead ON deliveries (lead_id, channel);
        """,
    )


@migration
def m012_hooks(conn: sqlite3.Connection) -> None:
    """Webhooks: the receivers from the YAML, and an outbox of events written in the same
    transaction as the change they describe, delivered by the tick in order per hook."""
    events = sql_list(HookEvent)
    statuses = sql_list(HookEventStatus)
    run_script(
        conn,
        f"""
        CREATE TABLE hooks (
            id INTEGER PRIMARY KEY,
            account_id INTEGER,                 -- NULL: every account's (no foreign key: an
                                                -- account may go while a removed hook stays)
            url TEXT NOT NULL,                  -- as written: ${{VAR}} placeholders, never values
            events TEXT NOT NULL,               -- JSON list of event types
            secret TEXT,                        -- a ${{VAR}} placeholder, never the value
            headers TEXT NOT NULL DEFAULT '{{}}',  -- JSON; values keep their ${{VAR}}s
            timeout REAL NOT NULL,
            retry TEXT NOT NULL,                -- JSON {{"attempts", "backoff", "max_backoff"}}
            last_error TEXT,                    -- the latest failed attempt's, until one works
            failing_since TEXT,
            last_delivered_at TEXT,
            claimed_by TEXT,                    -- the tick posting its events now: one at a
            claimed_until TEXT,                 -- time per hook, even with many runners
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            removed_at TEXT                     -- gone from the YAML
        );
        CREATE TABLE hook_events (
            id INTEGER PRIMARY KEY,             -- the order events are delivered in, per hook
            event_id TEXT NOT NULL,             -- the payload's "id": the same on every attempt
            hook_id INTEGER NOT NULL REFERENCES hooks(id),
            type TEXT NOT NULL CHECK (type IN {events}),
            account_id INTEGER REFERENCES accounts(id),
            lead_id INTEGER REFERENCES leads(id),
            payload TEXT NOT NULL,              -- the exact JSON body
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {statuses}),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,               -- NULL: never tried, due at once
            last_error TEXT,
            created_at TEXT NOT NULL,
            delivered_at TEXT,
            UNIQUE (hook_id, event_id)
        );
        CREATE INDEX hook_events_pending ON hook_events (hook_id, id) WHERE status = 'pending';
        CREATE INDEX hook_events_failed ON hook_events (hook_id) WHERE status = 'failed';
        """,
    )


@migration
def m013_admit_counters(conn: sqlite3.Connection) -> None:
    """Admission writes a batch of leads at once and counts them in the same statement
    (`store.counters`): the per-row triggers for `enrolled` and `entered` go."""
    conn.execute("DROP TRIGGER IF EXISTS report_enrolled")
    conn.execute("DROP TRIGGER IF EXISTS report_entered")


def add_checks(conn: sqlite3.Connection, table: str, checks: dict[str, str]) -> None:
    """Rebuild `table` with `CHECK (column IN ...)` on the given columns (SQLite cannot add a
    CHECK to a column in place), keeping every column, row and index whatever earlier
    migrations added. Needs foreign keys off: see `rebuilds_tables`."""
    sql, indexes = _table_sql(conn, table)
    for column, allowed in checks.items():
        definition = re.compile(rf"(\n\s*{column}\s+TEXT(?:\s+NOT\s+NULL)?)\s*(?=,|\n|$)")
        sql, found = definition.subn(rf"\1 CHECK ({column} IN {allowed})", sql, count=1)
        if not found:
            raise RuntimeError(f"m010: {table}.{column} not found in {sql!r}")
    new = f"{table}_new"
    conn.execute(re.sub(rf"^CREATE TABLE \"?{table}\"?", f"CREATE TABLE {new}", sql))
    conn.execute(f"INSERT INTO {new} SELECT * FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {new} RENAME TO {table}")
    for index_sql in indexes:
        conn.execute(index_sql)


def _table_sql(conn: sqlite3.Connection, table: str) -> tuple[str, list[str]]:
    """A table's CREATE statement and those of its explicit indexes."""
    rows = conn.execute(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY rowid",
        (table,),
    ).fetchall()
    tables = [r[1] for r in rows if r[0] == "table"]
    return tables[0], [r[1] for r in rows if r[0] == "index"]


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
        # A table rebuild drops a table others refer to: foreign keys are off while it runs
        # (the pragma is a no-op inside a transaction) and checked before it commits.
        rebuild = getattr(fn, "rebuilds_tables", False)
        foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
        if rebuild:
            conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("ROLLBACK")
                continue
            fn(conn)
            if rebuild and conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise RuntimeError(f"migration {fn.__name__} broke a foreign key")
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a full disk has rolled it back already
                conn.execute("ROLLBACK")
            raise
        finally:
            if rebuild:
                conn.execute(f"PRAGMA foreign_keys = {foreign_keys}")


@migration
def m014_runners(conn: sqlite3.Connection) -> None:
    """Every process that ticks, with its heartbeat: against PostgreSQL many runners tick at
    once, and one whose heartbeat is older than the lease has its claims recovered."""
    run_script(
        conn,
        """
        CREATE TABLE runners (
            id TEXT PRIMARY KEY,                -- the first 12 characters of its claim tokens
            host TEXT NOT NULL,
            machine TEXT NOT NULL DEFAULT '',   -- host, boot and pid namespace: where pid means
            pid INTEGER NOT NULL,               -- the same process
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,         -- real time, never --now
            stopped_at TEXT                     -- set when a tick ends with nothing in flight
        );
        """,
    )


@migration
def m015_count_sends(conn: sqlite3.Connection) -> None:
    """The tick counts a batch of sends in two statements (`store.counters.sent`): the
    per-row trigger that counted each delivery goes (against PostgreSQL it cost a third of
    the tick's time in the database)."""
    conn.execute("DROP TRIGGER IF EXISTS report_sent")


# Indexes a later migration dropped: an older PostgreSQL database drops them on upgrade too
# (`pg_schema.py` otherwise only adds what the SQLite schema has and it lacks).
RETIRED_INDEXES = ("enrollments_queued", "lsa_lead", "lsa_performed")


@migration
def m016_admit_fewer_index_writes(conn: sqlite3.Connection) -> None:
    """Indexes that every admitted lead wrote and that no query needs: `enrollments_queued`
    (`enrollments_fifo` covers the same rows), `lsa_lead` (a lead's actions are found through
    its lead_stages) and every unperformed action's NULL in `lsa_performed` (now partial)."""
    for name in RETIRED_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.execute(
        "CREATE INDEX lsa_performed_at ON lead_stage_actions (performed_at)"
        " WHERE performed_at IS NOT NULL"
    )
