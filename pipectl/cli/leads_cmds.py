"""leads import, list, show, stop, enroll."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from ..defaults import MAX_LISTED
from ..durations import format_time, utcnow
from ..errors import CsvError, PipectlError
from ..store.leads_sql import LEAD_STATES, NOT_ENROLLED
from ..wording import counted
from .app import app, err, is_terminal, open_store, out, print_json

if TYPE_CHECKING:
    from ..lead_report import RowReport
    from ..leads import InvalidRow, LeadRecord, LeadsFile
    from ..store.lead_import_sql import ImportCounts

leads_app = typer.Typer(help="Import, list, show, stop and enroll leads.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


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
        typer.Option(
            "--map",
            help="Read a column as a field: 'Cell No=phone', 'Blocked=do_not_contact'"
            " (or email_opt_out, sms_opt_out, custom); repeatable.",
        ),
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
    from ..lead_columns import parse_map
    from ..lead_report import InvalidRows, RowReport, valid_records
    from ..leads import open_leads

    try:
        mapping = parse_map(maps or [])
    except CsvError as e:  # the option itself is malformed: a usage error (exit 2)
        raise typer.BadParameter(str(e).removeprefix("--map "), param_hint="--map") from None
    store = open_store(ctx)
    acct = store.config.account_by_key(account)
    pipeline_id = stage_id = None
    if pipeline:
        pipe = store.config.pipeline_by_key(pipeline)
        if pipe["account_id"] != acct["id"]:
            raise PipectlError(f"pipeline '{pipeline}' does not belong to account '{account}'")
        pipeline_id, stage_id = pipe["id"], store.enrollment.entry_stage(pipe["id"], stage)["id"]
    leads_file = open_leads(csv_file, country=acct["country"], mapping=mapping)
    with leads_file, RowReport() as report:
        records = valid_records(
            _with_progress(leads_file), report, skip_invalid=skip_invalid, name=leads_file.name
        )
        head = {"file": leads_file.name, "dry_run": dry_run}
        try:
            counts = store.lead_import.import_leads(
                acct["id"],
                records,
                pipeline_id=pipeline_id,
                stage_id=stage_id,
                re_enroll=re_enroll,
                dry_run=dry_run,
                now=format_time(utcnow()),
            )
        except InvalidRows as e:  # nothing was imported: the rows that say why, then exit 1
            _print_invalid(report)
            if as_json:
                _print_report({**head, "error": str(e)}, report)
            raise
        if as_json:
            _print_report({**head, **counts.as_dict()}, report)
        else:
            _print_summary(leads_file.name, pipeline, dry_run, counts, report)


def _print_summary(
    name: str, pipeline: str | None, dry_run: bool, counts: ImportCounts, report: RowReport
) -> None:
    if report.invalid:
        _print_invalid(report)
    prefix = "dry run, nothing changed: " if dry_run else ""
    out.print(
        f"{prefix}{name}: {counted(counts.rows, 'row')}; {counts.inserted} inserted,"
        f" {counts.updated} updated, {counts.unchanged} unchanged"
        + (f" ({counted(counts.merged, 'duplicate row')} merged)" if counts.merged else ""),
        markup=False,
    )
    if pipeline:
        out.print(
            f"{pipeline}: {counts.queued} queued for enrollment"
            + (f" ({counts.re_enrolled} re-enrolled)" if counts.re_enrolled else "")
            + f", {counts.already_enrolled} already enrolled,"
            f" {counts.do_not_contact} do-not-contact not enrolled",
            markup=False,
        )
    if counts.email_opt_out or counts.sms_opt_out:
        out.print(
            f"opted out of one channel: {counts.email_opt_out} of email (texts only),"
            f" {counts.sms_opt_out} of texts (email only)",
            markup=False,
        )
    if report.invalid:
        lines = ", ".join(str(r.line) for r in report.first_invalid)
        more = f" and {report.invalid - MAX_LISTED} more" if report.invalid > MAX_LISTED else ""
        out.print(f"{counted(report.invalid, 'invalid row')} skipped (lines {lines}{more})")
    if report.ignored:
        shown = ", ".join(
            f"line {line} {name} {value!r}" for line, name, value in report.first_ignored
        )
        more = f" and {report.ignored - MAX_LISTED} more" if report.ignored > MAX_LISTED else ""
        out.print(
            f"{report.ignored} placeholder value{'s' * (report.ignored != 1)} ignored, the rest"
            f" of the row imported ({shown}{more})",
            markup=False,
        )


def _print_report(head: dict[str, Any], report: RowReport) -> None:
    """The --json report, written as it is read back: every invalid row, however many."""
    write = sys.stdout.write
    write("{\n")
    for key, value in head.items():
        write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
    write(f'  "invalid": {report.invalid},\n')
    lists = (
        ("invalid_lines", "invalid", lambda e: e[0]),
        ("invalid_rows", "invalid", lambda e: {"line": e[0], "reason": e[1]}),
        ("ignored", "ignored", lambda e: {"line": e[0], "field": e[1], "value": e[2]}),
    )
    for n, (key, kind, shape) in enumerate(lists):
        write(f"  {json.dumps(key)}: [")
        sep = "\n    "
        for entry in report.entries(kind):
            write(sep + json.dumps(shape(entry), ensure_ascii=False))
            sep = ",\n    "
        write("]" if sep == "\n    " else "\n  ]")
        write(",\n" if n < len(lists) - 1 else "\n")
    write("}\n")


def _with_progress(leads_file: LeadsFile) -> Iterable[LeadRecord | InvalidRow]:
    """The rows, with a progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return leads_file
    return _progress(leads_file)


def _progress(leads_file: LeadsFile) -> Iterator[LeadRecord | InvalidRow]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("importing {task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=cast(Console, err), transient=True) as progress:
        task = progress.add_task(leads_file.name, total=leads_file.size)
        for n, item in enumerate(leads_file):
            if n % 2000 == 0:
                progress.update(task, completed=leads_file.position())
            yield item


def _print_invalid(report: RowReport) -> None:
    for row in report.first_invalid:
        err.print(str(row), markup=False)
    if report.invalid > MAX_LISTED:
        err.print(f"... and {report.invalid - MAX_LISTED} more invalid rows", markup=False)


@leads_app.command("export")
def export(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    pipeline: Annotated[
        str | None,
        typer.Option("--pipeline", help="Only leads enrolled in it, with their stage in it."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only leads in this state (with --pipeline: in it)."),
    ] = None,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="csv (for spreadsheets) or jsonl.")
    ] = ExportFormat.csv,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file (default stdout).")
    ] = None,
) -> None:
    """Leads with their fields, state and stage, streamed as CSV or JSON lines.

    The CSV imports again with `leads import`: its pipectl_* columns are skipped.
    Example: pipectl leads export --account acme --pipeline adwords --status won -o won.csv
    """
    if status is not None and status not in LEAD_STATES:
        raise typer.BadParameter(
            f"unknown status '{status}'; use one of {', '.join(LEAD_STATES)}", param_hint="--status"
        )
    from ..exports import write_csv, write_jsonl

    store = open_store(ctx)
    account_id = store.config.account_by_key(account)["id"] if account else None
    pipeline_id = store.config.pipeline_by_key(pipeline)["id"] if pipeline else None
    leads = store.leads.export_leads(account_id=account_id, pipeline_id=pipeline_id, status=status)
    try:
        target = output.open("w", encoding="utf-8", newline="") if output else None
    except OSError as e:
        raise PipectlError(f"{output}: cannot write the file: {e.strerror}") from None
    try:
        if fmt is ExportFormat.jsonl:
            written = write_jsonl(target or sys.stdout, leads)
        else:
            fields = store.leads.export_fields(account_id=account_id)
            written = write_csv(target or sys.stdout, leads, fields)
    except OSError as e:
        raise PipectlError(f"{output or 'stdout'}: cannot write: {e.strerror}") from None
    finally:
        if target:
            target.close()
    if output:
        err.print(f"{written} leads written to {output}", markup=False)


@leads_app.command("list")
def list_(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only leads in this state (with --pipeline: in it); not_enrolled: in no"
            " pipeline (with --pipeline: not in it).",
        ),
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
    if status is not None and status not in (*LEAD_STATES, NOT_ENROLLED):
        raise typer.BadParameter(
            f"unknown status '{status}'; use one of {', '.join(LEAD_STATES)}, {NOT_ENROLLED}",
            param_hint="--status",
        )
    store = open_store(ctx)
    leads = store.leads.list_leads(
        account_id=store.config.account_by_key(account)["id"] if account else None,
        status=status,
        pipeline_id=store.config.pipeline_by_key(pipeline)["id"] if pipeline else None,
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
    from rich.table import Table  # rich loads its tables only for the commands drawing one

    table = Table(*header)
    for line in lines:
        table.add_row(*line)
    out.print(table)
    if not leads:
        out.print("no leads match")


def _row(lead: dict) -> tuple[str, ...]:
    pipelines = ", ".join(_enrollment(e) for e in lead["enrollments"])
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


def _enrollment(e: dict) -> str:
    """`adwords/intro (active)`; a run stopped before it entered a stage has no stage to name,
    so only its pipeline and state (`adwords (stopped)`), as `leads show` words it."""
    where = f"{e['pipeline']}/{e['stage']}" if e["stage"] is not None else e["pipeline"]
    return f"{where} ({e['state']})"
