"""A replies CSV (an inbox or SMS provider export) -> checked reply rows; no database."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from . import csv_text
from .durations import format_time, parse_user_time
from .errors import CsvError, DurationError, PipectlError
from .lead_columns import ALIASES
from .opt_outs import normalise_header
from .store.replies_sql import ReplyRow

CHANNELS = ("email", "sms")
REPLY_COLUMNS = {
    "email": ALIASES["email"] + " fromemail senderemail",
    "phone": ALIASES["phone"] + " fromphone fromnumber sendernumber",
    # Either, decided per value: an inbox export's From is an address, an SMS provider's a
    # number (+12125550123); a value with an @ is an email, any other a phone.
    "sender": "from sender fromaddress senderaddress",
    "channel": "channel medium type",
    "body": "body message text content reply",
    "received_at": "receivedat received date time timestamp datetime",
}
REPLY_ALIAS = {alias: col for col, aliases in REPLY_COLUMNS.items() for alias in aliases.split()}


def read_replies(path: Path, *, now: str) -> list[ReplyRow]:
    """Every row of a replies CSV, checked; a bad file or value raises CsvError naming it."""
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise CsvError(f"{name}: cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CsvError(f"{name}: not UTF-8 text; save the file as CSV UTF-8") from None
    reader, sep_line = csv_text.reader(io.StringIO(text, newline=""), text[:65536])
    line = 0  # the last line of the last row read: the next row starts after it
    try:
        if sep_line:
            next(reader, None)  # Excel's `sep=;` line
            line = reader.line_num
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
        raise CsvError(f"{name}:{line + 1}: {csv_text.problem(e)}") from None
    if problems:
        raise CsvError("\n".join(problems[:20]) + "\nnothing was imported", problems)
    return replies


def _columns(name: str, line: int, header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, title in enumerate(header):
        column = REPLY_ALIAS.get(normalise_header(title))
        if column and column not in columns:
            columns[column] = i
    if not {"email", "phone", "sender"} & columns.keys():
        raise CsvError(
            f"{name}:{line}: no email or phone column in the header"
            f" (columns: {', '.join(header)}); name one 'email' or 'phone'"
        )
    if "body" not in columns:
        # A leads file given by mistake would record an empty reply for every lead and move
        # them all to on_reply.
        raise CsvError(
            f"{name}:{line}: no body column in the header (columns: {', '.join(header)});"
            " a replies file needs an email, phone or from column and a body column"
            " (body, message, text or reply); nothing was imported"
        )
    return columns


def _reply_row(line: int, row: list[str], columns: dict[str, int], now: str) -> ReplyRow:
    values = {c: row[i].strip() for c, i in columns.items() if i < len(row)}
    email, phone = values.get("email") or None, values.get("phone") or None
    sender = values.get("sender")
    if sender and "@" in sender:
        email = email or sender
    elif sender:
        phone = phone or sender
    if not email and not phone:
        raise ValueError("row has no email and no phone")
    default = "email" if email else "sms"
    at = values.get("received_at")
    try:
        channel = check_channel(values.get("channel") or None, default, "channel")
        received_at = check_time(at, "received_at") if at else now
    except PipectlError as e:
        raise ValueError(str(e)) from None
    body = row[columns["body"]] if columns["body"] < len(row) else ""
    return ReplyRow(line, channel, received_at, email=email, phone=phone, body=body)


def check_channel(value: str | None, default: str, what: str) -> str:
    channel = (value or default).strip().lower()
    if channel not in CHANNELS:
        raise PipectlError(f"{what} {value!r}: use email or sms")
    return channel


def check_time(value: str, what: str) -> str:
    try:
        return format_time(parse_user_time(value))
    except DurationError as e:
        raise PipectlError(f"{what}: {e}") from None
