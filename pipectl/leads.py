"""CSV exports -> normalised lead records (a generator; no database).

`open_leads` reads and checks the file and its header at once (raising CsvError for a file
that cannot be imported); iterating the result yields a `LeadRecord` or an `InvalidRow` per
data row, each carrying the physical line where the row starts.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import csv_text
from .errors import CsvError
from .exports import unquoted
from .lead_columns import plan_columns
from .lead_values import PLACEHOLDER, check_timezone, normalise_email, normalise_phone, split_name
from .opt_outs import opted_out, shown

HEAD_BYTES = 65_536  # read first: checked for binary files, sniffed for the delimiter
MAX_VALUE = 131_072  # characters in one cell; a row with a longer value is invalid
READ_LIMIT = 16 * 1024 * 1024  # what the reader holds at most for one cell
csv.field_size_limit(READ_LIMIT)
BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook?)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook",
    b"\x89PNG": "a PNG image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\xff\xfe": "UTF-16 text",
    b"\xfe\xff": "UTF-16 text",
}


@dataclass(slots=True)
class LeadRecord:
    """One valid row, normalised: what the store merges into `leads`."""

    line: int
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    do_not_contact: bool = False
    email_opt_out: bool = False
    sms_opt_out: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    ignored: list[tuple[str, str]] | None = None  # (field, value): placeholders not imported


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A row that cannot be imported, shown as `file:line: reason`."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class LeadsFile:
    """A checked CSV file; iterate it for one LeadRecord or InvalidRow per data row."""

    def __init__(self, path: Path, country: str | None, mapping: dict[str, str]):
        self.name = str(path)
        self.country = country
        try:
            self._raw: BinaryIO = Path(path).open("rb")  # noqa: SIM115 (closed by close())
        except OSError as e:
            raise CsvError(f"{self.name}: cannot read the file: {e.strerror}") from None
        try:
            self.size = os.fstat(self._raw.fileno()).st_size
            head = self._raw.read(HEAD_BYTES)
            self._check_head(head)
            self._raw.seek(0)
            sample = head.decode("utf-8-sig", errors="replace")
            self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig", newline="")
            self._reader, sep_line = csv_text.reader(self._text, sample)
            self.header_line, header = self._read_header(skip=int(sep_line))
            self.header = header
            self.columns = len(header)
            plan = plan_columns(f"{self.name}:{self.header_line}", header, mapping)
            # Read once per row: plain attributes, not the plan's.
            self.targets, self.custom, self.unnamed = plan.targets, plan.custom, plan.unnamed
            self.opt_outs, self.suspect = plan.opt_outs, plan.suspect
            self._custom_unique, self._at = plan.custom_unique, plan.at
            self._email_alt, self._phone_alt = plan.email_alt, plan.phone_alt
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LeadsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def position(self) -> int:
        """Bytes read so far, for a progress bar."""
        return self._raw.tell() if not self._raw.closed else self.size

    def _check_head(self, head: bytes) -> None:
        """Refuse what is not CSV text before reading on: a workbook, an image, nothing."""
        for magic, kind in BINARY_MAGIC.items():
            if head.startswith(magic):
                raise CsvError(
                    f"{self.name}: this is {kind}, not CSV text; export it as CSV (UTF-8)"
                )
        if not head.strip() and self.size <= len(head):
            raise CsvError(
                f"{self.name}: the file is empty; it needs a header row and rows of leads"
            )
        if b"\x00" in head:
            raise CsvError(
                f"{self.name}: this is a binary file, not CSV text; export it as CSV (UTF-8)"
            )

    def _not_utf8(self) -> CsvError:
        """The first byte that is not UTF-8, found by reading the file again from the start."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        line = 1
        with Path(self.name).open("rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    # The decoder may hold back up to 3 bytes of the previous chunk.
                    start = max(0, e.start - len(e.object) + len(chunk))
                    line += chunk.count(b"\n", 0, start)
                    byte = chunk[start] if start < len(chunk) else e.object[e.start]
                    return CsvError(
                        f"{self.name}:{line}: not UTF-8 text (byte 0x{byte:02x});"
                        " save the file as CSV UTF-8"
                    )
                line += chunk.count(b"\n")
        return CsvError(f"{self.name}: not UTF-8 text; save the file as CSV UTF-8")

    def _read_header(self, skip: int) -> tuple[int, list[str]]:
        """The first row with a value, after `skip` rows (Excel's `sep=` line)."""
        start = 1  # the line the row being read starts on
        try:
            for _ in range(skip):
                next(self._reader, None)
            start = self._reader.line_num + 1
            for row in self._reader:
                if any(cell.strip() for cell in row):
                    return self._reader.line_num, row
                start = self._reader.line_num + 1
        except csv.Error as e:
            raise CsvError(f"{self.name}:{start}: {csv_text.problem(e)}") from None
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        raise CsvError(f"{self.name}: no header row (the file has no data)")

    def __iter__(self) -> Iterator[LeadRecord | InvalidRow]:
        try:
            yield from self._rows()
        finally:
            self.close()

    def _rows(self) -> Iterator[LeadRecord | InvalidRow]:
        reader, ncols = self._reader, self.columns
        previous = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise CsvError(f"{self.name}:{previous + 1}: {csv_text.problem(e)}") from None
            except UnicodeDecodeError:
                raise self._not_utf8() from None
            line, previous = previous + 1, reader.line_num
            if not any(row):
                continue
            if len(row) > ncols:
                yield InvalidRow(
                    self.name,
                    line,
                    f"row has {len(row)} fields but the header has {ncols} (an unquoted comma?)",
                )
                continue
            if "'" in "".join(row):  # rarely: a cell `leads export` kept from running as a formula
                row = [unquoted(cell) for cell in row]
            row.extend([""] * (ncols + 1 - len(row)))  # index `ncols` stands for "no column"
            yield self._record(line, row)

    def _record(self, line: int, row: list[str]) -> LeadRecord | InvalidRow:  # noqa: C901
        """One row as a record (the hot path: a million rows take a few seconds; one frame,
        no helper calls per row, which is why it is longer than the complexity check allows)."""
        i_email, i_phone, i_first, i_last, i_name, i_tz, _ = self._at
        if max(map(len, row)) > MAX_VALUE:
            return self._too_long(line, row)
        for i in self.suspect:
            if row[i].strip():
                raise self._unreadable_opt_out(line, i, row[i])
        ignored: list[tuple[str, str]] | None = None
        email = phone = timezone = None
        try:
            if value := row[i_email].strip() or _first(row, self._email_alt):
                try:
                    email = normalise_email(value)
                except ValueError:
                    if not PLACEHOLDER.fullmatch(value):
                        raise
                    ignored = [("email", value)]
            if value := row[i_phone].strip() or _first(row, self._phone_alt):
                try:
                    phone = normalise_phone(value, self.country)
                except ValueError:
                    if not PLACEHOLDER.fullmatch(value):
                        raise
                    ignored = [*(ignored or ()), ("phone", value)]
            if (value := row[i_tz].strip()) and not PLACEHOLDER.fullmatch(value):
                timezone = check_timezone(value)
            opt_outs = [False, False, False]
            for i, flag, kind in self.opt_outs:
                if (value := row[i].strip()) and opted_out(value, kind, self.header[i]):
                    opt_outs[flag] = True
        except ValueError as e:
            return InvalidRow(self.name, line, str(e))
        for i in self.unnamed:
            if row[i].strip():
                return InvalidRow(
                    self.name, line, f"value {shown(row[i])} in column {i + 1}, which has no name"
                )
        if not email and not phone:
            shown_row = shown(",".join(row[: self.columns]).rstrip(","))
            return InvalidRow(self.name, line, f"row has no email and no phone: {shown_row}")
        first_name = row[i_first].strip() or None
        last_name = row[i_last].strip() or None
        if not first_name and not last_name and (full := row[i_name].strip()):
            first_name, last_name = split_name(full)
        # Every column of the file, "" when empty: templates see it.
        if self._custom_unique and "\r" not in "".join(row):
            fields = {name: row[i].strip() for i, name in self.custom}
        else:
            fields = {}
            for i, name in self.custom:
                if v := row[i].strip():
                    fields[name] = v.replace("\r\n", "\n") if "\r" in v else v
                else:
                    fields.setdefault(name, "")
        return LeadRecord(
            line,
            email,
            phone,
            first_name,
            last_name,
            timezone,
            opt_outs[0] or (opt_outs[1] and opt_outs[2]),  # both channels: no channel left
            opt_outs[1],
            opt_outs[2],
            fields,
            ignored,
        )

    def _too_long(self, line: int, row: list[str]) -> InvalidRow:
        i = next(i for i, value in enumerate(row) if len(value) > MAX_VALUE)
        return InvalidRow(
            self.name,
            line,
            f"value in column {i + 1} {self.header[i]!r} is {len(row[i]):,} characters long;"
            f" at most {MAX_VALUE:,} are read",
        )

    def _unreadable_opt_out(self, line: int, i: int, value: str) -> CsvError:
        column = self.header[i]
        return CsvError(
            f"{self.name}:{line}: column {column!r} looks like an opt-out, but pipectl cannot"
            f" tell what {shown(value.strip())} means, so nothing is imported; say how to read"
            f" it: --map '{column}=do_not_contact' (or email_opt_out, sms_opt_out), or"
            f" --map '{column}=custom' if it is not an opt-out"
        )


def _first(row: list[str], columns: tuple[int, ...]) -> str:
    """The first non-empty value among fallback columns."""
    for i in columns:
        if value := row[i].strip():
            return value
    return ""


def open_leads(
    path: Path, *, country: str | None, mapping: dict[str, str] | None = None
) -> LeadsFile:
    """Open `path` and check it is UTF-8 CSV text with a usable header; rows stream from it."""
    return LeadsFile(Path(path), country, mapping or {})
