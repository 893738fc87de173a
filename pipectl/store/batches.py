"""Set-based writes for a batch of rows: one statement for many rows, on both backends.

Against PostgreSQL every statement is a network round trip, so the tick writes a batch of
results with one `UPDATE ... FROM (VALUES ...)` or one multi-row `INSERT`, never a statement
per row. Both SQLite (3.33 and later) and PostgreSQL name a VALUES list's columns `column1`,
`column2`, ...; the statements join on those names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# Rows per statement: well under both backends' limits on parameters (SQLite 32,766,
# PostgreSQL 65,535) for rows of up to a dozen values.
CHUNK = 500


def chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """`rows` in slices of at most `size`."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def rows_marks(count: int, width: int) -> str:
    """`(?, ?), (?, ?)`: `count` rows of `width` placeholders, for `VALUES`."""
    row = f"({', '.join('?' * width)})"
    return ", ".join([row] * count)


def values(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """`(VALUES (?, ?), ...) AS v` for rows of equal width, and their values in order: the
    batch as a table to join, its columns `v.column1`, `v.column2`, ... (text and integers;
    a column that may be all NULL is best set only into TEXT columns)."""
    table = f"(VALUES {rows_marks(len(rows), len(rows[0]))}) AS v"
    return table, [value for row in rows for value in row]
