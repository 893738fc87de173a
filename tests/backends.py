"""The two backends the tests run against: a SQLite file, and a PostgreSQL schema of its own.

`PIPECTL_TEST_POSTGRES` names the server (default: the local one on 127.0.0.1:5432, user
postgres, database test). Each PostgreSQL test gets a fresh schema, named in the URL's
search_path, dropped afterwards. Where no server answers the tests skip with the reason,
except under CI, where they fail.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

SERVER = os.environ.get("PIPECTL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def is_url(db: object) -> bool:
    return isinstance(db, str) and db.startswith("postgresql://")


def _connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def server_or_skip() -> None:
    try:
        _connect(SERVER).close()
    except Exception as e:  # no server, no driver
        reason = f"PostgreSQL not reachable at {SERVER}: {e}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def schema_url(schema: str) -> str:
    sep = "&" if "?" in SERVER else "?"
    return f"{SERVER}{sep}options={quote(f'-csearch_path={schema}')}"


def new_schema() -> Iterator[str]:
    """A fresh schema as a URL; dropped with everything in it afterwards."""
    server_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with _connect(SERVER) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(schema)
    finally:
        with _connect(SERVER) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_rows(url: str, sql: str, params: tuple) -> list[dict]:
    from psycopg.rows import dict_row

    sql = re.sub(r"\?", "%s", sql.replace("%", "%%")) if params else sql
    with _connect(url) as conn:
        conn.row_factory = dict_row
        cur = conn.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description else []


def pg_dump(url: str) -> str:
    """Every table's rows, in order, as text: to show that a command changed nothing."""
    lines = []
    with _connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() ORDER BY table_name"
            )
        ]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                lines.append(f'INSERT INTO "{table}" VALUES{row!r}')
    return "\n".join(lines)
