"""init, validate, apply."""

from __future__ import annotations

import typer

from .app import app, open_store, out


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the database (idempotent).

    Example: pipectl --db /var/lib/pipectl/pipectl.db init
    """
    store = open_store(ctx)
    out.print(f"database ready: {store.path}")
