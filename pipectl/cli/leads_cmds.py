"""leads import, list, show, stop, enroll."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..durations import format_time, utcnow
from ..errors import CsvError, PipectlError
from ..store.leads_sql import LEAD_STATES
from .app import app, err, is_terminal, open_store, out, print_json

if TYPE_CHECKING:
    from ..leads import InvalidRow, LeadRecord, LeadsFile

leads_app = typer.Typer(help="Import, list, show, stop and enroll leads.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")

MAX_LISTED = 50
TSV_SAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


@leads_app.command("import")
def import_(
    ctx: typer.Context,
    csv_file: Annotated[Path, typer.Argument(metavar="CSV", help="The CSV export (UTF-8).")],
    account: Annotated[str, typer.Option("--account", help="The account the leads belong to.")],
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Queue the leads' enrollment in it.")
    ] = None,
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="Entry stage (default: the first that is not an outcome)."),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", help="Read a column as a field: 'Cell No=phone' (repeatable)."),
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the valid rows, list the rest.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would happen; change nothing.")
    ] = False,
    re_enroll: Annotated[
        bool,
        typer.Option(
            "--re-enroll", help="Restart leads whose enrollment finished (won/lost/idle)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Insert or update leads from a CSV and queue their enrollment; all or nothing.

    Example: pipectl leads import leads.csv --account acme --pipeline adwords --map 'Cell=phone'
    """
    if stage and not pipeline:
        raise typer.BadParameter("--stage needs --pipeline", param_hint="--stage")
    from ..leads import open_leads, parse_map  # phonenumbers loads only for imports

    try:
        mapping = parse_map(maps or [])
    except CsvError as e:  # the option itself is malformed: a usage error (exit 2)
        raise typer.BadParameter(str(e).removeprefix("--map "), param_hint="--map") from None
    store = open_store(ctx)
    acct = store.account_by_key(account)
    pipeline_id = stage_id = None
    if pipeline:
        pipe = store.pipeline_by_key(pipeline)
        if pipe["account_id"] != acct["id"]:
            raise PipectlError(f"pipeline '{pipeline}' does not belong to account '{account}'")
        pipeline_id, stage_id = pipe["id"], store.entry_stage(pipe["id"], stage)["id"]
    leads_file = open_leads(csv_file, country=acct["country"], mapping=mapping)
    records, invalid = _read(leads_file)
    ignored = [
        {"line": rec.line, "field": name, "value": value}
        for rec in records
        if rec.ignored
        for name, value in rec.ignored
    ]
    if invalid and not skip_invalid:
        _print_invalid(invalid)
        error = CsvError(
            f"{leads_file.name}: {len(invalid)} invalid row{'s' * (len(invalid) != 1)};"
            " nothing imported (fix them, or use --skip-invalid to import the valid rows)"
        )
        if as_json:
            print_json(
                {
                    "file": leads_file.name,
                    "dry_run": dry_run,
                    "error": str(error),
                    **_invalid_summary(invalid, ignored),
                }
            )
        raise error
    counts = store.import_leads(
        acct["id"],
        records,
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        re_enroll=re_enroll,
        dry_run=dry_run,
        now=format_time(utcnow()),
    )
    if as_json:
        print_json(
            {
                "file": leads_file.name,
                "dry_run": dry_run,
                **counts.as_dict(),
                **_invalid_summary(invalid, ignored),
            }
        )
        return
    if invalid:
        _print_invalid(invalid)
    prefix = "dry run, nothing changed: " if dry_run else ""
    out.print(
        f"{prefix}{leads_file.name}: {counts.rows} rows; {counts.inserted} inserted,"
        f" {counts.updated} updated, {counts.unchanged} unchanged"
        + (f" ({counts.merged} duplicate rows merged)" if counts.merged else "")
    )
    if pipeline:
        out.print(
            f"{pipeline}: {counts.queued} queued for enrollment"
            + (f" ({counts.re_enrolled} re-enrolled)" if counts.re_enrolled else "")
            + f", {counts.already_enrolled} already enrolled,"
            f" {counts.do_not_contact} do-not-contact not enrolled"
        )
    if invalid:
        lines = ", ".join(str(r.line) for r in invalid[:MAX_LISTED])
        more = f" and {len(invalid) - MAX_LISTED} more" if len(invalid) > MAX_LISTED else ""
        out.print(f"{len(invalid)} invalid rows skipped (lines {lines}{more})")
    if ignored:
        shown = ", ".join(
            f"line {i['line']} {i['field']} {i['value']!r}" for i in ignored[:MAX_LISTED]
        )
        more = f" and {len(ignored) - MAX_LISTED} more" if len(ignored) > MAX_LISTED else ""
        out.print(
            f"{len(ignored)} placeholder value{'s' * (len(ignored) != 1)} ignored, the rest of"
            f" the row imported ({shown}{more})",
            markup=False,
        )


def _invalid_summary(invalid: list[InvalidRow], ignored: list[dict]) -> dict:
    """The invalid rows and ignored placeholder values, as --json shows them."""
    return {
        "invalid": len(invalid),
        "invalid_lines": [r.line for r in invalid],
        "invalid_rows": [{"line": r.line, "reason": r.reason} for r in invalid],
        "ignored": ignored,
    }


def _read(leads_file: LeadsFile) -> tuple[list[LeadRecord], list[InvalidRow]]:
    """Every row of the file, split into valid records and invalid rows."""
    from ..leads import InvalidRow

    records: list[LeadRecord] = []
    invalid: list[InvalidRow] = []
    for item in _with_progress(leads_file):
        if isinstance(item, InvalidRow):
            invalid.append(item)
        else:
            records.append(item)
    return records, invalid


def _with_progress(leads_file: LeadsFile) -> Iterable[LeadRecord | InvalidRow]:
    """The rows, with a progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return leads_file
    return _progress(leads_file)


def _progress(leads_file: LeadsFile) -> Iterator[LeadRecord | InvalidRow]:
    columns = (TextColumn("reading {task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(leads_file.name, total=leads_file.lines)
        for n, item in enumerate(leads_file):
            if n % 2000 == 0:
                progress.update(task, completed=item.line)
            yield item


def _print_invalid(invalid: list[InvalidRow]) -> None:
    for row in invalid[:MAX_LISTED]:
        err.print(str(row), markup=False)
    if len(invalid) > MAX_LISTED:
        err.print(f"... and {len(invalid) - MAX_LISTED} more invalid rows", markup=False)


@leads_app.command("list")
def list_(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only leads in this state (with --pipeline: in it)."),
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only leads enrolled in it.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=2**63 - 1, help="At most this many.")
    ] = 100,
    offset: Annotated[
        int, typer.Option("--offset", min=0, max=2**63 - 1, help="Skip this many first.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Leads with, per pipeline, their current stage and state.

    Example: pipectl leads list --account acme --pipeline adwords --status queued --limit 20
    """
    if status is not None and status not in LEAD_STATES:
        raise typer.BadParameter(
            f"unknown status '{status}'; use one of {', '.join(LEAD_STATES)}", param_hint="--status"
        )
    store = open_store(ctx)
    leads = store.list_leads(
        account_id=store.account_by_key(account)["id"] if account else None,
        status=status,
        pipeline_id=store.pipeline_by_key(pipeline)["id"] if pipeline else None,
        limit=limit,
        offset=offset,
    )
    if as_json:
        print_json(leads)
        return
    header = ("id", "account", "email", "phone", "name", "status", "pipelines")
    lines = [_row(lead) for lead in leads]
    if not is_terminal():
        # Piped: one tab-separated line per lead, nothing cut short, for grep, awk and cut.
        # Written as is: a console would expand the tabs into spaces.
        for line in (header, *lines):
            sys.stdout.write("\t".join(v.translate(TSV_SAFE) for v in line) + "\n")
        return
    table = Table(*header)
    for line in lines:
        table.add_row(*line)
    out.print(table)
    if not leads:
        out.print("no leads match")


def _row(lead: dict) -> tuple[str, ...]:
    pipelines = ", ".join(
        f"{e['pipeline']}/{e['stage']} ({e['state']})" for e in lead["enrollments"]
    )
    status = (lead["status"] or "-") + (" dnc" if lead["do_not_contact"] else "")
    return (
        str(lead["id"]),
        lead["account"],
        lead["email"] or "",
        lead["phone"] or "",
        lead["name"],
        status,
        pipelines,
    )
