"""report: how each pipeline is doing, on a terminal, piped, as JSON, CSV or an HTML page."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ..durations import format_time, utcnow
from ..errors import PipectlError
from ..report.period import Bound, PeriodError, parse_bound
from .app import app, err, is_terminal, open_store, out, print_json

if TYPE_CHECKING:
    from rich.console import Console


class By(StrEnum):
    day = "day"
    week = "week"


def _bound(text: str | None, option: str) -> Bound | None:
    if text is None:
        return None
    try:
        return parse_bound(text, option)
    except PeriodError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


@app.command()
def report(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only this pipeline (its key).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="From this date (midnight in the account's time zone) or time, e.g."
            " 2027-03-01 or 2027-03-01T14:00:00Z.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Up to this date (the whole day included) or time (excluded)."
        ),
    ] = None,
    by: Annotated[By, typer.Option("--by", help="Activity per day or week.")] = By.day,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one figure a row.")] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Write a self-contained HTML page (charts inline) here."),
    ] = None,
) -> None:
    """How each pipeline is doing over a period: enrolled, the funnel, sends, replies, rates.

    Per pipeline: leads enrolled; per stage, how many entered, are in it now and left for
    which stage; sends per channel (delivered, bounced, failed); replies, auto-replies and
    opt-outs; won and lost; reply, bounce, opt-out and win rates. Days and weeks are read in
    the account's time zone.

    Example: pipectl report --pipeline adwords --since 2027-03-01 --by week --html report.html
    """
    if as_json and as_csv:
        raise typer.BadParameter("use one of --json and --csv", param_hint="--json/--csv")
    start, end = _bound(since, "--since"), _bound(until, "--until")
    if start and end and _sorts_after(start, end):
        raise typer.BadParameter(f"--since {since} is after --until {until}", param_hint="--until")
    store = open_store(ctx)
    # Loaded here, not at import: rich and the renderers cost every other command's start.
    from ..report.figures import build_report
    from ..report.html import html_page
    from ..report.tabular import csv_text
    from ..report.text import render_plain, render_terminal

    result = build_report(
        store,
        account=account,
        pipeline=pipeline,
        since=start,
        until=end,
        by=by.value,
        now=format_time(utcnow()),
    )
    if html is not None:
        try:
            html.write_text(html_page(result), encoding="utf-8")
        except OSError as e:
            raise PipectlError(f"{html}: cannot write the report: {e.strerror}") from None
        err.print(f"wrote {html}", markup=False)
    if as_json:
        print_json(result)
    elif as_csv:
        sys.stdout.write(csv_text(result))
    elif html is None:
        (render_terminal if is_terminal() else render_plain)(result, cast("Console", out))


def _sorts_after(since: Bound, until: Bound) -> bool:
    """A --since later than --until (compared as given; a date against a time by its day)."""
    a = since.day.isoformat() if since.day else format_time(since.at)  # type: ignore[arg-type]
    b = until.day.isoformat() if until.day else format_time(until.at)  # type: ignore[arg-type]
    if since.day or until.day:
        a, b = a[:10], b[:10]
        return a > b
    return a >= b
