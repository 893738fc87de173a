"""Pipelines from the YAML: apply (one transaction; what changed is a `Plan`,
`config_plan.py`), and lookups by key."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..durations import format_time, utcnow
from ..errors import NotFound
from ..statuses import EnrollmentStatus
from .config_plan import CHANGED, CREATED, REMOVED, UNCHANGED, Plan, RemovalRefused, canonical
from .database import Part

if TYPE_CHECKING:
    from ..config import Account, Config, Pipeline, Stage


class _RollBack(Exception):
    """Ends a dry run's transaction without writing."""


def _diff(row: sqlite3.Row, values: dict[str, Any]) -> list[str]:
    return [name for name, value in values.items() if row[name] != value]


class ConfigSQL(Part):
    """Pipelines from the YAML: apply, plan, lookups."""

    def apply_config(self, config: Config, *, force: bool = False, dry_run: bool = False) -> Plan:
        """Make the database match the YAML in one transaction; leads keep their snapshots."""
        plan = Plan(dry_run=dry_run)
        refused: list[str] = []
        now = format_time(utcnow())
        try:
            with self.transaction():
                had_pipelines = {
                    r["account_id"]
                    for r in self._rows("SELECT account_id FROM pipelines WHERE removed_at IS NULL")
                }
                account_ids = self._apply_accounts(config, plan, now)
                live = {p.key for p in config.pipelines}
                for pipeline in config.pipelines:
                    self._apply_pipeline(
                        pipeline, account_ids[pipeline.account], plan, refused, now
                    )
                for row in self._rows("SELECT * FROM pipelines WHERE removed_at IS NULL"):
                    if row["key"] not in live:
                        self._remove_pipeline(row, plan, refused, now, force)
                self.store.hooks.apply_hooks(config.hooks, account_ids, plan, now)
                self._remove_absent_accounts(config, plan, had_pipelines)
                if refused and not force:
                    raise RemovalRefused(
                        f"{config.path}: not applied; it would remove what leads are still in:\n  "
                        + "\n  ".join(refused)
                        + "\nKeep them in the YAML, or run apply --force: those leads finish"
                        " with the actions they entered with.",
                        plan,
                        refused,
                    )
                if dry_run:
                    raise _RollBack
        except _RollBack:
            pass
        return plan

    # -- accounts ------------------------------------------------------------------------------

    def _apply_accounts(self, config: Config, plan: Plan, now: str) -> dict[str, int]:
        existing = {r["key"]: r for r in self._rows("SELECT * FROM accounts")}
        ids: dict[str, int] = {}
        for account in config.accounts:
            values = _account_values(account)
            row = existing.get(account.key)
            if row is None:
                ids[account.key] = self._insert(
                    "accounts", {"key": account.key, **values, "created_at": now, "updated_at": now}
                )
                plan.add("account", account.key, CREATED)
                continue
            ids[account.key] = row["id"]
            changed = _diff(row, values)
            if changed:
                self._update("accounts", row["id"], {**values, "updated_at": now})
                plan.add("account", account.key, CHANGED, ", ".join(changed))
            else:
                plan.add("account", account.key, UNCHANGED)
        for account in config.accounts:
            senders = (account.channels.get("email") or {}).get("senders") or ()
            for address, change, detail in self.store.senders.apply_senders(
                ids[account.key], senders, now
            ):
                if change != UNCHANGED:
                    plan.add("sender", f"{account.key}/{address}", change, detail)
        return ids

    def _remove_absent_accounts(self, config: Config, plan: Plan, had_pipelines: set[int]) -> None:
        """Deletes accounts gone from the YAML; one that has leads keeps its row for them.

        Its pipelines were removed (or refused) above; an account kept for its leads is
        reported once, when its last pipelines go, so a second apply reports nothing.
        """
        keys = {a.key for a in config.accounts}
        for row in self._rows("SELECT * FROM accounts"):
            if row["key"] in keys:
                continue
            leads = self._count("SELECT count(*) FROM leads WHERE account_id = ?", row["id"])
            pipelines = self._count(
                "SELECT count(*) FROM pipelines WHERE account_id = ?", row["id"]
            )
            if not leads and not pipelines:
                self.conn.execute("DELETE FROM accounts WHERE id = ?", (row["id"],))
                plan.add("account", row["key"], REMOVED)
            elif row["id"] in had_pipelines:
                plan.add("account", row["key"], REMOVED, f"row kept for {_leads(leads)}")

    # -- pipelines -----------------------------------------------------------------------------

    def _apply_pipeline(
        self, pipeline: Pipeline, account_id: int, plan: Plan, refused: list[str], now: str
    ) -> None:
        values = {
            "account_id": account_id,
            "name": pipeline.name,
            "on_reply": pipeline.on_reply,
            "on_failure": pipeline.on_failure,
        }
        row = self._one("SELECT * FROM pipelines WHERE key = ?", pipeline.key)
        if row is None:
            pipeline_id = self._insert(
                "pipelines", {"key": pipeline.key, **values, "created_at": now, "updated_at": now}
            )
            plan.add("pipeline", pipeline.key, CREATED)
        elif row["removed_at"] is not None:
            pipeline_id = row["id"]
            self._update(
                "pipelines", pipeline_id, {**values, "removed_at": None, "updated_at": now}
            )
            plan.add("pipeline", pipeline.key, CREATED, "restored")
        else:
            pipeline_id = row["id"]
            changed = _diff(row, values)
            if changed:
                self._update("pipelines", pipeline_id, {**values, "updated_at": now})
            plan.add(
                "pipeline", pipeline.key, CHANGED if changed else UNCHANGED, ", ".join(changed)
            )
        self._apply_stages(pipeline, pipeline_id, plan, refused, now)

    def _remove_pipeline(
        self, row: sqlite3.Row, plan: Plan, refused: list[str], now: str, force: bool
    ) -> None:
        holding = self._count(
            "SELECT count(*) FROM ("
            " SELECT lead_id FROM lead_stages ls"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " WHERE s.pipeline_id = ? AND ls.exited_at IS NULL"
            " UNION SELECT lead_id FROM enrollments"
            " WHERE pipeline_id = ? AND status IN ('queued', 'active')) AS held",
            row["id"],
            row["id"],
        )
        if holding and not force:
            refused.append(f"pipeline '{row['key']}' ({_leads(holding)} in it)")
            plan.add("pipeline", row["key"], REMOVED, f"refused: {_leads(holding)} in it")
            return
        never_started = self._stop_queued("pipeline_id = ?", row["id"], now)
        never_started += self._finishing("e.pipeline_id = ?", row["id"])
        referenced = self._count(
            "SELECT EXISTS (SELECT 1 FROM enrollments WHERE pipeline_id = ?)", row["id"]
        )
        if referenced:
            self.conn.execute(
                "UPDATE pipeline_stages SET removed_at = ?"
                " WHERE pipeline_id = ? AND removed_at IS NULL",
                (now, row["id"]),
            )
            self._update("pipelines", row["id"], {"removed_at": now, "updated_at": now})
            detail = "kept as removed: leads' history refers to it" + never_started
        else:
            self.conn.execute(
                "DELETE FROM pipeline_stages WHERE pipeline_id = ?", (row["id"],)
            )  # actions cascade
            self.conn.execute("DELETE FROM pipelines WHERE id = ?", (row["id"],))
            detail = ""
        plan.add("pipeline", row["key"], REMOVED, detail)

    # -- stages and their actions --------------------------------------------------------------

    def _apply_stages(
        self, pipeline: Pipeline, pipeline_id: int, plan: Plan, refused: list[str], now: str
    ) -> None:
        existing = {
            r["key"]: r
            for r in self._rows("SELECT * FROM pipeline_stages WHERE pipeline_id = ?", pipeline_id)
        }
        for position, stage in enumerate(pipeline.stages, start=1):
            label = f"{pipeline.key}/{stage.key}"
            values = {
                "name": stage.name,
                "position": position,
                "outcome": stage.outcome,
                "on_failure": stage.on_failure,
            }
            row = existing.get(stage.key)
            if row is None:
                stage_id = self._insert(
                    "pipeline_stages", {"pipeline_id": pipeline_id, "key": stage.key, **values}
                )
                self._replace_actions(stage_id, stage)
                plan.add("stage", label, CREATED)
                continue
            changed = _diff(row, values)
            if row["removed_at"] is not None:
                self._update("pipeline_stages", row["id"], {**values, "removed_at": None})
                self._replace_actions(row["id"], stage)
                plan.add("stage", label, CREATED, "restored")
                continue
            if changed:
                self._update("pipeline_stages", row["id"], values)
            if self._actions(row["id"]) != _action_rows(stage):
                self._replace_actions(row["id"], stage)
                changed.append("actions")
            plan.add("stage", label, CHANGED if changed else UNCHANGED, ", ".join(changed))
        live = {s.key for s in pipeline.stages}
        for key, row in existing.items():
            if key not in live and row["removed_at"] is None:
                self._remove_stage(row, f"{pipeline.key}/{key}", plan, refused, now)

    def _remove_stage(
        self, row: sqlite3.Row, label: str, plan: Plan, refused: list[str], now: str
    ) -> None:
        holding = self._count(
            "SELECT count(*) FROM ("
            " SELECT lead_id FROM lead_stages WHERE pipeline_stage_id = ? AND exited_at IS NULL"
            " UNION SELECT lead_id FROM enrollments"
            " WHERE entry_stage_id = ? AND status IN ('queued', 'active')) AS held",
            row["id"],
            row["id"],
        )
        if holding:
            refused.append(f"stage '{label}' ({_leads(holding)} in it)")
            # with --force: fall through; the lead keeps its snapshot
        never_started = self._stop_queued("entry_stage_id = ?", row["id"], now)
        never_started += self._finishing("ls.pipeline_stage_id = ?", row["id"])
        referenced = self._count(
            "SELECT EXISTS (SELECT 1 FROM lead_stages WHERE pipeline_stage_id = ?)"
            " OR EXISTS (SELECT 1 FROM enrollments WHERE entry_stage_id = ?)",
            row["id"],
            row["id"],
        )
        if referenced:
            self._update("pipeline_stages", row["id"], {"removed_at": now})
            plan.add(
                "stage",
                label,
                REMOVED,
                "kept as removed: leads' history refers to it" + never_started,
            )
        else:
            self.conn.execute("DELETE FROM pipeline_stages WHERE id = ?", (row["id"],))
            plan.add("stage", label, REMOVED)

    def _stop_queued(self, where: str, config_id: int, now: str) -> str:
        """Queued runs into a pipeline or stage being removed never start: they end `stopped`.
        Leads already in its stages finish with the actions they entered with."""
        queued = self._rows(
            f"SELECT id, lead_id FROM enrollments WHERE {where} AND status = 'queued'", config_id
        )
        stopped = [(r["id"], r["lead_id"], now) for r in queued]
        self.store.lifecycle.set_enrollments(stopped, EnrollmentStatus.STOPPED)
        if not stopped:
            return ""
        return f"; {_leads(len(stopped))} queued for it will not start (stopped)"

    def _finishing(self, where: str, config_id: int) -> str:
        """How many running leads stay in a removed pipeline or stage, for the plan."""
        n = self._count(
            "SELECT count(DISTINCT e.id) FROM enrollments e JOIN lead_stages ls"
            " ON ls.enrollment_id = e.id AND ls.exited_at IS NULL"
            f" WHERE {where} AND e.status = 'active'",
            config_id,
        )
        verb = "finishes" if n == 1 else "finish"
        return f"; {_leads(n)} in it {verb} with the actions they entered with" if n else ""

    def _actions(self, stage_id: int) -> list[tuple[str, str]]:
        return [
            (r["type"], r["params"])
            for r in self._rows(
                "SELECT type, params FROM pipeline_stage_actions"
                " WHERE pipeline_stage_id = ? ORDER BY sequence_number",
                stage_id,
            )
        ]

    def _replace_actions(self, stage_id: int, stage: Stage) -> None:
        """New action rows for the stage; leads already in it keep their snapshot rows."""
        self.conn.execute(
            "DELETE FROM pipeline_stage_actions WHERE pipeline_stage_id = ?", (stage_id,)
        )
        self.conn.executemany(
            "INSERT INTO pipeline_stage_actions (pipeline_stage_id, sequence_number, type, params)"
            " VALUES (?, ?, ?, ?)",
            [(stage_id, n, t, p) for n, (t, p) in enumerate(_action_rows(stage), start=1)],
        )

    # -- lookups for the rest of the product ---------------------------------------------------

    def accounts(self) -> list[sqlite3.Row]:
        """Every account, by key."""
        return list(self._rows("SELECT * FROM accounts ORDER BY key"))

    def account_by_key(self, key: str) -> sqlite3.Row:
        """The account row; NotFound lists the known keys."""
        row = self._one("SELECT * FROM accounts WHERE key = ?", key)
        if row is None:
            known = [r["key"] for r in self._rows("SELECT key FROM accounts ORDER BY key")]
            raise NotFound(f"no account '{key}'; {_known('accounts', known)}")
        return row

    def pipeline_by_key(self, key: str) -> sqlite3.Row:
        """The pipeline row (not removed from the YAML); NotFound lists the known keys."""
        row = self._one("SELECT * FROM pipelines WHERE key = ? AND removed_at IS NULL", key)
        if row is None:
            known = [
                r["key"]
                for r in self._rows(
                    "SELECT key FROM pipelines WHERE removed_at IS NULL ORDER BY key"
                )
            ]
            raise NotFound(f"no pipeline '{key}'; {_known('pipelines', known)}")
        return row

    def stage_by_key(self, pipeline_id: int, key: str) -> sqlite3.Row:
        """A live stage of the pipeline; NotFound lists the pipeline's stages."""
        row = self._one(
            "SELECT * FROM pipeline_stages"
            " WHERE pipeline_id = ? AND key = ? AND removed_at IS NULL",
            pipeline_id,
            key,
        )
        if row is None:
            known = [
                r["key"]
                for r in self._rows(
                    "SELECT key FROM pipeline_stages WHERE pipeline_id = ? AND removed_at IS NULL"
                    " ORDER BY position",
                    pipeline_id,
                )
            ]
            raise NotFound(f"no stage '{key}' in this pipeline; stages: {', '.join(known)}")
        return row

    # -- small helpers -------------------------------------------------------------------------

    def _rows(self, sql: str, *params: Any) -> Iterator[sqlite3.Row]:
        return iter(self.conn.execute(sql, params).fetchall())

    def _one(self, sql: str, *params: Any) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def _count(self, sql: str, *params: Any) -> int:
        return self.conn.execute(sql, params).fetchone()[0]

    def _insert(self, table: str, values: dict[str, Any]) -> int:
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return int(
            self.conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id",
                tuple(values.values()),
            ).fetchone()[0]
        )

    def _update(self, table: str, row_id: int, values: dict[str, Any]) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.conn.execute(
            f"UPDATE {table} SET {assignments} WHERE id = ?", (*values.values(), row_id)
        )


def _account_values(account: Account) -> dict[str, Any]:
    limits = account.limits
    return {
        "name": account.name,
        "timezone": account.timezone,
        "country": account.country,
        "active_leads": limits.active_leads,
        "concurrency": limits.concurrency,
        "rates": canonical({k: [r.count, r.seconds] for k, r in limits.rates.items()}),
        "channels": canonical(account.channels),
        "send_window": canonical(account.send_window),
    }


def _action_rows(stage: Stage) -> list[tuple[str, str]]:
    return [(a.type, canonical(a.params) or "{}") for a in stage.actions]


def _leads(n: int) -> str:
    return "1 lead" if n == 1 else f"{n} leads"


def _known(what: str, keys: list[str]) -> str:
    if not keys:
        return f"no {what} yet: run `pipectl apply pipelines.yaml` first"
    return f"known {what}: {', '.join(keys)}"
