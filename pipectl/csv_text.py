"""CSV text as spreadsheets export it: Excel's `sep=;` first line, the delimiter (comma,
semicolon, tab or pipe), and strict quoting, so a quote opened and never closed is an error
naming its line instead of a value that swallows the rest of the file."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _csv import Reader


def reader(lines: Iterable[str], sample: str) -> tuple[Reader, bool]:
    """A strict reader of `lines` (the delimiter read off `sample`, the file's beginning);
    and whether the first line is Excel's `sep=` line, which the caller skips (line numbers
    stay the file's own)."""
    sep = excel_separator(sample)
    return csv.reader(lines, delimiter=sep or sniff_delimiter(sample), strict=True), bool(sep)


def problem(error: csv.Error) -> str:
    """What a csv error means to someone who edits the file."""
    said = str(error)
    if "unexpected end of data" in said:
        return 'a quoted value starts on this row and is never closed (a stray ")'
    if "expected after" in said:
        return 'text follows a closing quote (a stray " inside a quoted value?)'
    return f"not valid CSV: {said}"


def excel_separator(text: str) -> str | None:
    """The delimiter named by Excel's `sep=;` first line, else None."""
    m = re.match(r'"?sep=(.)"?[ \t]*\r?\n', text[:16], re.IGNORECASE)
    return m.group(1) if m else None


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon, tab or pipe: the one that splits the header into the most columns and
    the first rows into as many (Excel in much of Europe saves CSV with semicolons)."""
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    best, score = ",", (0, 0.0, 0)
    for sep in (",", ";", "\t", "|"):
        try:
            rows = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=sep) if r]
        except csv.Error:
            continue
        rows = rows[:50]
        if not rows:
            continue
        n = len(rows[0])
        same = sum(len(r) == n for r in rows) / len(rows)
        candidate = (int(n > 1), same, n)
        if candidate > score:
            best, score = sep, candidate
    return best
