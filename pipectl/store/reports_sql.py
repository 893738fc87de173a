"""Read-only reports: status per account."""

from __future__ import annotations

import sqlite3
from typing import Any

NOT_ENROLLED = "not_enrolled"


class ReportsSQL:
    """Read-only reports: status per account."""

    conn: sqlite3.Connection

    def status_report(self, account_id: int | None = None) -> list[dict[str, Any]]:
        """Per account: leads by state (the lead's latest enrollment) and per pipeline."""
        accounts = self.conn.execute(
            "SELECT id, key, name FROM accounts WHERE ? IS NULL OR id = ? ORDER BY key",
            (account_id, account_id),
        ).fetchall()
        report = []
        for account in accounts:
            leads = {
                (state or NOT_ENROLLED): n
                for state, n in self.conn.execute(
                    "SELECT status, count(*) FROM leads WHERE account_id = ?"
                    " GROUP BY status ORDER BY status",
                    (account["id"],),
                )
            }
            pipelines: dict[str, dict[str, int]] = {}
            for key, state, n in self.conn.execute(
                "SELECT p.key, e.status, count(*) FROM enrollments e"
                " JOIN pipelines p ON p.id = e.pipeline_id WHERE e.account_id = ?"
                " GROUP BY p.key, e.status ORDER BY p.key, e.status",
                (account["id"],),
            ):
                pipelines.setdefault(key, {})[state] = n
            do_not_contact = self.conn.execute(
                "SELECT count(*) FROM leads WHERE account_id = ? AND do_not_contact = 1",
                (account["id"],),
            ).fetchone()[0]
            report.append(
                {
                    "account": account["key"],
                    "name": account["name"],
                    "leads": sum(leads.values()),
                    "leads_by_state": leads,
                    "do_not_contact": do_not_contact,
                    "pipelines": pipelines,
                }
            )
        return report
