"""Read-only reports: one lead's timeline (`leads show`), actions by status (`actions list`).

`status` is `status_sql.py`'s.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import PipectlError
from ..statuses import ActionStatus, values
from .database import Part

ACTION_STATUSES = values(ActionStatus)
KIND_NAMES = {"opt_out": "opt-out", "auto_reply": "auto-reply", "soft_bounce": "soft bounce"}


class ReportsSQL(Part):
    """Read-only reports: lead timelines, action lists."""

    # --- one lead -----------------------------------------------------------------------

    def lead_timeline(self, ref: str, *, account_key: str | None = None) -> dict[str, Any]:
        """One lead with, per enrollment, its stages, actions and deliveries, and its replies;
        `timeline` lists all of it in time order."""
        lead = self.store.replies.resolve_lead(ref, account_key=account_key)
        account = self.conn.execute(
            "SELECT key FROM accounts WHERE id = ?", (lead["account_id"],)
        ).fetchone()
        result: dict[str, Any] = {
            "id": lead["id"],
            "account": account["key"],
            "email": lead["email"],
            "phone": lead["phone"],
            "first_name": lead["first_name"],
            "last_name": lead["last_name"],
            "timezone": lead["timezone"],
            "status": lead["status"],
            "do_not_contact": bool(lead["do_not_contact"]),
            "sender": self._sender_of(lead["sender_id"]),
            "fields": json.loads(lead["fields"] or "{}"),
            "created_at": lead["created_at"],
            "updated_at": lead["updated_at"],
            "enrollments": [],
            "replies": [],
        }
        deliveries: dict[int, list[dict[str, Any]]] = {}
        for d in self.conn.execute(
            "SELECT lead_stage_action_id, channel, recipient, message_id, provider_id, sent_at"
            " FROM deliveries WHERE lead_stage_action_id IN"
            " (SELECT a.id FROM lead_stages ls JOIN lead_stage_actions a"
            " ON a.lead_stage_id = ls.id WHERE ls.lead_id = ?) ORDER BY sent_at, id",
            (lead["id"],),
        ):
            deliveries.setdefault(d["lead_stage_action_id"], []).append(
                {k: v for k, v in dict(d).items() if k != "lead_stage_action_id"}
            )
        actions: dict[int, list[dict[str, Any]]] = {}
        for a in self.conn.execute(
            "SELECT id, lead_stage_id, sequence_number, type, status, perform_at, due_at,"
            " claimed_at, performed_at, attempts, last_error FROM lead_stage_actions"
            " WHERE lead_stage_id IN (SELECT id FROM lead_stages WHERE lead_id = ?)"
            " ORDER BY lead_stage_id, sequence_number",
            (lead["id"],),
        ):
            action = {k: v for k, v in dict(a).items() if k != "lead_stage_id"}
            action["deliveries"] = deliveries.get(a["id"], [])
            actions.setdefault(a["lead_stage_id"], []).append(action)
        stages: dict[int, list[dict[str, Any]]] = {}
        for s in self.conn.execute(
            "SELECT ls.id, ls.enrollment_id, s.key, s.name, s.outcome, ls.entered_at,"
            " ls.exited_at FROM lead_stages ls JOIN pipeline_stages s"
            " ON s.id = ls.pipeline_stage_id WHERE ls.lead_id = ? ORDER BY ls.id",
            (lead["id"],),
        ):
            stages.setdefault(s["enrollment_id"], []).append(
                {
                    "stage": s["key"],
                    "name": s["name"],
                    "outcome": s["outcome"],
                    "entered_at": s["entered_at"],
                    "exited_at": s["exited_at"],
                    "actions": actions.get(s["id"], []),
                }
            )
        for e in self.conn.execute(
            "SELECT e.id, p.key AS pipeline, e.status, e.queued_at, e.started_at,"
            " e.finished_at FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
            " WHERE e.lead_id = ? ORDER BY e.id",
            (lead["id"],),
        ):
            result["enrollments"].append(
                {
                    "pipeline": e["pipeline"],
                    "state": e["status"],
                    "queued_at": e["queued_at"],
                    "started_at": e["started_at"],
                    "finished_at": e["finished_at"],
                    "stages": stages.get(e["id"], []),
                }
            )
        result["replies"] = [
            {**dict(r), "opt_out": bool(r["opt_out"])}
            for r in self.conn.execute(
                "SELECT received_at, channel, kind, sender, source, body, opt_out, effect"
                " FROM replies"
                " WHERE lead_id = ? ORDER BY received_at, id",
                (lead["id"],),
            )
        ]
        result["timeline"] = _timeline(result)
        return result

    # --- actions ------------------------------------------------------------------------

    def _sender_of(self, sender_id: int | None) -> str | None:
        """The mailbox a lead's emails come from (its `from` as written), if it has one."""
        if sender_id is None:
            return None
        row = self.conn.execute(
            "SELECT sender, removed_at FROM senders WHERE id = ?", (sender_id,)
        ).fetchone()
        if row is None:
            return None
        return row["sender"] + (" (removed: the next email moves)" if row["removed_at"] else "")

    def list_actions(
        self, *, status: str | None = None, account_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Actions of one status (newest first), with their lead, pipeline and stage."""
        if status is not None and status not in ACTION_STATUSES:
            raise PipectlError(
                f"unknown status '{status}'; use one of {', '.join(ACTION_STATUSES)}"
            )
        rows = self.conn.execute(
            "SELECT a.id, acc.key AS account, a.lead_id, l.email, l.phone, p.key AS pipeline,"
            " s.key AS stage, a.sequence_number, a.type, a.channel, a.status, a.perform_at,"
            " a.performed_at, a.attempts, a.last_error"
            " FROM lead_stage_actions a JOIN leads l ON l.id = a.lead_id"
            " JOIN accounts acc ON acc.id = a.account_id"
            " JOIN lead_stages ls ON ls.id = a.lead_stage_id"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " JOIN pipelines p ON p.id = s.pipeline_id"
            " WHERE (? IS NULL OR a.status = ?) AND (? IS NULL OR a.account_id = ?)"
            " ORDER BY a.id DESC LIMIT ?",
            (status, status, account_id, account_id, limit),
        ).fetchall()
        return [dict(r) for r in rows]


def _timeline(lead: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dated event of the lead, oldest first: a readable history."""
    events: list[dict[str, Any]] = []

    def add(at: str | None, pipeline: str | None, event: str) -> None:
        if at:
            events.append({"at": at, "pipeline": pipeline, "event": event})

    for e in lead["enrollments"]:
        p = e["pipeline"]
        add(e["queued_at"], p, "queued for enrollment")
        for s in e["stages"]:
            add(s["entered_at"], p, f"entered stage {s['stage']}")
            for a in s["actions"]:
                what = f"action {a['id']} {a['type']}"
                for d in a["deliveries"]:
                    sent = f"{what}: sent to {d['recipient']}"
                    if d["message_id"]:  # what the lead's mail server and replies refer to
                        sent += f", Message-ID {d['message_id']}"
                    if d["provider_id"]:
                        sent += f", provider id {d['provider_id']}"
                    add(d["sent_at"], p, sent)
                if a["status"] == ActionStatus.FAILED:
                    add(a["performed_at"], p, f"{what}: failed: {a['last_error']}")
                elif a["status"] == ActionStatus.DONE and not a["deliveries"]:
                    add(a["performed_at"], p, f"{what}: done")
            add(s["exited_at"], p, f"left stage {s['stage']}")
        if e["finished_at"]:
            add(e["finished_at"], p, f"finished: {e['state']}")
    for r in lead["replies"]:
        kind = KIND_NAMES.get(r["kind"], r["kind"])
        add(r["received_at"], None, f"{kind} by {r['channel']}: {r['effect']}")
    events.sort(key=lambda ev: ev["at"])  # stable: same-time events keep their order
    return events
