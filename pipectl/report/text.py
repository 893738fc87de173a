"""The report for people: rich tables and bars on a terminal, plain lines when piped."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 40


def percent(rate: float | None) -> str:
    """`12.5%`, or `-` when the rate has no denominator."""
    return "-" if rate is None else f"{rate * 100:.1f}%"


def period_label(entry: dict[str, Any]) -> str:
    p = entry["period"]
    since, until = p["since"] or "the start", p["until"] or "now"
    return f"{since} to {until} (days in {p['timezone']})"


def rate_lines(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """Each rate with what it divides, so nobody has to guess the definition."""
    r, leads = entry["rates"], entry["leads"]
    sent = sum(s["sent"] for s in entry["sends"].values())
    bounced = sum(s["bounced"] + s["undelivered"] for s in entry["sends"].values())
    closed = entry["won"] + entry["lost"]
    return [
        ("reply rate", f"{percent(r['reply_rate'])} ({leads['replied']:,} of"
         f" {leads['emailed']:,} leads emailed replied)"),
        ("bounce rate", f"{percent(r['bounce_rate'])} ({bounced:,} of {sent:,} sends)"),
        ("opt-out rate", f"{percent(r['opt_out_rate'])} ({leads['opted_out']:,} of"
         f" {leads['contacted']:,} leads contacted)"),
        ("win rate", f"{percent(r['win_rate'])} ({entry['won']:,} won of {closed:,} closed)"),
    ]  # fmt: skip


def summary_lines(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The pipeline as (label, value) pairs: plain lines, or a table's rows."""
    lines = [("enrolled", f"{entry['enrolled']} ({entry['queued']} queued now)")]
    for s in entry["stages"]:
        where = [f"to {to} {n}" for to, n in s["left_for"].items()]
        where += [f"ended {s['ended']}"] if s["ended"] else []
        left = f"left {s['left']}" + (f" ({', '.join(where)})" if where else "")
        lines.append(
            (f"stage {s['stage']}", f"entered {s['entered']}, now {s['in_stage_now']}, {left}")
        )
    for channel, f in entry["sends"].items():
        lines.append(
            (
                channel,
                f"sent {f['sent']}, delivered {f['delivered']}, bounced {f['bounced']},"
                f" undelivered {f['undelivered']}, failed {f['failed']}",
            )
        )
    rp = entry["replies"]
    lines.append(
        (
            "inbound",
            f"replies {rp['reply']}, auto-replies {rp['auto_reply']}, opt-outs {rp['opt_out']},"
            f" bounces {rp['bounce']}, soft bounces {rp['soft_bounce']}",
        )
    )
    lines.append(("outcomes", f"won {entry['won']}, lost {entry['lost']}"))
    return lines + rate_lines(entry)


def activity_line(row: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', '-')} {row[k]}" for k in row if k != "period")


def render_plain(report: dict[str, Any], console: Console) -> None:
    """One line per figure, for pipes, grep and cron mail."""
    if not report["pipelines"]:
        console.print("no pipelines yet: run `pipectl apply pipelines.yaml`", markup=False)
    for i, entry in enumerate(report["pipelines"]):
        if i:
            console.print("", markup=False)
        console.print(
            f"{entry['account']}/{entry['pipeline']} ({entry['name']}): {period_label(entry)}",
            markup=False,
        )
        for label, value in summary_lines(entry):
            console.print(f"  {label}: {value}", markup=False)
        for row in entry["activity"]:
            console.print(f"  {report['by']} {row['period']}: {activity_line(row)}", markup=False)
    for u in report["unmatched"]:
        if any(v for k, v in u.items() if k != "account"):
            console.print(f"unmatched replies ({u['account']}): {_kinds(u)}", markup=False)


def render_terminal(report: dict[str, Any], console: Console) -> None:
    """Per pipeline: the figures, the funnel as bars, and the activity per day or week."""
    if not report["pipelines"]:
        console.print("no pipelines yet: run `pipectl apply pipelines.yaml`")
    for entry in report["pipelines"]:
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        for label, value in summary_lines(entry):
            table.add_row(label, value)
        title = f"{entry['account']}/{entry['pipeline']} ({entry['name']})"
        parts: list[Any] = [Text(period_label(entry), style="dim"), table, Text("")]
        parts.append(Text("funnel: leads that entered each stage", style="bold"))
        parts.append(_bars([(s["stage"], s["entered"]) for s in entry["stages"]], "cyan"))
        if entry["activity"]:
            parts.append(Text(f"activity per {report['by']}: sent / replies", style="bold"))
            parts.append(_activity_bars(entry["activity"]))
        console.print(Panel(Group(*parts), title=title, title_align="left"))
    for u in report["unmatched"]:
        if any(v for k, v in u.items() if k != "account"):
            console.print(f"unmatched replies ({u['account']}): {_kinds(u)}")


def _bars(rows: list[tuple[str, int]], style: str) -> Table:
    top = max((n for _, n in rows), default=0) or 1
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column()
    table.add_column()
    table.add_column(justify="right")
    for label, n in rows:
        table.add_row(label, Text("█" * round(BAR_WIDTH * n / top), style=style), str(n))
    return table


def _activity_bars(activity: list[dict[str, Any]]) -> Table:
    top = max((max(r["sent"], r["replies"]) for r in activity), default=0) or 1
    table = Table(show_header=False, box=None, pad_edge=False)
    for _ in range(3):
        table.add_column()
    for r in activity:
        bars = Text("█" * round(BAR_WIDTH * r["sent"] / top), style="cyan")
        bars.append("\n" + "█" * round(BAR_WIDTH * r["replies"] / top), style="green")
        table.add_row(r["period"], bars, f"{r['sent']}\n{r['replies']}")
    return table


def _kinds(u: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', '-')} {v}" for k, v in u.items() if k != "account")
