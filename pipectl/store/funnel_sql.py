"""The SQL of `pipectl report`: which pipelines, their stages, and the counters that triggers
keep as the run-state rows are written (migration m008_report).

Nothing here reads leads, actions or sends one by one: a report over a million leads reads
the pipeline's counter rows for the period (at most one per metric and 15 minutes) and two
counts of what is open now, through indexes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import NotFound
from .database import Part


@dataclass(frozen=True)
class ReportPipeline:
    """A pipeline to report on, with what the report needs of its account."""

    id: int
    key: str
    name: str
    account_id: int
    account: str
    account_name: str
    timezone: str


@dataclass(frozen=True)
class ReportStage:
    id: int
    key: str
    name: str
    outcome: str | None
    removed: bool


@dataclass(frozen=True)
class Count:
    """A counter summed over the period: `n` of `metric` (with its channel or kind)."""

    metric: str
    detail: str
    stage_id: int
    from_stage_id: int
    n: int


# What the activity per day or week shows; `entered` only for outcome stages (won, lost).
ACTIVITY_METRICS = ("enrolled", "sent", "bounced", "undelivered", "reply", "opt_out")


class FunnelSQL(Part):
    """Read-only: pipelines, stages and counters for `pipectl report`."""

    def report_pipelines(
        self, account_key: str | None = None, pipeline_key: str | None = None
    ) -> list[ReportPipeline]:
        """The pipelines to report on (live ones, by account then key); NotFound names the
        account or pipeline that does not exist."""
        if account_key is not None:
            self.store.config.account_by_key(account_key)
        if pipeline_key is not None:
            pipeline = self.store.config.pipeline_by_key(pipeline_key)
            if account_key is not None:
                owner = self.conn.execute(
                    "SELECT key FROM accounts WHERE id = ?", (pipeline["account_id"],)
                ).fetchone()[0]
                if owner != account_key:
                    raise NotFound(
                        f"pipeline '{pipeline_key}' belongs to account '{owner}',"
                        f" not '{account_key}'"
                    )
        rows = self.conn.execute(
            "SELECT p.id, p.key, p.name, a.id AS account_id, a.key AS account,"
            " a.name AS account_name, a.timezone FROM pipelines p"
            " JOIN accounts a ON a.id = p.account_id"
            " WHERE p.removed_at IS NULL AND (? IS NULL OR a.key = ?) AND (? IS NULL OR p.key = ?)"
            " ORDER BY a.key, p.key",
            (account_key, account_key, pipeline_key, pipeline_key),
        ).fetchall()
        return [ReportPipeline(**dict(r)) for r in rows]

    def report_stages(self, pipeline_id: int) -> list[ReportStage]:
        """The pipeline's stages in order; stages removed from the YAML come last."""
        rows = self.conn.execute(
            "SELECT id, key, name, outcome, removed_at IS NOT NULL AS removed"
            " FROM pipeline_stages WHERE pipeline_id = ? ORDER BY removed, position, id",
            (pipeline_id,),
        ).fetchall()
        return [ReportStage(**{**dict(r), "removed": bool(r["removed"])}) for r in rows]

    def report_totals(
        self, account_id: int, pipeline_id: int, since: str | None, until: str | None
    ) -> list[Count]:
        """The pipeline's counters summed over slots from `since` to before `until` (slot
        text; None: no bound); pipeline 0 holds the account's unmatched replies."""
        rows = self.conn.execute(
            "SELECT metric, detail, stage_id, from_stage_id, sum(n) FROM report_counts"
            " WHERE account_id = ? AND pipeline_id = ? AND (? IS NULL OR slot >= ?)"
            " AND (? IS NULL OR slot < ?) GROUP BY metric, detail, stage_id, from_stage_id"
            " HAVING sum(n) != 0",
            (account_id, pipeline_id, since, since, until, until),
        ).fetchall()
        return [Count(*r) for r in rows]

    def report_activity(
        self,
        account_id: int,
        pipeline_id: int,
        since: str | None,
        until: str | None,
        outcome_stages: list[int],
    ) -> list[tuple[str, str, int, int]]:
        """(slot, metric, stage id, n) per 15-minute slot, for the activity per day or week:
        sends, replies, opt-outs, bounces, and entries into `outcome_stages`."""
        wanted = [*ACTIVITY_METRICS, "entered"]
        return self.conn.execute(
            "SELECT slot, metric, stage_id, sum(n) FROM report_counts"
            " WHERE account_id = ? AND pipeline_id = ?"
            f" AND metric IN ({', '.join('?' * len(wanted))})"
            " AND (? IS NULL OR slot >= ?) AND (? IS NULL OR slot < ?)"
            " AND (metric != 'entered' OR stage_id IN"
            " (SELECT CAST(value AS INTEGER) FROM json_each(?)))"
            " GROUP BY slot, metric, stage_id HAVING sum(n) != 0",
            (
                account_id,
                pipeline_id,
                *wanted,
                since,
                since,
                until,
                until,
                json.dumps(outcome_stages),
            ),
        ).fetchall()

    def report_failed_sends(
        self, account_id: int, pipeline_id: int, since: str | None, until: str | None
    ) -> list[tuple[str, str]]:
        """(channel, performed_at) of the pipeline's sends that failed with nothing sent, in
        the period (stored times): through the index of failed actions, few by nature. A
        bounce (its message went out) is counted as bounced instead."""
        return self.conn.execute(
            "SELECT a.channel, a.performed_at FROM lead_stage_actions a"
            " JOIN enrollments e ON e.id = a.enrollment_id"
            " WHERE a.account_id = ? AND a.status = 'failed' AND a.channel IN ('email', 'sms')"
            " AND e.pipeline_id = ? AND a.performed_at IS NOT NULL"
            " AND (? IS NULL OR a.performed_at >= ?) AND (? IS NULL OR a.performed_at < ?)"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.lead_stage_action_id = a.id)",
            (account_id, pipeline_id, since, since, until, until),
        ).fetchall()

    def report_now(self, account_id: int, pipeline_id: int) -> tuple[int, dict[int, int]]:
        """What is open now: leads queued for the pipeline (not in a stage yet), and leads
        in each stage (all the entries into it less all the exits from it)."""
        queued = self.conn.execute(
            "SELECT count(*) FROM enrollments WHERE status = 'queued' AND account_id = ?"
            " AND pipeline_id = ?",
            (account_id, pipeline_id),
        ).fetchone()[0]
        in_stage = dict(
            self.conn.execute(
                "SELECT stage_id, sum(CASE metric WHEN 'entered' THEN n ELSE -n END)"
                " FROM report_counts WHERE account_id = ? AND pipeline_id = ?"
                " AND metric IN ('entered', 'exited') GROUP BY stage_id",
                (account_id, pipeline_id),
            ).fetchall()
        )
        return queued, in_stage
