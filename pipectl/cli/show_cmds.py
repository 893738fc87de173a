"""leads show: one lead's whole history, to answer "what happened to this lead?"."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .app import is_terminal, open_store, out, print_json
from .leads_cmds import leads_app


@leads_app.command("show")
def show(
    ctx: typer.Context,
    lead: Annotated[str, typer.Argument(help="The lead's id, email or phone.")],
    account: Annotated[
        str | None, typer.Option("--account", help="Look the lead up in this account only.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One lead: its fields, and per pipeline the stages, actions, sends and replies in order.

    Example: pipectl leads show maria.gonzalez@brightpath-homes.com --account acme
    """
    result = open_store(ctx).reports.lead_timeline(lead, account_key=account)
    if as_json:
        print_json(result)
        return
    _render(result)


def _render(lead: dict[str, Any]) -> None:
    name = " ".join(p for p in (lead["first_name"], lead["last_name"]) if p)
    out.print(
        f"lead {lead['id']} ({lead['account']}): {name or '(no name)'}"
        f" <{lead['email'] or '-'}> {lead['phone'] or '-'}; status {lead['status'] or '-'}"
        + ("; DO NOT CONTACT" if lead["do_not_contact"] else ""),
        markup=False,
    )
    if lead.get("sender"):
        out.print(f"sender: {lead['sender']}", markup=False)
    if lead["fields"]:
        fields = ", ".join(f"{k}={v}" for k, v in lead["fields"].items())
        out.print(f"fields: {fields}", markup=False)
    terminal = is_terminal()
    for e in lead["enrollments"]:
        out.print(
            f"\n{e['pipeline']}: {e['state']} (queued {e['queued_at']}, started"
            f" {e['started_at'] or '-'}, finished {e['finished_at'] or '-'})",
            markup=False,
        )
        header = ("stage", "#", "action", "id", "status", "perform_at", "performed_at", "tries")
        rows = [
            (
                s["stage"],
                str(a["sequence_number"]),
                a["type"],
                str(a["id"]),
                a["status"],
                a["perform_at"] or "-",
                a["performed_at"] or "-",
                str(a["attempts"]),
                a["last_error"] or "",
            )
            for s in e["stages"]
            for a in s["actions"] or [{"sequence_number": "", "type": "", "id": "", **_EMPTY}]
        ]
        if terminal:
            from rich.table import Table  # loads only when a table is drawn

            table = Table(*header, "last error")
            for row in rows:
                table.add_row(*row)
            out.print(table)
        else:
            for row in (header + ("last_error",), *rows):
                typer.echo("\t".join(row))
    out.print("\ntimeline:", markup=False)
    for ev in lead["timeline"]:
        where = f"{ev['pipeline']}: " if ev["pipeline"] else ""
        out.print(f"  {ev['at']}  {where}{ev['event']}", markup=False)


_EMPTY = {"status": "", "perform_at": "", "performed_at": "", "attempts": "", "last_error": ""}
