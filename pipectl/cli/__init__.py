"""The typer app: parse, call one core function, render. The only place that prints or exits.

Commands live in one small module per area; each registers itself on `app` or a sub-app.
"""

from __future__ import annotations

from . import config_cmds, leads_cmds, reply_cmds, report_cmds, tick_cmds  # noqa: F401  (register commands)
from .app import app, main

__all__ = ["app", "main"]
