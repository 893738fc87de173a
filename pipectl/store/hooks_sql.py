"""Webhooks: the hooks from the YAML, events written beside the change they describe, and
what `status` shows of them (their delivery: `hook_delivery_sql.py`).

`emit` runs inside the caller's transaction (a reply, a stage entered, an action failed), so
an event exists exactly when its change does. With no hook configured it costs one cached
lookup: the tick's hot path stays as it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..durations import format_time, utcnow
from ..errors import NotFound
from ..statuses import HookEvent
from .database import Part

if TYPE_CHECKING:
    from ..config.model import Hook
    from .config_plan import Plan

REMOVED_ERROR = "the hook was removed from the YAML before this event was delivered"


@dataclass(frozen=True)
class LiveHook:
    """What `emit` needs of a hook, cached: which events of which account it takes."""

    id: int
    account_id: int | None
    events: frozenset[str]


def hook_name(url: str, account: str | None) -> str:
    """A hook in the plan and in `status`: its URL as written (with its ${VAR}s)."""
    return f"{url} (account {account})" if account else url


class HooksSQL(Part):
    """Hooks, the events outbox, and what the tick and `status` read of them."""

    # --- the YAML's hooks (inside `apply`'s transaction) --------------------------------

    def apply_hooks(
        self, hooks: Iterable[Hook], account_ids: dict[str, int], plan: Plan, now: str
    ) -> None:
        """Match hooks by (url, account); a hook gone from the YAML is removed and its
        undelivered events fail (naming why)."""
        existing = {
            (r["url"], r["account_id"]): r
            for r in self.conn.execute("SELECT * FROM hooks WHERE removed_at IS NULL").fetchall()
        }
        for hook in hooks:
            account_id = account_ids.get(hook.account) if hook.account else None
            values = {
                "events": json.dumps(list(hook.events)),
                "secret": hook.secret or None,
                "headers": json.dumps(hook.headers, sort_keys=True),
                "timeout": hook.timeout,
                "retry": json.dumps(asdict(hook.retry), sort_keys=True),
            }
            row = existing.pop((hook.url, account_id), None)
            name = hook_name(hook.url, hook.account)
            if row is None:
                self.conn.execute(
                    "INSERT INTO hooks (account_id, url, events, secret, headers, timeout, retry,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account_id, hook.url, *values.values(), now, now),
                )
                plan.add("hook", name, "created", ", ".join(hook.events))
                continue
            changed = [k for k, v in values.items() if row[k] != v]
            if changed:
                sets = ", ".join(f"{k} = ?" for k in values)
                self.conn.execute(
                    f"UPDATE hooks SET {sets}, updated_at = ? WHERE id = ?",
                    (*values.values(), now, row["id"]),
                )
            plan.add("hook", name, "changed" if changed else "unchanged", ", ".join(changed))
        for row in existing.values():
            self.conn.execute("UPDATE hooks SET removed_at = ? WHERE id = ?", (now, row["id"]))
            self.conn.execute(
                "UPDATE hook_events SET status = 'failed', last_error = ?"
                " WHERE hook_id = ? AND status = 'pending'",
                (REMOVED_ERROR, row["id"]),
            )
            account = self._account_key(row["account_id"]) if row["account_id"] else None
            plan.add("hook", hook_name(row["url"], account), "removed")
        self.forget()

    def forget(self) -> None:
        """Drop the cached hooks: `apply` may have changed them since."""
        self.__dict__.pop("_live_hooks", None)
        self.__dict__.pop("_account_keys", None)

    def _live(self) -> list[LiveHook]:
        if "_live_hooks" not in self.__dict__:
            self.__dict__["_live_hooks"] = [
                LiveHook(r["id"], r["account_id"], frozenset(json.loads(r["events"])))
                for r in self.conn.execute(
                    "SELECT id, account_id, events FROM hooks WHERE removed_at IS NULL ORDER BY id"
                )
            ]
        return self.__dict__["_live_hooks"]

    # --- events (inside the caller's transaction) ---------------------------------------

    def emit(
        self,
        event: HookEvent,
        lead_id: int,
        now: str,
        *,
        lead_stage_id: int | None = None,
        enrollment_id: int | None = None,
        reply_id: int | None = None,
    ) -> None:
        """Queue `event` about a lead for every hook that takes it: one payload, one id.
        `lead_stage_id` (else `enrollment_id`'s open stage, else the lead's latest
        enrollment) names the pipeline and stage; `reply_id` the reply it is about."""
        hooks = [h for h in self._live() if event in h.events]
        if not hooks:
            return
        lead = self.conn.execute(
            "SELECT id, account_id, email, phone, first_name, last_name, fields, status"
            " FROM leads WHERE id = ?",
            (lead_id,),
        ).fetchone()
        hooks = [h for h in hooks if h.account_id in (None, lead["account_id"])]
        if not hooks:
            return
        pipeline, stage = self._where(lead_id, lead_stage_id, enrollment_id)
        event_id = str(uuid.uuid4())
        payload = json.dumps(
            {
                "id": event_id,
                "type": str(event),
                "occurred_at": now,
                "account": self._account_key(lead["account_id"]),
                "pipeline": pipeline,
                "stage": stage,
                "lead": {
                    "id": lead["id"],
                    "email": lead["email"],
                    "phone": lead["phone"],
                    "first_name": lead["first_name"],
                    "last_name": lead["last_name"],
                    "fields": json.loads(lead["fields"] or "{}"),
                    "status": lead["status"],
                },
                "reply": self._reply(reply_id) if reply_id is not None else None,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        created = format_time(utcnow())
        # Only to hooks still in the YAML: `apply` in another process may have removed one
        # since this process read them.
        self.conn.executemany(
            "INSERT INTO hook_events (event_id, hook_id, type, account_id, lead_id, payload,"
            " created_at) SELECT ?, id, ?, ?, ?, ?, ? FROM hooks"
            " WHERE id = ? AND removed_at IS NULL",
            [(event_id, str(event), lead["account_id"], lead_id, payload, created, h.id)
             for h in hooks],
        )  # fmt: skip

    def _where(
        self, lead_id: int, lead_stage_id: int | None, enrollment_id: int | None
    ) -> tuple[str | None, str | None]:
        """(pipeline key, stage key) of the event."""
        if lead_stage_id is None:
            if enrollment_id is None:
                row = self.conn.execute(
                    "SELECT id FROM enrollments WHERE lead_id = ? ORDER BY id DESC LIMIT 1",
                    (lead_id,),
                ).fetchone()
                if row is None:
                    return None, None
                enrollment_id = row[0]
            row = self.conn.execute(
                "SELECT id FROM lead_stages WHERE enrollment_id = ? ORDER BY id DESC LIMIT 1",
                (enrollment_id,),
            ).fetchone()
            if row is None:  # queued: in the pipeline, in no stage yet
                row = self.conn.execute(
                    "SELECT p.key FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
                    " WHERE e.id = ?",
                    (enrollment_id,),
                ).fetchone()
                return row[0], None
            lead_stage_id = row[0]
        row = self.conn.execute(
            "SELECT p.key AS pipeline, s.key AS stage FROM lead_stages ls"
            " JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
            " JOIN pipelines p ON p.id = s.pipeline_id WHERE ls.id = ?",
            (lead_stage_id,),
        ).fetchone()
        return row["pipeline"], row["stage"]

    def _reply(self, reply_id: int) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT id, channel, kind, sender, subject, body, received_at, source"
            " FROM replies WHERE id = ?",
            (reply_id,),
        ).fetchone()
        return dict(row)

    def _account_key(self, account_id: int) -> str:
        keys = self.__dict__.setdefault("_account_keys", {})
        if account_id not in keys:
            keys[account_id] = self.conn.execute(
                "SELECT key FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()[0]
        return keys[account_id]

    # --- for the tick and the operator ---------------------------------------------------

    def any_live(self) -> bool:
        """Is any hook configured? (cached; `forget` reads again)"""
        return bool(self._live())

    def retry_failed(self, url: str | None = None) -> int:
        """Events that failed for good go again, oldest first, with fresh attempts (those of
        the hook with this URL as written, else of every hook still in the YAML)."""
        with self.transaction():
            hooks = [
                r[0]
                for r in self.conn.execute(
                    "SELECT id FROM hooks WHERE removed_at IS NULL"
                    + (" AND url = ?" if url is not None else "")
                    + " ORDER BY id",
                    (url,) if url is not None else (),
                )
            ]
            if url is not None and not hooks:
                raise NotFound(f"no hook has the url {url!r} (see pipectl hooks list)")
            return sum(
                self.conn.execute(
                    "UPDATE hook_events SET status = 'pending', attempts = 0,"
                    " next_attempt_at = NULL, last_error = NULL"
                    " WHERE hook_id = ? AND status = 'failed'",
                    (hook_id,),
                ).rowcount
                for hook_id in hooks
            )

    # --- what `status` and `hooks list` show --------------------------------------------

    def hooks_status(self, account_id: int | None = None) -> list[dict[str, Any]]:
        """Each live hook (of one account, with those of every account), with its events
        waiting and failed, the oldest waiting, and its last error while it fails."""
        out = []
        where, params = "", tuple[int, ...]()
        if account_id is not None:
            where, params = " AND (h.account_id IS NULL OR h.account_id = ?)", (account_id,)
        for hook in self.conn.execute(
            "SELECT h.*, a.key AS account FROM hooks h LEFT JOIN accounts a ON a.id = h.account_id"
            f" WHERE h.removed_at IS NULL{where} ORDER BY h.id",
            params,
        ).fetchall():
            waiting = self.conn.execute(
                "SELECT count(*), min(created_at) FROM hook_events"
                " WHERE hook_id = ? AND status = 'pending'",
                (hook["id"],),
            ).fetchone()
            failed = self.conn.execute(
                "SELECT count(*) FROM hook_events WHERE hook_id = ? AND status = 'failed'",
                (hook["id"],),
            ).fetchone()[0]
            out.append(
                {
                    "id": hook["id"],
                    "url": hook["url"],
                    "account": hook["account"],
                    "events": json.loads(hook["events"]),
                    "waiting": waiting[0],
                    "oldest_waiting": waiting[1],
                    "failed": failed,
                    "last_error": hook["last_error"],
                    "failing_since": hook["failing_since"],
                    "last_delivered_at": hook["last_delivered_at"],
                }
            )
        return out
