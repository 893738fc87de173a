"""All SQL lives in this package: one Database and the parts that hold it, behind `Store`.

Open a database with `Store(path)`; then reach a part and call its verbs:

    store.config           pipelines from the YAML: apply, plan, lookups by key (config_sql.py)
    store.leads            leads read back: list, export (leads_sql.py)
    store.lead_import      `leads import`: merge, insert, update in batches (lead_import_sql.py)
    store.enrollment       leads queued in a pipeline, runs restarted (enrollment_sql.py)
    store.scheduler        the tick's transactions: recover, a step a turn (scheduler_sql.py)
    store.claim            the claim: due waits and moves done, due sends read (claim_sql.py)
    store.starts           claimed sends starting, skipped, or put back (starts_sql.py)
    store.results          a batch of send results, written set-based (results_sql.py)
    store.senders          mailboxes: daily caps, each lead's sender, threads (senders_sql.py)
    store.admission        queued enrollments into their first stage (admission_sql.py)
    store.lifecycle        a lead in a pipeline: enter, advance, move, stop (stages_sql.py)
    store.health           channels failing for reasons not the lead's (health_sql.py)
    store.replies          replies by hand or CSV, opt-outs, stopping a lead (replies_sql.py)
    store.inbound          inbound messages: recorded once, matched, applied (inbound_sql.py)
    store.sync_sources     inboxes and providers: cursors, last outcome (sync_sources_sql.py)
    store.delivery_status  bounces and text statuses (delivery_status_sql.py)
    store.suppressions     addresses never sent to again (suppressions_sql.py)
    store.operator         retry failed actions, enroll existing leads (operator_sql.py)
    store.hooks            webhooks: hooks, events beside their change (hooks_sql.py)
    store.hook_delivery    the tick's webhook posts: claim, record (hook_delivery_sql.py)
    store.status           read-only: `status`, per account (status_sql.py)
    store.reports          read-only: a lead's timeline, actions by status (reports_sql.py)
    store.funnel           read-only: `pipectl report`'s counters (funnel_sql.py)
    store.runners          the processes that tick, heartbeats, leases (runners_sql.py)
    store.counters         the report's counters kept as leads move (counters_sql.py)

`database.py` owns the connection, `transaction()`, `rolled_back()`, a busy or full disk and the
SQL dialect; `migrations.py` the schema. Parts call each other only through public verbs. Nothing
outside this package sees the connection: a PostgreSQL backend replaces what is here, nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .admission_sql import AdmissionSQL
from .claim_sql import ClaimSQL
from .config_sql import ConfigSQL
from .counters_sql import CountersSQL
from .database import (
    BUSY_TIMEOUT_MS,
    Database,
    WriteError,
    busy_timeout_ms,
    is_busy,
    is_disk_full,
)
from .delivery_status_sql import DeliveryStatusSQL
from .enrollment_sql import EnrollmentSQL
from .funnel_sql import FunnelSQL
from .health_sql import HealthSQL
from .hook_delivery_sql import HookDeliverySQL
from .hooks_sql import HooksSQL
from .inbound_sql import InboundSQL
from .lead_import_sql import LeadImportSQL
from .leads_sql import LeadsSQL
from .operator_sql import OperatorSQL
from .postgres import is_postgres_url
from .replies_sql import RepliesSQL
from .reports_sql import ReportsSQL
from .results_sql import ResultsSQL
from .runners_sql import RunnersSQL
from .scheduler_sql import SchedulerSQL
from .senders_sql import SendersSQL
from .stages_sql import StagesSQL
from .starts_sql import StartsSQL
from .status_sql import StatusSQL
from .suppressions_sql import SuppressionsSQL
from .sync_sources_sql import SyncSourcesSQL

__all__ = ["BUSY_TIMEOUT_MS", "Database", "Store", "busy_timeout_ms", "default_db_path"]
__all__ += ["WriteError", "is_busy", "is_disk_full", "one_tick_at_a_time"]


def one_tick_at_a_time(target: str | os.PathLike[str]) -> bool:
    """SQLite: one tick at a time, by a file lock beside the database. A PostgreSQL URL: any
    number of runners at once (claims skip each other's rows; leases recover the dead)."""
    return not is_postgres_url(str(target))


def default_db_path() -> str:
    """`PIPECTL_DB` or ./pipectl.db: a file, or a `postgresql://` URL."""
    return os.environ.get("PIPECTL_DB", "pipectl.db")


class Store:
    """The facade: opens the Database and builds each part around it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.database = Database(path)
        self.path = self.database.path
        self.name = (
            self.database.name
        )  # what messages call it: the file, or the URL without password
        self.config = ConfigSQL(self.database, self)
        self.leads = LeadsSQL(self.database, self)
        self.lead_import = LeadImportSQL(self.database, self)
        self.enrollment = EnrollmentSQL(self.database, self)
        self.scheduler = SchedulerSQL(self.database, self)
        self.claim = ClaimSQL(self.database, self)
        self.starts = StartsSQL(self.database, self)
        self.results = ResultsSQL(self.database, self)
        self.senders = SendersSQL(self.database, self)
        self.admission = AdmissionSQL(self.database, self)
        self.lifecycle = StagesSQL(self.database, self)
        self.health = HealthSQL(self.database, self)
        self.replies = RepliesSQL(self.database, self)
        self.inbound = InboundSQL(self.database, self)
        self.sync_sources = SyncSourcesSQL(self.database, self)
        self.delivery_status = DeliveryStatusSQL(self.database, self)
        self.suppressions = SuppressionsSQL(self.database, self)
        self.operator = OperatorSQL(self.database, self)
        self.hooks = HooksSQL(self.database, self)
        self.hook_delivery = HookDeliverySQL(self.database, self)
        self.reports = ReportsSQL(self.database, self)
        self.status = StatusSQL(self.database, self)
        self.funnel = FunnelSQL(self.database, self)
        self.runners = RunnersSQL(self.database, self)
        self.counters = CountersSQL(self.database, self)

    @property
    def instance(self) -> str:
        """This database's random id: Message-IDs carry it."""
        return self.database.instance

    def close(self) -> None:
        self.database.close()

    @contextmanager
    def rolled_back(self) -> Iterator[Any]:
        """Run anything and then undo it all: `--dry-run` uses the real code paths."""
        with self.database.rolled_back():
            yield
