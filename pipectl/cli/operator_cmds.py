"""actions list, retry, leads enroll: inspect failed work and fix it with one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..durations import format_time, utcnow
from ..errors import CsvError, PipectlError
from ..store.reports_sql import ACTION_STATUSES
from ..wording import counted
from .app import app, err, open_store, out, print_json, print_rows
from .leads_cmds import leads_app
from .report_cmds import NowOpt, parse_now

actions_app = typer.Typer(help="Inspect the actions leads are due, waiting for or failed.")
app.add_typer(actions_app, name="actions", no_args_is_help=True)

AccountOpt = Annotated[str | None, typer.Option("--account", help="Only this account.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@actions_app.command("list")
def list_actions(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="waiting, pending, running, awaiting_reply, done, failed or skipped.",
        ),
    ] = None,
    account: AccountOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=2**63 - 1, help="At most this many.")
    ] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Actions, newest first, with their lead, stage, attempts and last error.

    Example: pipectl actions list --status failed --account acme
    """
    if status is not None and status not in ACTION_STATUSES:
        raise typer.BadParameter(
            f"unknown status '{status}'; use one of {', '.join(ACTION_STATUSES)}",
            param_hint="--status",
        )
    store = open_store(ctx)
    account_id = store.config.account_by_key(account)["id"] if account else None
    actions = store.reports.list_actions(status=status, account_id=account_id, limit=limit)
    if as_json:
        print_json(actions)
        return
    header: tuple[str, ...] = (
        "id",
        "account",
        "lead",
        "pipeline/stage",
        "#",
        "type",
        "status",
        "perform_at",
    )
    header += ("tries", "last error")
    rows = [
        (
            str(a["id"]),
            a["account"],
            f"{a['lead_id']} {a['email'] or a['phone'] or ''}".strip(),
            f"{a['pipeline']}/{a['stage']}",
            str(a["sequence_number"]),
            a["type"],
            a["status"],
            a["perform_at"] or "-",
            str(a["attempts"]),
            a["last_error"] or "",
        )
        for a in actions
    ]
    print_rows(header, rows, "no actions match")


@app.command()
def retry(
    ctx: typer.Context,
    action_id: Annotated[
        int | None,
        typer.Argument(metavar="[ACTION_ID]", max=2**63 - 1, help="The failed action's id."),
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="With --failed: this account's.")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed action of --account.")
    ] = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requeue failed actions: due now, attempts reset; the lead resumes in that stage.

    Example: pipectl retry --account acme --failed
    """
    if (action_id is None) == (not failed):
        raise typer.BadParameter("give an ACTION_ID, or --account A --failed")
    if failed and not account:
        raise typer.BadParameter("--failed needs --account", param_hint="--failed")
    store = open_store(ctx)
    account_id = store.config.account_by_key(account)["id"] if failed and account else None
    result = store.operator.retry_actions(
        now=parse_now(now), action_id=action_id, account_id=account_id
    )
    if as_json:
        print_json(result)
        return
    ids = ", ".join(map(str, result["retried"])) or "none"
    retried = counted(len(result["retried"]), "action")
    out.print(f"retried {retried} ({ids}); the next tick runs them")
    if result["skipped"]:
        skipped = counted(len(result["skipped"]), "action")
        out.print(f"skipped {skipped} of stopped or do-not-contact leads")
    for r in result["refused"]:
        err.print(f"action {r['action_id']} not retried: {r['reason']}", markup=False)


@leads_app.command("enroll")
def enroll(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="The leads' account.")],
    pipeline: Annotated[str, typer.Option("--pipeline", help="The pipeline to enroll them in.")],
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="Entry stage (default: the first that is not an outcome)."),
    ] = None,
    leads: Annotated[
        list[str] | None,
        typer.Option("--lead", help="A lead's id, email or phone (repeatable)."),
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--file", help="A CSV naming the leads by email or phone."),
    ] = None,
    re_enroll: Annotated[
        bool,
        typer.Option(
            "--re-enroll",
            help="Restart leads whose run in the pipeline finished (won/lost/idle).",
        ),
    ] = False,
    include_failed: Annotated[
        bool,
        typer.Option("--include-failed", help="With --re-enroll: restart failed runs too."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue existing leads in a pipeline; the next tick admits them within active_leads.

    Leads already in the pipeline are left alone; with --re-enroll, those whose run finished
    (won, lost, idle; failed too with --include-failed) restart at the entry stage. Runs still
    queued or active, runs stopped by hand and do-not-contact leads are never restarted.

    Example: pipectl leads enroll --account acme --pipeline adwords --lead jane@example.com
    """
    if not leads and csv_file is None:
        raise typer.BadParameter("name the leads with --lead (repeatable) or --file CSV")
    if include_failed and not re_enroll:
        raise typer.BadParameter(
            "--include-failed needs --re-enroll", param_hint="--include-failed"
        )
    store = open_store(ctx)
    acct = store.config.account_by_key(account)
    pipe = store.config.pipeline_by_key(pipeline)
    if pipe["account_id"] != acct["id"]:
        raise PipectlError(f"pipeline '{pipeline}' does not belong to account '{account}'")
    lead_ids = [store.replies.resolve_lead(ref, account_key=account)["id"] for ref in leads or []]
    if csv_file is not None:
        from ..leads import InvalidRow, open_leads  # phonenumbers loads only when needed

        leads_file = open_leads(csv_file, country=acct["country"])
        records = list(leads_file)
        invalid = [str(r) for r in records if isinstance(r, InvalidRow)]
        if invalid:
            raise CsvError("\n".join(invalid[:20]) + "\nnothing enrolled", invalid)
        lead_ids += store.operator.match_leads(acct["id"], records, file=leads_file.name)  # type: ignore[arg-type]
    # Without --stage, the first stage that is not an outcome, stored as the entry stage.
    stage_id = store.enrollment.entry_stage(pipe["id"], stage)["id"]
    result = store.operator.enroll_leads(
        acct["id"],
        pipe["id"],
        stage_id,
        lead_ids,
        now=format_time(utcnow()),
        re_enroll=re_enroll,
        include_failed=include_failed,
    )
    if as_json:
        print_json({"pipeline": pipeline, **result})
        return
    re_enrolled = len(result["re_enrolled"])
    out.print(
        f"{pipeline}: {len(result['queued'])} queued for enrollment"
        + (f" ({re_enrolled} re-enrolled)" if re_enrolled else "")
        + f", {len(result['already_enrolled'])} already enrolled,"
        f" {len(result['do_not_contact'])} do-not-contact not enrolled",
        markup=False,
    )
    if result["already_enrolled"] and not re_enroll:
        out.print("  (--re-enroll restarts those whose run finished)", markup=False)
