"""PostgreSQL behind the same parts: a connection that reads the parts' SQL as SQLite's.

The parts write portable SQL with `?` placeholders and read rows by name or position, as
`sqlite3` gives them. `PgConnection` keeps that contract on psycopg 3, so no part knows which
database it talks to: it turns `?` into `%s`, drops SQLite's index hints (`INDEXED BY`),
reads `json_each(?)` lists with `json_array_elements_text`, and answers `PRAGMA`s with
nothing. Everything else the parts write runs unchanged on both.

psycopg is imported only here, and only when a `postgresql://` URL is opened: SQLite users
install nothing more (`pip install 'pipectl[postgres]'` adds it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from ..errors import PipectlError

URL_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.lower().startswith(URL_PREFIXES)


def redact(url: str) -> str:
    """The URL without its password, for messages: `user:***@` (the password may hold `@`:
    everything up to the last `@` before the host is userinfo), and no `password=` value."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    tail = re.sub(r"(?i)(password=)[^&]*", r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"


class Row(tuple):  # type: ignore[type-arg, unused-ignore]
    """A row by position or by name, like `sqlite3.Row` (`dict(row)` works too)."""

    __slots__ = ()
    names: tuple[str, ...] = ()
    positions: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override, unused-ignore]
        if isinstance(key, str):
            return tuple.__getitem__(self, self.positions[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "names": names, "positions": _index(names)})


def _index(names: tuple[str, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)  # the first of two same-named columns, as sqlite3 does
    return index


def _named_rows(cursor: Any) -> Any:
    names = tuple(c.name for c in cursor.description or ())
    cls = _row_class(names)
    return lambda values: cls(values)


def _tuple_rows(cursor: Any) -> Any:
    return tuple


_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?|%")
_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+", re.IGNORECASE)
_JSON_LIST = re.compile(r"json_each\(\?\)", re.IGNORECASE)
_JSON_OBJECT = re.compile(r"json_each\((\w+\.\w+)\)", re.IGNORECASE)
_TEMP = re.compile(r"\btemp\.(?=\w)")
# SQLite's `a IS NOT b` between values that may be NULL (PostgreSQL's IS takes NULL only).
# A parameter tested for NULL has no type PostgreSQL can infer.
_PARAM_IS_NULL = re.compile(r"(?<![\w.])\?(?= IS (?:NOT )?NULL\b)")
_IS_NOT = re.compile(r"\bIS NOT (?!NULL\b|DISTINCT\b)")


@lru_cache(maxsize=4096)
def translate(sql: str, params: bool = True) -> str:
    """SQLite's spelling of the parts' SQL in PostgreSQL's (cached: the parts' SQL is a
    few hundred distinct strings). Without parameters, `%` stays as it is."""
    sql = _INDEXED_BY.sub("", sql)
    sql = _JSON_LIST.sub("json_array_elements_text(?::json) AS json_each(value)", sql)
    sql = _JSON_OBJECT.sub(r"json_each(\1::json)", sql)
    sql = _TEMP.sub("pg_temp.", sql)
    sql = _IS_NOT.sub("IS DISTINCT FROM ", sql)
    sql = _PARAM_IS_NULL.sub("CAST(? AS TEXT)", sql)

    def mark(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "?":
            return "%s"
        if not params:
            return token
        return token.replace("%", "%%")  # psycopg reads % everywhere, literals included

    return _QUOTED_OR_MARK.sub(mark, sql)


class _NoRows:
    """What a `PRAGMA` returns on PostgreSQL: nothing (they tune SQLite only)."""

    rowcount = -1
    description = None

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class PgCursor:
    """A psycopg cursor that takes the parts' SQL; `row_factory = None` gives plain tuples."""

    def __init__(self, raw: Any):
        self.raw = raw

    @property
    def row_factory(self) -> Any:
        return self.raw.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self.raw.row_factory = _tuple_rows if factory is None else _named_rows

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        if sql.lstrip()[:6].upper() == "PRAGMA":
            return _NoRows()
        if params:
            self.raw.execute(translate(sql), tuple(params))
        else:  # the simple protocol: several statements may go in one round trip
            self.raw.execute(translate(sql, False))
        return self

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = [tuple(r) for r in rows]
        if rows:
            self.raw.executemany(translate(sql), rows)
        return self

    def fetchone(self) -> Any:
        return self.raw.fetchone() if self.raw.description else None

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall() if self.raw.description else []

    def fetchmany(self, size: int) -> list[Any]:
        return self.raw.fetchmany(size) if self.raw.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.raw) if self.raw.description else iter(())

    @property
    def rowcount(self) -> int:
        return int(self.raw.rowcount)

    @property
    def description(self) -> Any:
        return self.raw.description

    def close(self) -> None:
        self.raw.close()


class PgConnection:
    """One psycopg connection in autocommit mode: `Database` says BEGIN and COMMIT itself,
    as it does on SQLite, so `in_transaction` means the same on both."""

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise PipectlError(
                "PostgreSQL needs psycopg: pip install 'pipectl[postgres]'"
            ) from None
        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            said = _first_line(e)
            password = _password(url)
            if password:
                said = said.replace(password, "***")
            raise PipectlError(f"{redact(url)}: cannot connect: {said}") from None
        self.raw.adapters.register_dumper(bool, _bool_dumper(psycopg))
        self.raw.adapters.register_loader("numeric", _number_loader())
        self.raw.row_factory = _named_rows

    def cursor(self) -> PgCursor:
        return PgCursor(self.raw.cursor())

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self.cursor().executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self.raw.info.transaction_status != TransactionStatus.IDLE)

    def close(self) -> None:
        self.raw.close()


def _bool_dumper(psycopg: Any) -> type:
    """Python booleans go into the integer flag columns as 0 and 1, as sqlite3 writes them."""
    from psycopg.adapt import Dumper

    class IntBool(Dumper):
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    return IntBool


def _number(data: Any) -> int | float:
    text = bytes(data).decode()
    return float(text) if "." in text or "e" in text.lower() else int(text)


def _number_loader() -> type:
    """`sum()` of integers is `numeric` in PostgreSQL: read it as the int SQLite gives (a
    Decimal would print as a string in JSON)."""
    from psycopg.adapt import Loader

    class NumberLoader(Loader):
        def load(self, data: Any) -> int | float:
            return _number(data)

    return NumberLoader


def _password(url: str) -> str:
    """The password a URL holds, if any: to keep it out of the server's messages."""
    authority = url.partition("://")[2].partition("/")[0]
    userinfo = authority.rpartition("@")[0]
    found = re.search(r"(?i)password=([^&]*)", url)
    return userinfo.partition(":")[2] or (found.group(1) if found else "")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
