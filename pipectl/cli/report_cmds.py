"""status, actions list."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .app import app, open_store, out, print_json


@app.command()
def status(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per account: leads by state, and enrollments by state per pipeline.

    Example: pipectl status --account acme --json
    """
    store = open_store(ctx)
    account_id = store.account_by_key(account)["id"] if account else None
    report = store.status_report(account_id)
    if as_json:
        print_json(report)
        return
    if not report:
        out.print("no accounts yet: run `pipectl apply pipelines.yaml`")
    for entry in report:
        table = Table(title=f"{entry['account']} ({entry['name']}): {entry['leads']} leads")
        table.add_column("pipeline")
        table.add_column("state")
        table.add_column("leads", justify="right")
        for state, n in entry["leads_by_state"].items():
            table.add_row("(all)", state, str(n))
        for pipeline, states in entry["pipelines"].items():
            for state, n in states.items():
                table.add_row(pipeline, state, str(n))
        out.print(table)
        if entry["do_not_contact"]:
            out.print(f"do not contact: {entry['do_not_contact']}")
