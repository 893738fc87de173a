"""`pipectl db copy`: a SQLite database into an empty PostgreSQL one, every row and id kept.

The rows go in with COPY, table by table in the order foreign keys need, in one transaction
on the target: a copy that fails leaves the target as empty as it was. The report's counters
are copied as they are, with the triggers that keep them off while the rows go in. As
pg_restore does, the foreign keys and the query indexes are set aside while the rows go in
and added back after, each checked or built over all the rows at once (a key checked row by
row made the copy three times slower). Identity
columns then continue after the largest id copied, and the database's instance id (which
Message-IDs carry) is the source's, so a send repeated after the move has the same Message-ID.
Last, the copied tables are analyzed: without statistics (autovacuum off, or not yet come
round) the planner guessed thousands of `running` rows and planned every tick's recovery
with parallel workers (36 ms of a 1M-lead idle tick instead of 2.6).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import PipectlError
from .database import Database
from .pg_schema import table_order

BATCH = 10_000
# Not copied: the processes that ticked against the file are not runners of the new database.
LEFT_BEHIND = ("runners",)


def copy_database(
    source: Database, target: Database, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every table of `source` (SQLite) into `target` (PostgreSQL, empty); rows per table."""
    if source.postgres:
        raise PipectlError(f"{source.name}: db copy reads a SQLite database (--db a file)")
    if not target.postgres:
        raise PipectlError(f"{target.name}: db copy writes to PostgreSQL (--to postgresql://...)")
    tables = [t for t in table_order() if t not in LEFT_BEHIND]
    copied: dict[str, int] = {}
    raw = target.conn.raw  # type: ignore[attr-defined]
    source.conn.execute("BEGIN")  # one snapshot of the source
    try:
        with target.transaction():  # under the write lock: nothing fills it meanwhile
            held = [t for t in tables if t != "meta" and _has_rows(target, t)]
            if held:
                raise PipectlError(
                    f"{target.name} is not empty ({', '.join(held)} hold rows); db copy fills"
                    " an empty database only"
                )
            for table in tables:
                raw.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
            raw.execute("DELETE FROM meta WHERE key NOT IN ('schema_version')")
            rebuilt = _set_aside(raw)
            for table in tables:
                copied[table] = _copy_table(source, raw, table, progress)
            for statement in rebuilt:  # one sort or join per index and key, not one per row
                raw.execute(statement)
            for table in tables:
                raw.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
                if _has_identity(raw, table):
                    target.ids_given(table)
    finally:
        source.conn.execute("ROLLBACK")
    for table in tables:  # statistics for the planner, as after any bulk load
        if copied.get(table):
            raw.execute(f'ANALYZE "{table}"')
    return copied


def _copy_table(
    source: Database, raw: object, table: str, progress: Callable[[str, int], None] | None
) -> int:
    columns = [r[1] for r in source.conn.execute(f'PRAGMA table_info("{table}")')]
    names = ", ".join(f'"{c}"' for c in columns)
    where = " WHERE key NOT IN ('schema_version')" if table == "meta" else ""
    cursor = source.conn.cursor()
    cursor.row_factory = None
    cursor.execute(f'SELECT {names} FROM "{table}"{where}')
    count = 0
    with raw.cursor() as pg, pg.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:  # type: ignore[attr-defined]
        while rows := cursor.fetchmany(BATCH):
            for row in rows:
                copy.write_row(row)
            count += len(rows)
            if progress:
                progress(table, count)
    return count


def _set_aside(raw: object) -> list[str]:
    """Drop the foreign keys and the indexes that no constraint owns, as pg_restore loads
    rows before it adds them; returns the statements that put them back, each checking or
    building over all the rows at once (a key that does not hold fails the copy)."""
    keys = raw.execute(  # type: ignore[attr-defined]
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace ORDER BY conname"
    ).fetchall()
    indexes = raw.execute(  # type: ignore[attr-defined]
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relnamespace = current_schema()::regnamespace"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
        " ORDER BY c.relname"
    ).fetchall()
    for table, name, _ in keys:
        raw.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')  # type: ignore[attr-defined]
    for name, _ in indexes:
        raw.execute(f'DROP INDEX "{name}"')  # type: ignore[attr-defined]
    add = [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {rule}' for table, name, rule in keys]
    return [definition for _, definition in indexes] + add


def _has_rows(db: Database, table: str) -> bool:
    return bool(db.conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")').fetchone()[0])


def _has_identity(raw: object, table: str) -> bool:
    row = raw.execute(  # type: ignore[attr-defined]
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s AND column_name = 'id' AND is_identity = 'YES'",
        (table,),
    ).fetchone()
    return row is not None
