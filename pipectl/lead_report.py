"""A leads import's report: invalid rows and ignored placeholder values, counted, the first
few kept for the summary and all of them spooled, in bounded memory for a file of any size.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from .defaults import MAX_LISTED
from .errors import CsvError
from .leads import InvalidRow, LeadRecord


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
