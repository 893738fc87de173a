"""A provider's suppression export (CSV) -> (row, address, reason, detail); no database."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from . import csv_text
from .errors import CsvError
from .opt_outs import normalise_header

COLUMNS = {
    "email": "email emailaddress e_mail mail recipient recipientemail address",
    "phone": "phone phonenumber mobile mobilephone number to",
    "reason": "reason type status category suppressiontype bouncetype",
}
ALIAS = {
    normalise_header(alias): col for col, aliases in COLUMNS.items() for alias in aliases.split()
}
# A provider's words for why an address is suppressed, to the product's reasons.
REASON_WORDS = (
    ("bounce", "bounce"),
    ("invalid", "bounce"),
    ("unsub", "opt_out"),
    ("opt", "opt_out"),
    ("stop", "opt_out"),
    ("spam", "complaint"),
    ("complain", "complaint"),
    ("abuse", "complaint"),
    ("block", "provider"),
)


def reason_of(text: str) -> str:
    """`hard bounce` -> bounce, `unsubscribed` -> opt_out, `spam report` -> complaint; any
    other text (or none) -> manual."""
    lowered = text.lower()
    return next((reason for word, reason in REASON_WORDS if word in lowered), "manual")


def read_suppressions(path: Path) -> list[tuple[int, str, str, str | None]]:
    """Every address of the file with its reason; a bad file or row raises CsvError naming
    the row and value."""
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise CsvError(f"{name}: cannot read the file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CsvError(f"{name}: not UTF-8 text; save the file as CSV UTF-8") from None
    reader, sep_line = csv_text.reader(io.StringIO(text, newline=""), text[:65536])
    line = 0  # the last line of the last row read: the next row starts after it
    entries, problems = [], []
    try:
        if sep_line:
            next(reader, None)  # Excel's `sep=;` line
            line = reader.line_num
        header = next((row for row in reader if any(c.strip() for c in row)), None)
        if header is None:
            raise CsvError(f"{name}: the file is empty; it needs a header row")
        columns: dict[str, int] = {}
        for i, title in enumerate(header):
            column = ALIAS.get(normalise_header(title))
            if column and column not in columns:
                columns[column] = i
        if not {"email", "phone"} & columns.keys():
            raise CsvError(
                f"{name}:{reader.line_num}: no email or phone column in the header"
                f" (columns: {', '.join(header)}); name one 'email' or 'phone'"
            )
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in row):
                continue
            values = {c: row[i].strip() for c, i in columns.items() if i < len(row)}
            said = values.get("reason") or ""
            addresses = [values[c] for c in ("email", "phone") if values.get(c)]
            if not addresses:
                problems.append(f"{name}:{start}: row has no email and no phone")
            for address in addresses:
                entries.append((start, address, reason_of(said), said or None))
    except csv.Error as e:
        raise CsvError(f"{name}:{line + 1}: {csv_text.problem(e)}") from None
    if problems:
        raise CsvError("\n".join(problems[:20]) + "\nnothing was imported", problems)
    return entries
