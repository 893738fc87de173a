"""reply, replies import, leads stop: what leads say back, and stopping them by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..durations import format_time, utcnow
from ..errors import PipectlError
from ..wording import counted
from .app import app, open_store, out, print_json
from .leads_cmds import leads_app

replies_app = typer.Typer(
    help="What arrived (list), or record many replies at once (import).", no_args_is_help=True
)
app.add_typer(replies_app, name="replies")

AccountOpt = Annotated[str, typer.Option("--account", help="The account the leads belong to.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
def reply(
    ctx: typer.Context,
    account: AccountOpt,
    email: Annotated[str | None, typer.Option(help="The sender's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="The sender's phone number.")] = None,
    channel: Annotated[
        str | None, typer.Option(help="email or sms (default: email with --email, else sms).")
    ] = None,
    body: Annotated[str, typer.Option(help="The text of the reply.")] = "",
    at: Annotated[
        str | None, typer.Option("--at", help="When it was received (default now), UTC ISO-8601.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an inbound reply: it ends the lead's wait for a reply; STOP opts the lead out.

    Example: pipectl reply --account acme --phone +12125550123 --body "Yes, call me"
    """
    if (email is None) == (phone is None):
        raise typer.BadParameter(
            "give exactly one of --email or --phone", param_hint="--email/--phone"
        )
    from ..replies import check_channel, check_time

    try:
        channel = check_channel(channel, "email" if email else "sms", "")
    except PipectlError as e:  # a choice the option does not offer: a usage error
        raise typer.BadParameter(str(e).strip(), param_hint="--channel") from None
    try:
        received_at = check_time(at, "--at") if at else format_time(utcnow())
    except PipectlError as e:
        raise typer.BadParameter(str(e).removeprefix("--at: "), param_hint="--at") from None
    result = open_store(ctx).replies.record_reply(
        account, email=email, phone=phone, channel=channel, body=body, received_at=received_at
    )
    if as_json:
        print_json(result)
        return
    kind = "opt-out" if result["opt_out"] else "reply"
    if result.get("unmatched"):
        [r] = result["replies"]
        out.print(
            f"{kind} from {result['sender']} (no lead) at {received_at}: {r['effect']}",
            markup=False,
        )
        return
    for r in result["replies"]:
        out.print(
            f"{kind} from lead {r['lead_id']} ({r['lead']}) at {received_at}: {r['effect']}",
            markup=False,
        )


@replies_app.command("import")
def import_replies(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Argument(
            metavar="CSV",
            help="Columns: email or phone (or From: either), channel, body, received_at.",
        ),
    ],
    account: AccountOpt,
    as_json: JsonOpt = False,
) -> None:
    """Record replies from a CSV export; rows matching no lead are reported, not fatal.

    Example: pipectl replies import inbox-export.csv --account acme
    """
    from ..replies import read_replies

    replies = read_replies(csv_file, now=format_time(utcnow()))
    summary = open_store(ctx).replies.import_replies(account, replies)
    if as_json:
        print_json(summary)
        return
    out.print(
        f"{csv_file}: {counted(summary['rows'], 'reply', 'replies')}: {summary['matched']}"
        f" matched ({counted(summary['opt_outs'], 'opt-out')}),"
        f" {len(summary['unmatched'])} unmatched{_unmatched_opt_outs(summary)}",
        markup=False,
    )
    for u in summary["unmatched"]:
        out.print(f"  {csv_file}:{u['line']}: unmatched: {u['reason']}", markup=False)


def _unmatched_opt_outs(summary: dict) -> str:
    """The opt-outs among the unmatched rows: kept, their senders suppressed."""
    n = summary["unmatched_opt_outs"]
    if not n:
        return ""
    suppressed = counted(summary["senders_suppressed"], "sender")
    return f" ({counted(n, 'opt-out')}: {suppressed} suppressed)"


@leads_app.command("stop")
def stop(
    ctx: typer.Context,
    lead: Annotated[str, typer.Argument(help="The lead's id, email or phone.")],
    account: Annotated[
        str | None, typer.Option("--account", help="Look the lead up in this account only.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a lead's automation in every pipeline; its remaining actions are skipped.

    Example: pipectl leads stop jane@example.com
    """
    result = open_store(ctx).replies.stop_lead(lead, account_key=account)
    if as_json:
        print_json(result)
        return
    who = result["email"] or result["phone"]
    pipelines = ", ".join(result["stopped"]) or "no running automation"
    out.print(f"stopped lead {result['lead_id']} ({who}): {pipelines}", markup=False)
