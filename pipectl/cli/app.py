"""The app, its global options and the one place errors become messages and exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup, TyperOption

from .. import __version__
from ..errors import ConfigError, DiskFull, PipectlError, is_no_space
from ..store import Store, default_db_path, is_disk_full
from ..store.postgres import redact


class _Console:
    """rich's Console, made on first use: a tick that prints nothing (`-q`) never loads rich."""

    def __init__(self, **options: Any):
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)

    def __enter__(self) -> Any:
        return self.__getattr__("__enter__")()

    def __exit__(self, *exc: Any) -> Any:
        return self.__getattr__("__exit__")(*exc)


out = _Console(highlight=False, soft_wrap=True)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag (`--json`, `--help`, `--version`) takes no value: show no type for it in help,
    as plain help does, instead of `<bool>`."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type: Any = getattr(TyperOption, "display_type_rich", None)
if _option_type is not None:  # typer 0.29 and later; earlier versions print no <bool>
    TyperOption.display_type_rich = _flag_type  # type: ignore[attr-defined, method-assign, unused-ignore]


class Group(TyperGroup):
    """Turns the product's errors into a message on stderr and an exit code, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            for problem in e.problems:
                err.print(problem, markup=False)
            raise typer.Exit(e.exit_code) from None
        except PipectlError as e:
            err.print(f"error: {e}", markup=False)
            raise typer.Exit(e.exit_code) from None
        except sqlite3.Error as e:
            db = ctx.obj.get("db") if ctx.obj else ""
            if is_disk_full(e, db or "."):
                err.print(f"error: {DiskFull(f'the database {db}', str(e))}", markup=False)
            else:
                err.print(f"error: database {db}: {e}", markup=False)
            raise typer.Exit(1) from None
        except Exception as e:
            if not type(e).__module__.startswith("psycopg"):
                if isinstance(e, OSError) and is_no_space(e):
                    err.print(f"error: {DiskFull(e.filename, e.strerror or '')}", markup=False)
                    raise typer.Exit(1) from None
                raise
            # PostgreSQL: the server went away, refused the login, or refused a statement.
            db = redact(str(ctx.obj.get("db"))) if ctx.obj else ""
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            err.print(f"error: database {db}: {first}", markup=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    add_completion=True,
    help="Sales-pipeline automation: pipelines in YAML, leads from CSV, a cron tick.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out.print(f"pipectl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="PIPECTL_DB",
            help="Database file (default ./pipectl.db), or a postgresql:// URL.",
        ),
    ] = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    ctx.obj = {"db": db or default_db_path()}


def open_store(ctx: typer.Context) -> Store:
    """The store named by --db / PIPECTL_DB, created and migrated when missing."""
    return Store(ctx.obj["db"])


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def is_terminal() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def print_rows(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]], empty: str) -> None:
    """A table on a terminal (then `empty` when there are no rows); piped, tab-separated
    lines with the header first, nothing cut short, for grep, awk and cut."""
    if not is_terminal():
        for row in (header, *rows):
            typer.echo("\t".join(map(str, row)))
        return
    from rich.table import Table  # loads only when a table is drawn

    table = Table(*header)
    for row in rows:
        table.add_row(*map(str, row))
    out.print(table)
    if not rows:
        out.print(empty)


def main() -> None:
    app()
