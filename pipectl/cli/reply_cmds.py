"""reply, replies import, leads stop: what leads say back, and stopping them by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import typer

from ..durations import format_time, parse_time, utcnow
from ..errors import CsvError, DurationError, PipectlError
from ..leads import ALIASES, normalise_header
from ..store.replies_sql import ReplyRow
from .app import app, open_store, out, print_json
from .leads_cmds import leads_app

CHANNELS = ("email", "sms")
REPLY_COLUMNS = {
    "email": ALIASES["email"] + " from fromemail senderemail",
    "phone": ALIASES["phone"] + " fromphone fromnumber sender sendernumber",
    "channel": "channel medium type",
    "body": "body message text content reply",
    "received_at": "receivedat received date time timestamp datetime",
}
REPLY_ALIAS = {alias: col for col, aliases in REPLY_COLUMNS.items() for alias in aliases.split()}

replies_app = typer.Typer(help="Record many inbound replies at once.", no_args_is_help=True)
app.add_typer(replies_app, name="replies")

AccountOpt = Annotated[str, typer.Option("--account", help="The account the leads belong to.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
def reply(
    ctx: typer.Context,
    account: AccountOpt,
    email: Annotated[str | None, typer.Option(help="The sender's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="The sender's phone number.")] = None,
    channel: Annotated[
        str | None, typer.Option(help="email or sms (default: email with --email, else sms).")
    ] = None,
    body: Annotated[str, typer.Option(help="The text of the reply.")] = "",
    at: Annotated[
        str | None, typer.Option("--at", help="When it was received (default now), UTC ISO-8601.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an inbound reply: it ends the lead's wait for a reply; STOP opts the lead out.

    Example: pipectl reply --account acme --phone +12125550123 --body "Yes, call me"
    """
    if (email is None) == (phone is None):
        raise PipectlError("give the sender as exactly one of --email or --phone")
    channel = _channel(channel, "email" if email else "sms", "--channel")
    received_at = _time(at, "--at") if at else format_time(utcnow())
    result = open_store(ctx).record_reply(
        account, email=email, phone=phone, channel=channel, body=body, received_at=received_at
    )
    if as_json:
        print_json(result)
        return
    kind = "opt-out" if result["opt_out"] else "reply"
    for r in result["replies"]:
        out.print(
            f"{kind} from lead {r['lead_id']} ({r['lead']}) at {received_at}: {r['effect']}",
            markup=False,
        )


@replies_app.command("import")
def import_replies(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Argument(metavar="CSV", help="Columns: email or phone, channel, body, received_at."),
    ],
    account: AccountOpt,
    as_json: JsonOpt = False,
) -> None:
    """Record replies from a CSV export; rows matching no lead are reported, not fatal.

    Example: pipectl replies import inbox-export.csv --account acme
    """
    replies = read_replies(csv_file, now=format_time(utcnow()))
    summary = open_store(ctx).import_replies(account, replies)
    if as_json:
        print_json(summary)
        return
    out.print(
        f"{csv_file}: {summary['rows']} replies: {summary['matched']} matched "
        f"({summary['opt_outs']} opt-outs), {len(summary['unmatched'])} unmatched",
        markup=False,
    )
    for u in summary["unmatched"]:
        out.print(f"  {csv_file}:{u['line']}: unmatched: {u['reason']}", markup=False)


@leads_app.command("stop")
def stop(
    ctx: typer.Context,
    lead: Annotated[str, typer.Argument(help="The lead's id, email or phone.")],
    account: Annotated[
        str | None, typer.Option("--account", help="Look the lead up in this account only.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a lead's automation in every pipeline; its remaining actions are skipped.

    Example: pipectl leads stop jane@example.com
    """
    result = open_store(ctx).stop_lead(lead, account_key=account)
    if as_json:
        print_json(result)
        return
    who = result["email"] or result["phone"]
    pipelines = ", ".join(result["stopped"]) or "no running automation"
    out.print(f"stopped lead {result['lead_id']} ({who}): {pipelines}", markup=False)


# --- the replies CSV ------------------------------------------------------------------


def read_replies(path: Path, *, now: str) -> list[ReplyRow]:
    """Every row of a replies CSV, checked; a bad file or value raises CsvError naming it."""
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise CsvError(f"{name}: cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CsvError(f"{name}: not UTF-8 text; save the file as CSV UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next((row for row in reader if any(c.strip() for c in row)), None)
        if header is None:
            raise CsvError(f"{name}: the file is empty; it needs a header row")
        columns = _columns(name, reader.line_num, header)
        replies, problems, line = [], [], reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in row):
                continue
            try:
                replies.append(_reply_row(start, row, columns, now))
            except ValueError as e:
                problems.append(f"{name}:{start}: {e}")
    except csv.Error as e:
        raise CsvError(f"{name}:{reader.line_num}: not valid CSV: {e}") from None
    if problems:
        raise CsvError("\n".join(problems[:20]) + "\nnothing was imported", problems)
    return replies


def _columns(name: str, line: int, header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, title in enumerate(header):
        column = REPLY_ALIAS.get(normalise_header(title))
        if column and column not in columns:
            columns[column] = i
    if "email" not in columns and "phone" not in columns:
        raise CsvError(
            f"{name}:{line}: no email or phone column in the header"
            f" (columns: {', '.join(header)}); name one 'email' or 'phone'"
        )
    return columns


def _reply_row(line: int, row: list[str], columns: dict[str, int], now: str) -> ReplyRow:
    values = {c: row[i].strip() for c, i in columns.items() if i < len(row)}
    email, phone = values.get("email") or None, values.get("phone") or None
    if not email and not phone:
        raise ValueError("row has no email and no phone")
    default = "email" if email else "sms"
    at = values.get("received_at")
    try:
        channel = _channel(values.get("channel") or None, default, "channel")
        received_at = _time(at, "received_at") if at else now
    except PipectlError as e:
        raise ValueError(str(e)) from None
    body = row[columns["body"]] if columns.get("body", len(row)) < len(row) else ""
    return ReplyRow(line, channel, received_at, email=email, phone=phone, body=body)


def _channel(value: str | None, default: str, what: str) -> str:
    channel = (value or default).strip().lower()
    if channel not in CHANNELS:
        raise PipectlError(f"{what} {value!r}: use email or sms")
    return channel


def _time(value: str, what: str) -> str:
    try:
        return format_time(parse_time(value))
    except DurationError as e:
        raise PipectlError(f"{what}: {e}") from None
