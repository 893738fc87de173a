"""hooks test, hooks list: webhooks to the team's other tools."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import defaults
from ..durations import format_time, utcnow
from ..errors import PipectlError
from ..statuses import HookEvent, values
from ..wording import counted
from .app import app, open_store, out, print_json, print_rows

hooks_app = typer.Typer(
    help="Webhooks: events (replied, won, failed, ...) posted to the team's other tools.",
    no_args_is_help=True,
)
app.add_typer(hooks_app, name="hooks")


@hooks_app.command("test")
def test_hook(
    url: Annotated[str, typer.Argument(help="The receiver's URL (http or https).")],
    secret_env: Annotated[
        str | None,
        typer.Option("--secret-env", help="Sign with the secret in this environment variable."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="'Name: value' to send too (${VAR}s read); repeatable."),
    ] = None,
    event: Annotated[
        str, typer.Option("--event", help=f"The sample's type: {', '.join(values(HookEvent))}.")
    ] = HookEvent.REPLIED.value,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the answer.", min=0.1)
    ] = defaults.HOOK_TIMEOUT,
) -> None:
    """Post a sample event to URL, signed as the tick signs, and print the receiver's answer.

    Exits 0 when the receiver answers 2xx, 1 otherwise (with what went wrong).

    Example: pipectl hooks test https://hooks.example/pipectl --secret-env HOOK_SECRET
    """
    import httpx  # loaded by this command only: `pipectl --help` stays fast

    from ..channels.webhooks import Endpoint, post_event, sample_event
    from ..config.hooks import url_problem

    if event not in values(HookEvent):
        raise typer.BadParameter(
            f"must be one of {', '.join(values(HookEvent))}", param_hint="--event"
        )
    problem = url_problem(url)
    if problem:
        raise typer.BadParameter(problem, param_hint="URL")
    headers = {}
    for item in header or []:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            raise typer.BadParameter(f"{item!r} is not 'Name: value'", param_hint="--header")
        headers[name.strip()] = value.strip()
    secret = f"${{{secret_env}}}" if secret_env else None
    event_id, body = sample_event(event, format_time(utcnow()))
    with httpx.Client(follow_redirects=False) as client:
        posted = post_event(client, Endpoint(url, secret, headers, timeout), event, event_id, body)
    if not posted.delivered:
        raise PipectlError(f"hooks test: not delivered: {posted.error}")
    signed = "signed" if secret else "unsigned"
    out.print(
        f"HTTP {posted.status}: delivered a sample {event} event ({signed}, id {event_id})",
        markup=False,
    )


@hooks_app.command("retry")
def retry_hook_events(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="Only this hook (its url as in the YAML).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Send again the events that failed for good (their attempts used up), oldest first,
    with fresh attempts, at the next tick.

    Example: pipectl hooks retry --url https://hooks.example/pipectl
    """
    requeued = open_store(ctx).hooks.retry_failed(url)
    if as_json:
        print_json({"requeued": requeued})
    else:
        out.print(f"requeued {counted(requeued, 'event')}; the next tick sends them", markup=False)


@hooks_app.command("list")
def list_hooks(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The hooks applied from the YAML, with their events waiting and failed, and why a
    failing hook fails.

    Example: pipectl hooks list --json
    """
    hooks = open_store(ctx).hooks.hooks_status()
    if as_json:
        print_json(hooks)
        return
    header = ("url", "account", "events", "waiting", "failed", "state")
    rows = [
        (
            h["url"],
            h["account"] or "all",
            ",".join(h["events"]),
            h["waiting"],
            h["failed"],
            f"FAILING since {h['failing_since']}: {h['last_error']}"
            if h["last_error"]
            else f"last delivered {h['last_delivered_at'] or 'never'}",
        )
        for h in hooks
    ]
    print_rows(header, rows, "no hooks: add `hooks:` to pipelines.yaml and run apply")
