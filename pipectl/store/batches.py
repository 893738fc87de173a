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


def joined(table: str, rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """`FROM (VALUES (?, ?), ...) AS v WHERE <table>.id IN (...) AND <table>.id = v.column1`
    for rows (id, value, ...) of equal width, and its parameters in order: the batch as a
    table to update from, its values `v.column2`, `v.column3`, ... The `IN` list makes
    PostgreSQL find the rows by primary key, whatever its statistics say about the tables'
    sizes. Values are text or integers; a column that may be all NULL is best set only into
    TEXT columns."""
    ids = [row[0] for row in rows]
    clause = (
        f"FROM (VALUES {rows_marks(len(rows), len(rows[0]))}) AS v "
        f"WHERE {table}.id IN ({', '.join('?' * len(ids))}) AND {table}.id = v.column1"
    )
    return clause, [value for row in rows for value in row] + ids
