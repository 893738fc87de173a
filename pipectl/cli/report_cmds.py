"""status: whether the promises hold, at a glance."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..durations import DurationError, format_time, parse_user_time, utcnow
from ..store.runners_sql import LISTED_IDLE_SECONDS
from ..wording import counted
from .app import app, is_terminal, open_store, out, print_json

NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Evaluate as if at this UTC time, e.g. 2027-03-01T14:00:00Z."),
]


def parse_now(now: str | None) -> str:
    """`--now` in the stored time format; the real time when not given."""
    try:
        return format_time(parse_user_time(now) if now else utcnow())
    except DurationError as e:
        raise typer.BadParameter(str(e), param_hint="--now") from None


@app.command()
def status(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    now: NowOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when there is any warning (for monitoring).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Is anything overdue, failing or held back, and is the tick running? Per account.

    Shows leads by state, actions due now, overdue (more than 2 minutes past due), awaiting
    a reply and failed, lateness p50/p95 of the last hour, each limit's use, channels that
    are failing (their sends held back), each inbox's last successful sync, and the last
    tick; a WARNING when no tick ran for 5 minutes, when actions are overdue, while a
    channel is failing and while an inbox's last sync failed.

    Example: pipectl status --account acme --json
    """
    store = open_store(ctx)
    account_id = store.config.account_by_key(account)["id"] if account else None
    report = store.status.status_report(parse_now(now), account_id)
    if as_json:
        print_json(report)
    else:
        _render(report)
    if check and report["warnings"]:
        raise typer.Exit(1)


def _render(report: dict[str, Any]) -> None:
    terminal = is_terminal()
    tick = report["last_tick"]
    if tick is None:
        out.print(f"now {report['now']}; no tick has run yet", markup=False)
    else:
        out.print(
            f"now {report['now']}; last tick at {tick['now']} ({_ago(tick['age_seconds'])}):"
            f" claimed {tick['claimed']}, done {tick['done']}, retried {tick['retried']},"
            f" failed {tick['failed']}, held back {tick['held_back']},"
            f" admitted {tick['admitted']} in {tick['seconds'] or 0:.2f}s",
            markup=False,
        )
    runners = _runners_line(report["runners"])
    if runners:
        out.print(runners, markup=False)
    for warning in report["warnings"]:
        out.print(f"WARNING: {warning}", style="bold red" if terminal else None, markup=False)
    if not report["accounts"]:
        out.print("no accounts yet: run `pipectl apply pipelines.yaml`")
    for entry in report["accounts"]:
        title = f"{entry['account']} ({entry['name']}): {counted(entry['leads'], 'lead')}"
        lines = _lines(entry)
        if terminal:
            from rich.table import Table  # loads only when a table is drawn

            table = Table(title=title, show_header=False, title_justify="left")
            table.add_column(style="bold")
            table.add_column()
            for label, value in lines:
                table.add_row(label, value)
            out.print(table)
        else:
            out.print("", title, sep="\n", markup=False)
            for label, value in lines:
                out.print(f"  {label}: {value}", markup=False)
    if report["hooks"]:
        out.print("", "hooks", sep="\n", markup=False)
    for hook in report["hooks"]:
        out.print(f"  {hook_line(hook)}", markup=False)


def _runners_line(runners: list[dict[str, Any]]) -> str | None:
    """The runners working or gone quiet, one each; those whose tick finished, in one count
    (cron starts a tick a minute: one line each would bury the live ones). None when the
    last tick's line already says it all: one runner, idle."""
    live = [r for r in runners if r["state"] != "idle"]
    idle = [r for r in runners if r["state"] == "idle"]
    if not live and len(idle) < 2:
        return None
    shown = ", ".join(
        f"{r['host']} pid {r['pid']} {r['state']} (heartbeat {r['heartbeat_at']})" for r in live
    )
    line = f"runners: {shown or 'none working'}"
    if idle:  # which of two ticks stopping in the same second was last cannot be told
        last = max(r["stopped_at"] for r in idle)
        line += (
            f"; {counted(len(idle), 'runner')} idle after a tick in the last"
            f" {LISTED_IDLE_SECONDS // 60} minutes, the last stopped at {last}"
        )
    return line


def hook_line(hook: dict[str, Any]) -> str:
    """A hook's state in one line: events waiting and failed, and why while it fails."""
    scope = f" (account {hook['account']})" if hook["account"] else ""
    state = f"{hook['waiting']} waiting, {hook['failed']} failed"
    if hook["oldest_waiting"]:
        state += f" (oldest from {hook['oldest_waiting']})"
    if hook["last_error"]:
        state += f"; FAILING since {hook['failing_since']}: {hook['last_error']}"
    elif hook["last_delivered_at"]:
        state += f"; last delivered {hook['last_delivered_at']}"
    return f"{hook['url']}{scope}: {state}"


def _lines(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The account's status as (label, value) pairs: table rows, or lines when piped."""
    a, late, limits = entry["actions"], entry["lateness"], entry["limits"]
    lines = [("leads", _counts(entry["leads_by_state"]) or "none")]
    lines += [(f"  {p}", _counts(states)) for p, states in entry["pipelines"].items()]
    if entry["do_not_contact"]:
        lines.append(("do not contact", str(entry["do_not_contact"])))
    lines.append(
        (
            "actions",
            f"due now {a['due_now']}, overdue {a['overdue']}, running {a['running']},"
            f" awaiting reply {a['awaiting_reply']}, failed {a['failed']}",
        )
    )
    if late["performed"]:
        lateness = f"p50 {late['p50_seconds']}s, p95 {late['p95_seconds']}s"
        lines.append(("lateness", f"{lateness} ({late['performed']} performed in the last hour)"))
    else:
        lines.append(("lateness", "nothing performed in the last hour"))
    conc, active = limits["concurrency"], limits["active_leads"]
    use = [f"concurrency {conc['used']}/{conc['limit']}"]
    use.append(
        f"active leads {active['used']}/{active['limit'] if active['limit'] else 'no limit'}"
        + (f" ({active['queued']} queued)" if active["queued"] else "")
    )
    use += [
        f"{name} {r['used']}/{r['limit']} per {_period(r['window_seconds'])}"
        for name, r in limits["rates"].items()
    ]
    lines.append(("limits", ", ".join(use)))
    if a.get("waiting_for_sender"):
        opens = entry["senders"][0]["next_day_at"]
        lines.append(
            (
                "waiting for a sender",
                f"{counted(a['waiting_for_sender'], 'email')} due: their senders have reached"
                f" today's cap; they go when the next day opens, at {opens}",
            )
        )
    for sender in entry.get("senders", []):
        lines.append((f"sender {sender['sender']}", _sender_use(sender)))
    for f in entry["failing_channels"]:
        lines.append(
            (
                f"{f['channel']} failing",
                f"since {f['since']}, {counted(f['held_back'], 'send')} held back, last tried"
                f" {f['last_probe_at']}: {f['error']}",
            )
        )
    for s in entry.get("inbound", []):
        synced = f"last synced {s['last_success_at'] or 'never'}"
        state = (
            f"FAILING since {s['failing_since']}: {s['last_error']}" if s["last_error"] else "ok"
        )
        lines.append((f"inbound {s['kind']}", f"{s['name']}: {synced}; {state}"))
    return lines


def _sender_use(sender: dict[str, Any]) -> str:
    """`5/20 today (warm-up day 2: 10 + 10 a day, up to 300), 12 leads`."""
    use = f"{sender['sent_today']}/{sender['cap_today']} today"
    warmup = sender["warmup"]
    if warmup:
        use += (
            f" (warm-up day {warmup['day']}: {warmup['start']} + {warmup['step']} a day,"
            f" up to {sender['daily_limit']})"
        )
    use += f", {counted(sender['leads'], 'lead')}"
    return use + (" (removed from the YAML: its leads move on)" if sender["removed"] else "")


def _counts(states: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in states.items())


def _period(seconds: int) -> str:
    names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    return names.get(seconds, f"{seconds}s")


def _ago(seconds: int) -> str:
    if seconds < 0:
        return "later than now"
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60} minutes ago"
    return f"{seconds // 3600} hours ago"
