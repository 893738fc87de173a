"""`pipectl db copy`: move a SQLite database to PostgreSQL."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import PipectlError
from .app import app, out, print_json

db_app = typer.Typer(help="Move the database: copy a SQLite file into PostgreSQL.")
app.add_typer(db_app, name="db", no_args_is_help=True)


@db_app.command("copy")
def copy(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="The PostgreSQL database to fill: postgresql://...")
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Rows copied per table, as JSON.")
    ] = False,
) -> None:
    """Copy the SQLite database (--db) into an empty PostgreSQL database, every table and id
    kept; refuses a target that is not empty. No tick runs against the file meanwhile.

    Example: pipectl --db pipectl.db db copy --to postgresql://sales@db.internal/sales
    """
    from ..scheduler.lock import tick_lock
    from ..store import Store, one_tick_at_a_time
    from ..store.copy import copy_database

    if one_tick_at_a_time(to):
        raise PipectlError(f"--to {to}: give a postgresql:// URL")
    with tick_lock(ctx.obj["db"]):
        source, target = Store(ctx.obj["db"]), Store(to)
        try:
            copied = copy_database(source.database, target.database)
        finally:
            source.close()
            target.close()
    if json_out:
        print_json(copied)
        return
    total = sum(copied.values())
    out.print(f"copied {total:,} rows in {len(copied)} tables into {target.name}")
    for table, n in copied.items():
        if n:
            out.print(f"  {table}: {n:,}")
