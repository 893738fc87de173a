"""sync, replies list, suppressions: what arrived by itself, and who is never sent to again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..inbound import KINDS
from ..store.suppressions_sql import REASONS
from ..wording import counted
from .app import app, err, open_store, out, print_json, print_rows
from .reply_cmds import replies_app
from .report_cmds import NowOpt, parse_now

suppressions_app = typer.Typer(
    help="Addresses never to send to again: bounced, opted out, refused by the provider.",
    no_args_is_help=True,
)
app.add_typer(suppressions_app, name="suppressions")

AccountOpt = Annotated[str | None, typer.Option("--account", help="Only this account.")]
NeedAccount = Annotated[str, typer.Option("--account", help="The account.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command()
def sync(
    ctx: typer.Context,
    account: AccountOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print nothing unless a source failed.")
    ] = False,
) -> None:
    """Read replies, bounces and opt-outs from the inboxes and the SMS provider, and act on them.

    Exits 1 when a source could not be read (the message names the account, the source and
    the server). `tick` runs the same sync first.

    Example: pipectl sync --account acme
    """
    from ..inbound.sync import sync as run_sync

    store = open_store(ctx)
    results = run_sync(store, now=parse_now(now), account_key=account)
    errors = [e for r in results for e in r.total().errors]
    if as_json:
        print_json([r.as_dict() for r in results])
    elif not quiet:
        if not results:
            out.print("no inbound sources configured (channels.email.inbox, channels.sms.inbound)")
        for r in results:
            t = r.as_dict()
            failed = f", texts undelivered {t['failed_sends']}" if t["failed_sends"] else ""
            skipped = sum(s["skipped"] for s in t["sources"])
            late = f", {skipped} sources left for next time" if skipped else ""
            out.print(
                f"{t['account']}: fetched {t['fetched']}, replies {t['replies']},"
                f" auto-replies {t['auto_replies']}, bounces {t['bounces']},"
                f" opt-outs {t['opt_outs']}, unmatched {t['unmatched']}{failed}{late}",
                markup=False,
            )
    for error in errors:
        err.print(f"error: {error}", markup=False)
    if errors:
        raise typer.Exit(1)


@replies_app.command("list")
def list_replies(
    ctx: typer.Context,
    account: AccountOpt = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help=f"Only this kind: {', '.join(KINDS)}.")
    ] = None,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only messages that matched no lead.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=2**63 - 1, help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """What arrived, newest first: replies, auto-replies, opt-outs, bounces, with what each did.

    Example: pipectl replies list --account acme --unmatched
    """
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(
            f"unknown kind '{kind}'; use one of {', '.join(KINDS)}", param_hint="--kind"
        )
    store = open_store(ctx)
    account_id = store.config.account_by_key(account)["id"] if account else None
    replies = store.inbound.list_replies(
        account_id=account_id, kind=kind, unmatched=unmatched, limit=limit
    )
    if as_json:
        print_json(replies)
        return
    header: tuple[str, ...] = (
        "id",
        "received_at",
        "account",
        "lead",
        "channel",
        "kind",
        "from",
        "source",
    )
    header += ("text", "effect")
    rows = [
        (
            str(r["id"]),
            r["received_at"],
            r["account"],
            f"{r['lead_id']} {r['lead_email'] or r['lead_phone'] or ''}".strip()
            if r["lead_id"]
            else "unmatched",
            r["channel"],
            r["kind"],
            r["sender"] or "",
            r["source"],
            _excerpt(r["subject"], r["body"]),
            r["effect"] or "",
        )
        for r in replies
    ]
    print_rows(header, rows, "nothing has arrived that matches")


@suppressions_app.command("list")
def list_suppressions(ctx: typer.Context, account: AccountOpt = None, as_json: JsonOpt = False):
    """Suppressed addresses, newest first, with why.

    Example: pipectl suppressions list --account acme
    """
    store = open_store(ctx)
    account_id = store.config.account_by_key(account)["id"] if account else None
    entries = store.suppressions.list_suppressions(account_id)
    if as_json:
        print_json(entries)
        return
    header = ("account", "channel", "address", "reason", "since", "detail")
    rows = [
        (s["account"], s["channel"], s["address"], s["reason"], s["created_at"], s["detail"] or "")
        for s in entries
    ]
    print_rows(header, rows, "no suppressed addresses")


@suppressions_app.command("add")
def add_suppression(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="An email address or a phone number.")],
    account: NeedAccount,
    reason: Annotated[
        str,
        typer.Option(help=f"{', '.join(REASONS)}, or any text (kept as a manual reason)."),
    ] = "manual",
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Never send to this address again, whatever lead it belongs to.

    Example: pipectl suppressions add jane@example.com --account acme --reason "asked by phone"
    """
    result = open_store(ctx).suppressions.add_suppression(
        account, address, reason=reason, now=parse_now(now)
    )
    if as_json:
        print_json(result)
        return
    what = "suppressed" if result["added"] else "already suppressed"
    out.print(f"{result['address']} ({result['channel']}): {what} in {account}", markup=False)


@suppressions_app.command("remove")
def remove_suppression(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="An email address or a phone number.")],
    account: NeedAccount,
    as_json: JsonOpt = False,
) -> None:
    """Allow sends to an address again (do-not-contact leads stay do-not-contact).

    Example: pipectl suppressions remove jane@example.com --account acme
    """
    result = open_store(ctx).suppressions.remove_suppression(account, address)
    if as_json:
        print_json(result)
        return
    out.print(f"{result['address']} ({result['channel']}): no longer suppressed", markup=False)


@suppressions_app.command("import")
def import_suppressions(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Argument(metavar="CSV", help="An email or phone column; an optional reason."),
    ],
    account: NeedAccount,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Suppress every address of a provider's export; all or nothing.

    Example: pipectl suppressions import mailchimp-cleaned.csv --account acme
    """
    from ..suppressions import read_suppressions

    entries = read_suppressions(csv_file)
    result = open_store(ctx).suppressions.import_suppressions(
        account, entries, now=parse_now(now), file=str(csv_file)
    )
    if as_json:
        print_json(result)
        return
    addresses = counted(result["rows"], "address", "addresses")
    out.print(
        f"{csv_file}: {addresses}: {result['added']} suppressed,"
        f" {result['rows'] - result['added']} already suppressed",
        markup=False,
    )


def _excerpt(subject: str | None, body: str | None, width: int = 60) -> str:
    text = " ".join(" ".join(p for p in (subject, body) if p).split())
    return text if len(text) <= width else text[: width - 1] + "…"
