"""The typer app: parse, call one core function, render. The only place that prints or exits.

Commands live in one small module per area; each registers itself on `app` or a sub-app.
"""

from __future__ import annotations

from . import (  # noqa: F401  (register commands)
    config_cmds,
    db_cmds,
    hooks_cmds,
    inbound_cmds,
    leads_cmds,
    operator_cmds,
    reply_cmds,
    report_cmd,
    report_cmds,
    show_cmds,
    tick_cmds,
)
from .app import app, main

__all__ = ["app", "main"]
