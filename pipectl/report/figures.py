"""The report's figures: the store's counters for a period, summed per pipeline and stage,
with the rates a sales team reads. The dict built here is the `--json` shape; the other
formats render it."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ..store import Store
from ..store.funnel_sql import ReportPipeline, ReportStage
from .period import (
    Bound,
    Period,
    bucket_of,
    buckets_between,
    resolve,
    slot_of,
)

CHANNELS = ("email", "sms")
SEND_FIGURES = ("sent", "delivered", "bounced", "undelivered", "failed")
REPLY_KINDS = ("reply", "auto_reply", "opt_out", "bounce", "soft_bounce")
LEAD_FIGURES = ("emailed", "contacted", "replied", "opted_out")
ACTIVITY = ("enrolled", "sent", "replies", "opt_outs", "bounced", "failed", "won", "lost")
FIGURE_OF = {
    "enrolled": "enrolled",
    "sent": "sent",
    "failed": "failed",
    "bounced": "bounced",
    "undelivered": "bounced",
    "reply": "replies",
    "opt_out": "opt_outs",
}


def build_report(
    store: Store,
    *,
    account: str | None = None,
    pipeline: str | None = None,
    since: Bound | None = None,
    until: Bound | None = None,
    by: str = "day",
    now: str,
) -> dict[str, Any]:
    """Every pipeline asked for (all live ones by default), each over its account's period."""
    pipelines = store.funnel.report_pipelines(account, pipeline)
    report: dict[str, Any] = {"generated_at": now, "by": by, "pipelines": [], "unmatched": []}
    seen_accounts: set[int] = set()
    for p in pipelines:
        period = resolve(since, until, p.timezone)
        report["pipelines"].append(_pipeline(store, p, period, by))
        if p.account_id not in seen_accounts:
            seen_accounts.add(p.account_id)
            report["unmatched"].append(_unmatched(store, p, period))
    return report


def _pipeline(store: Store, p: ReportPipeline, period: Period, by: str) -> dict[str, Any]:
    counts = store.funnel.report_totals(p.account_id, p.id, *period.slots())
    queued, in_stage = store.funnel.report_now(p.account_id, p.id)
    stages = store.funnel.report_stages(p.id)
    outcome = {s.id: s.outcome for s in stages}
    failed = store.funnel.report_failed_sends(p.account_id, p.id, *period.times())
    total: Counter[tuple[str, str]] = Counter(("failed", channel) for channel, _ in failed)
    entered: Counter[int] = Counter()
    exited: Counter[int] = Counter()
    moved: dict[int, Counter[int]] = defaultdict(Counter)
    for c in counts:
        total[(c.metric, c.detail)] += c.n
        if c.metric == "entered":
            entered[c.stage_id] += c.n
            if c.from_stage_id:
                moved[c.from_stage_id][c.stage_id] += c.n
        elif c.metric == "exited":
            exited[c.stage_id] += c.n
    won = sum(n for sid, n in entered.items() if outcome.get(sid) == "won")
    lost = sum(n for sid, n in entered.items() if outcome.get(sid) == "lost")
    sends = {
        ch: {f: total[(f, ch)] for f in SEND_FIGURES}
        for ch in CHANNELS
        if any(total[(f, ch)] for f in SEND_FIGURES) or ch == "email"
    }
    replies = {k: sum(n for (m, _), n in total.items() if m == k) for k in REPLY_KINDS}
    leads = {f: total[(f, "")] for f in LEAD_FIGURES}
    all_sent = sum(s["sent"] for s in sends.values())
    all_bounced = sum(s["bounced"] + s["undelivered"] for s in sends.values())
    return {
        "account": p.account,
        "account_name": p.account_name,
        "pipeline": p.key,
        "name": p.name,
        "period": period.as_json(),
        "enrolled": total[("enrolled", "")],
        "queued": queued,
        "stages": _stages(stages, entered, exited, moved, in_stage),
        "sends": sends,
        "replies": replies,
        "leads": leads,
        "won": won,
        "lost": lost,
        "rates": {
            "reply_rate": _rate(leads["replied"], leads["emailed"]),
            "bounce_rate": _rate(all_bounced, all_sent),
            "opt_out_rate": _rate(leads["opted_out"], leads["contacted"]),
            "win_rate": _rate(won, won + lost),
        },
        "activity": _activity(
            store.funnel.report_activity(
                p.account_id, p.id, *period.slots(), [sid for sid, o in outcome.items() if o]
            )
            + [(slot_of(at), "failed", 0, 1) for _, at in failed],
            outcome,
            period,
            by,
        ),
    }


def _stages(
    stages: list[ReportStage],
    entered: Counter[int],
    exited: Counter[int],
    moved: dict[int, Counter[int]],
    in_stage: dict[int, int],
) -> list[dict[str, Any]]:
    """Per stage: entered in the period, in it now, and where those who left went; `ended`
    counts those who left for no stage (stopped, opted out, failed)."""
    key = {s.id: s.key for s in stages}
    out = []
    for s in stages:
        left = {key.get(to, str(to)): n for to, n in sorted(moved[s.id].items()) if n}
        figures = (entered[s.id], in_stage.get(s.id, 0), exited[s.id])
        if s.removed and not any(figures):
            continue
        out.append(
            {
                "stage": s.key,
                "name": s.name,
                "outcome": s.outcome,
                "removed": s.removed,
                "entered": entered[s.id],
                "in_stage_now": in_stage.get(s.id, 0),
                "left": exited[s.id],
                "left_for": left,
                "ended": max(exited[s.id] - sum(left.values()), 0),
            }
        )
    return out


def _activity(
    slots: list[tuple[str, str, int, int]], outcome: dict[int, str | None], period: Period, by: str
) -> list[dict[str, Any]]:
    """Per local day or week in the period: what happened, every bucket from the first with
    activity to the last (empty ones between included), so a far --since or --until costs
    nothing."""
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for slot, metric, stage_id, n in slots:
        figure = outcome.get(stage_id) if metric == "entered" else FIGURE_OF.get(metric)
        if figure:
            rows[bucket_of(slot, by, period.timezone)][figure] += n
    if not rows:
        return []
    first, last = min(rows), max(rows)
    return [
        {"period": label, **{f: rows[label][f] for f in ACTIVITY}}
        for label in buckets_between(first, last, by)
    ]


def _unmatched(store: Store, p: ReportPipeline, period: Period) -> dict[str, Any]:
    """Replies that matched no lead: the account's, counted apart from every pipeline."""
    kinds: Counter[str] = Counter()
    for c in store.funnel.report_totals(p.account_id, 0, *period.slots()):
        kinds[c.metric] += c.n
    return {"account": p.account, **{k: kinds[k] for k in REPLY_KINDS}}


def _rate(part: int, whole: int) -> float | None:
    """A share from 0 to 1, rounded to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None
