"""CSV exports -> normalised lead records (a generator; no database).

`open_leads` reads and checks the file and its header at once (raising CsvError for a file
that cannot be imported); iterating the result yields a `LeadRecord` or an `InvalidRow` per
data row, each carrying the physical line where the row starts.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .errors import CsvError
from .exports import EXPORT_COLUMNS
from .opt_outs import (
    NOT_OPT_OUTS,
    OPT_OUT_FIELDS,
    looks_like_opt_out,
    normalise_header,
    opt_out_column,
    opted_out,
    shown,
)

FIELDS = ("email", "phone", "first_name", "last_name", "name", "timezone", "do_not_contact")
MAP_TARGETS = (*FIELDS, "email_opt_out", "sms_opt_out", "custom")
ALIASES = {
    "email": "email emailaddress primaryemail workemail",
    # In preference order: a text needs a mobile, so a mobile column beats a phone column,
    # which beats a work or home line, whatever their order in the file.
    "phone": "mobile mobilephone mobilephonenumber mobilenumber mobileno phonemobile"
    " cell cellphone cellphonenumber cellnumber"
    " phone phonenumber telephone telephonenumber tel"
    " workphone phonework businessphone officephone homephone phonehome otherphone phoneother",
    "first_name": "firstname givenname forename",
    "last_name": "lastname surname familyname",
    "name": "name fullname contactname",
    "timezone": "timezone tz",
}
ALIAS_TO_FIELD = {alias: f for f, aliases in ALIASES.items() for alias in aliases.split()}
ALIAS_RANK = {alias: n for aliases in ALIASES.values() for n, alias in enumerate(aliases.split())}
# `leads export` columns that state what pipectl knows; an import of the export skips them.
EXPORT_ONLY = frozenset(c.replace("_", "") for c in EXPORT_COLUMNS)
# A value that stands for "no phone" (or "no email") in exports: ignored, and reported.
PLACEHOLDER = re.compile(
    r"[\s\-_.?/#*x0]*|(?i:n\s*/?\s*a|none|null|nil|unknown|tbd|no\s*(phone|email))"
)
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
SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "dds", "cpa"}
TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof"}
MAX_LISTED = 50  # invalid rows and ignored values shown in a summary


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


def snake_case(name: str) -> str:
    """A custom field's name in templates: `Company Name` -> `company_name`."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^0-9a-z]+", "_", s.lower()).strip("_")


def parse_map(specs: list[str]) -> dict[str, str]:
    """`--map 'Col=field'` options -> {normalised column: field}; `custom` keeps the column as a
    custom field (for a column that only looks like an opt-out)."""
    mapping: dict[str, str] = {}
    for spec in specs:
        column, sep, target = spec.partition("=")
        target = target.strip().lower().replace("-", "_").replace(" ", "_")
        if not sep or not column.strip() or not target:
            raise CsvError(f"--map {spec!r}: write it as 'Column=field', e.g. 'Cell No=phone'")
        if target not in MAP_TARGETS:
            raise CsvError(
                f"--map {spec!r}: unknown field {target!r}; use one of {', '.join(MAP_TARGETS)}"
            )
        mapping[normalise_header(column)] = target
    return mapping


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
            sep = excel_separator(sample)
            self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig", newline="")
            self._reader = csv.reader(self._text, delimiter=sep or sniff_delimiter(sample))
            if sep:
                next(self._reader)  # the `sep=;` line itself; line numbers stay the file's own
            self.header_line, header = self._read_header()
            self.header = header
            self.columns = len(header)
            self._plan(header, mapping)
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

    def _read_header(self) -> tuple[int, list[str]]:
        try:
            for row in self._reader:
                if any(cell.strip() for cell in row):
                    return self._reader.line_num, row
        except csv.Error as e:
            raise CsvError(f"{self.name}:{self._reader.line_num}: not valid CSV: {e}") from None
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        raise CsvError(f"{self.name}: no header row (the file has no data)")

    def _check_header(self, header: list[str], keys: list[str], mapping: dict[str, str]) -> None:
        """No two columns read as one name, and every --map names a column that exists."""
        where = f"{self.name}:{self.header_line}"
        seen: dict[str, int] = {}
        for i, (key, name) in enumerate(zip(keys, header, strict=True)):
            if key and key in seen:
                first = header[seen[key]]
                raise CsvError(
                    f"{where}: columns {seen[key] + 1} {first!r} and {i + 1} {name!r}"
                    " have the same name once case, spaces and punctuation are ignored"
                )
            seen[key] = i
        for key in mapping:
            if key not in seen:
                raise CsvError(
                    f"{self.name}: --map names column {key!r}, which is not in the header"
                    f" (columns: {', '.join(h for h in header)})"
                )

    def _plan(self, header: list[str], mapping: dict[str, str]) -> None:
        where = f"{self.name}:{self.header_line}"
        keys = [normalise_header(h) for h in header]
        self._check_header(header, keys, mapping)
        has_names = {"first_name", "last_name"} & {
            mapping.get(k, ALIAS_TO_FIELD.get(k)) for k in keys
        }
        targets: dict[str, int] = {}
        alternates: dict[str, list[int]] = {}
        self.custom: list[tuple[int, str]] = []
        self.unnamed: list[int] = []
        self.opt_outs: list[tuple[int, int, str]] = []  # (column, OPT_OUT_FIELDS index, kind)
        self.suspect: list[int] = []  # columns that look like opt-outs we cannot read
        for i, key in enumerate(keys):
            if key in EXPORT_ONLY and key not in mapping:
                continue  # what `leads export` adds for spreadsheets: pipectl's own state
            target = mapping.get(key) or ALIAS_TO_FIELD.get(key)
            if key not in mapping and target in mapping.values():
                target = None  # an explicit --map to this field wins over the alias
            if target == "name" and has_names and key not in mapping:
                target = None
            opt_out = opt_out_column(key) if key not in mapping else None
            if target in OPT_OUT_FIELDS or opt_out:
                # Every opt-out column counts, mapped or recognised: any true one opts out.
                known = opt_out or (None, "flag")
                field_name = target if target in OPT_OUT_FIELDS else known[0]
                self.opt_outs.append((i, OPT_OUT_FIELDS.index(field_name), known[1]))
                continue
            if target == "custom":
                target = None
            elif target is None and key not in NOT_OPT_OUTS and looks_like_opt_out(header[i]):
                self.suspect.append(i)
            if target is None:
                if not key:
                    self.unnamed.append(i)
                else:
                    self.custom.append((i, snake_case(header[i]) or key))
                continue
            if target in targets:
                j = targets[target]
                if key in mapping and keys[j] in mapping:
                    raise CsvError(
                        f"{where}: --map reads both {header[j]!r} and {header[i]!r} as {target};"
                        " map one of them"
                    )
                # Exports often have both (Phone and Mobile): the preferred alias is read
                # first, the other fills in where it is empty and is kept as a custom field.
                if key in mapping or ALIAS_RANK.get(key, 99) < ALIAS_RANK.get(keys[j], 99):
                    targets[target], i = i, j
                alternates.setdefault(target, []).append(i)
                name = snake_case(header[i]) or keys[i]
                self.custom.append((i, f"other_{name}" if name in FIELDS else name))
                continue
            targets[target] = i
        if "email" not in targets and "phone" not in targets:
            looks_like_data = any("@" in h or sum(c.isdigit() for c in h) >= 7 for h in header)
            hint = (
                "the first line looks like data: the file needs a header row"
                if looks_like_data
                else "name one with --map 'Column=email' or --map 'Column=phone'"
            )
            raise CsvError(
                f"{where}: no email or phone column in the header"
                f" (columns: {', '.join(h for h in header)}); {hint}"
            )
        self.targets = targets
        self._custom_unique = len({name for _, name in self.custom}) == len(self.custom)
        self._at = tuple(targets.get(f, len(header)) for f in FIELDS)
        self._email_alt = tuple(alternates.get("email", ()))
        self._phone_alt = tuple(alternates.get("phone", ()))

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
                raise CsvError(f"{self.name}:{previous + 1}: not valid CSV: {e}") from None
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


class InvalidRows(CsvError):
    """The file has invalid rows and --skip-invalid was not given: nothing is imported."""


class RowReport:
    """A file's invalid rows and ignored placeholder values: counted, the first few kept for
    the summary, and every one in a temporary file, so a file of any size is fully reported
    in bounded memory."""

    def __init__(self) -> None:
        self.invalid = 0
        self.ignored = 0
        self.first_invalid: list[InvalidRow] = []
        self.first_ignored: list[tuple[int, str, str]] = []
        self._spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by close())
            max_size=1 << 20, mode="w+", encoding="utf-8"
        )

    def add_invalid(self, row: InvalidRow) -> None:
        self.invalid += 1
        if len(self.first_invalid) < MAX_LISTED:
            self.first_invalid.append(row)
        self._spool.write(json.dumps(["invalid", row.line, row.reason]) + "\n")

    def add_ignored(self, rec: LeadRecord) -> None:
        for name, value in rec.ignored or ():
            self.ignored += 1
            if len(self.first_ignored) < MAX_LISTED:
                self.first_ignored.append((rec.line, name, value))
            self._spool.write(json.dumps(["ignored", rec.line, name, value]) + "\n")

    def entries(self, kind: str) -> Iterator[list[Any]]:
        """Every `invalid` ([line, reason]) or `ignored` ([line, field, value]) entry, in order."""
        self._spool.flush()
        self._spool.seek(0)
        for text in self._spool:
            entry = json.loads(text)
            if entry[0] == kind:
                yield entry[1:]
        self._spool.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> RowReport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def valid_records(
    items: Iterable[LeadRecord | InvalidRow], report: RowReport, *, skip_invalid: bool, name: str
) -> Iterator[LeadRecord]:
    """The valid rows, for the store to merge as they come; the rest go to `report`. Without
    `skip_invalid`, the first invalid row ends the import: the rest of the file is only read
    for the report, and InvalidRows is raised at its end so the store writes nothing."""
    for item in items:
        if isinstance(item, InvalidRow):
            report.add_invalid(item)
            continue
        if item.ignored:
            report.add_ignored(item)
        if not report.invalid or skip_invalid:
            yield item
    if report.invalid and not skip_invalid:
        raise InvalidRows(
            f"{name}: {report.invalid} invalid row{'s' * (report.invalid != 1)};"
            " nothing imported (fix them, or use --skip-invalid to import the valid rows)"
        )


def split_name(full: str) -> tuple[str | None, str | None]:
    """A full name as (first, last): `John Smith`, `Smith, John`, `Dr. John Smith, Jr.`."""
    suffix = ""
    head, comma, tail = full.rpartition(",")
    if comma and head.strip() and tail.strip().lower().strip(".") in SUFFIXES:
        full, suffix = head, f", {tail.strip()}"
    last_part, comma, first_part = full.partition(",")
    if comma and last_part.strip() and first_part.strip():  # Last, First
        first, last = first_part.split(), last_part.split()
    else:
        words = full.replace(",", " ").split()
        first, last = words[:1], words[1:]
        if len(words) > 2 and words[0].lower().strip(".") in TITLES:
            first, last = words[1:2], words[2:]
    first_name = " ".join(first) or None
    last_name = (" ".join(last) + suffix) if last else None
    return first_name, last_name


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


_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63})"
_PLAIN_EMAIL = re.compile(rf"({_LOCAL})@({_DOMAIN})")


def normalise_email(value: str) -> str:
    """A valid address, lower-cased; plain ASCII addresses skip the slower full validation."""
    lowered = value.lower()
    m = _PLAIN_EMAIL.fullmatch(lowered)
    if (
        m
        and len(lowered) <= 254
        and len(m.group(1)) <= 64
        and "--" not in m.group(2)
        and m.group(3) not in SPECIAL_USE_DOMAIN_NAMES
    ):
        return lowered
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        raise ValueError(f"invalid email {shown(value)}: {e}") from None


_FORMATTING = str.maketrans("", "", " ()-./\u00a0")


def normalise_phone(value: str, country: str | None) -> str:
    """E.164 (`+12125550123`); a number without +country code is read as `country`'s."""
    fast = _plain_national(value, country) if country else None
    if fast:
        return fast
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException as e:
        if e.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and not country:
            raise ValueError(
                f"invalid phone {shown(value)}: no +country code, and the account has no country"
            ) from None
        raise ValueError(f"invalid phone {shown(value)}: {e._msg}") from None
    if not phonenumbers.is_valid_number(number):
        where = f"for {country}" if country and not value.lstrip().startswith("+") else ""
        raise ValueError(f"invalid phone {shown(value)}: not a valid phone number {where}".rstrip())
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _plain_national(value: str, country: str) -> str | None:
    """E.164 for a plain number of the account's own country, else None (the slow path decides)."""
    digits = value.translate(_FORMATTING)
    if digits.startswith("+"):
        digits = digits[1:]
        plus = True
    else:
        plus = False
    if not (digits.isascii() and digits.isdigit()):
        return None
    meta = _metadata(country)
    if meta is None:
        return None
    cc = str(meta.country_code)
    candidates = [digits[len(cc) :]] if plus else []
    if not plus:
        prefix = meta.national_prefix_for_parsing
        if prefix and prefix.isdigit() and digits.startswith(prefix):
            candidates.append(digits[len(prefix) :])
        candidates.append(digits)
    if plus and not digits.startswith(cc):
        return None
    for national in candidates:
        if national and national[0] != "0" and _valid_for(national, country, int(cc)):
            return f"+{cc}{national}"
    return None


TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@lru_cache(maxsize=64)
def _metadata(country: str) -> phonenumbers.PhoneMetadata | None:
    return phonenumbers.PhoneMetadata.metadata_for_region(country.upper(), None)


@lru_cache(maxsize=64)
def _validity(country: str) -> dict[int, re.Pattern[str]]:
    """Per national number length, one pattern: the region's general and type patterns.

    The same test as phonenumbers' `is_valid_number_for_region`, precompiled: a number is
    valid when it fits the general description and one number type (checked in tests).
    """
    meta = _metadata(country)
    general = meta.general_desc if meta else None
    if general is None or not general.national_number_pattern:
        return {}
    lengths = set(general.possible_length or range(1, 18))
    by_length: dict[int, re.Pattern[str]] = {}
    for n in lengths:
        types = [
            desc.national_number_pattern
            for desc in (getattr(meta, name) for name in TYPE_DESCS)
            if desc is not None
            and desc.national_number_pattern
            and (not desc.possible_length or n in desc.possible_length)
        ]
        if types:
            alternatives = "|".join(f"(?:{t})" for t in types)
            by_length[n] = re.compile(
                f"(?=(?:{general.national_number_pattern})$)(?:{alternatives})"
            )
    return by_length


def _valid_for(national: str, country: str, cc: int) -> bool:
    pattern = _validity(country).get(len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


@lru_cache(maxsize=1024)
def check_timezone(value: str) -> str:
    """An IANA time zone name such as `Europe/London`."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"invalid timezone {shown(value)}: use an IANA name such as America/New_York"
        ) from None
    return value
