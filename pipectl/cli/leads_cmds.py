"""leads import, list, show, stop, enroll."""

from __future__ import annotations

import typer

from .app import app

leads_app = typer.Typer(help="Import, list, show, stop and enroll leads.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")
