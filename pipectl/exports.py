"""Leads -> CSV or JSON lines, written as they stream from the store (no database here)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from typing import Any, TextIO

STANDARD = ("email", "phone", "first_name", "last_name", "timezone")
OPT_OUTS = ("do_not_contact", "email_opt_out", "sms_opt_out")
STATE = ("id", "account", "pipeline", "stage", "status")
# What pipectl knows of each lead, for a spreadsheet; `leads import` skips these columns.
EXPORT_COLUMNS = tuple(f"pipectl_{name}" for name in STATE)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP):
# the CSV writes such a cell after a `'`, and `leads import` takes exactly that `'` off
# again. A plain number (a phone in E.164, `-5`) runs nothing and is written as it is, so an
# export read by a CRM has its phones intact. Cells already starting with quotes before one
# of those characters get one more, so every value round-trips (`'=x` -> `''=x` -> `'=x`).
FORMULA_START = re.compile(r"'*[=+\-@\t\r]")
QUOTED_FORMULA = re.compile(r"'+[=+\-@\t\r]")
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_RISKY_FIRST = frozenset("=+-@\t\r'")


def spreadsheet_safe(value: Any) -> Any:
    """The value as a spreadsheet shows it without running it: `=1+2` -> `'=1+2`."""
    if (
        isinstance(value, str)
        and value[:1] in _RISKY_FIRST
        and FORMULA_START.match(value)
        and not NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def unquoted(cell: str) -> str:
    """A cell as `write_csv` had it before `spreadsheet_safe`: `'=1+2` -> `=1+2`."""
    if QUOTED_FORMULA.match(cell) and not NUMBER.fullmatch(cell[1:]):
        return cell[1:]
    return cell


def write_csv(out: TextIO, leads: Iterable[dict[str, Any]], fields: list[str]) -> int:
    """One row per lead, in columns `leads import` reads back; returns how many."""
    writer = csv.writer(out, lineterminator="\r\n")
    custom = [f for f in fields if f not in STANDARD + OPT_OUTS]
    writer.writerow([*STANDARD, *OPT_OUTS, *EXPORT_COLUMNS, *custom])
    n = 0
    for lead in leads:
        values = lead["fields"]
        writer.writerow(
            [
                *(spreadsheet_safe(lead[k] or "") for k in STANDARD),
                *("yes" if lead[k] else "no" for k in OPT_OUTS),
                *("" if lead[k] is None else spreadsheet_safe(lead[k]) for k in STATE),
                *(spreadsheet_safe(values.get(f, "")) for f in custom),
            ]
        )
        n += 1
    return n


def write_jsonl(out: TextIO, leads: Iterable[dict[str, Any]]) -> int:
    """One JSON object per line and lead; returns how many."""
    n = 0
    for lead in leads:
        out.write(json.dumps(lead, ensure_ascii=False) + "\n")
        n += 1
    return n
