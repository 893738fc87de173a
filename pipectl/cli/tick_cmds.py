"""tick and run: the scheduler, from cron or as a service."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Annotated

import typer

from .. import defaults
from ..durations import parse_user_time
from ..errors import DurationError, LockHeld
from ..scheduler.lock import tick_lock
from ..wording import counted
from .app import app, err, out, print_json


def _stop_on_signals() -> threading.Event:
    """SIGTERM or SIGINT: stop claiming, let sends in flight finish and be recorded."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _parse_now(now: str | None):
    try:
        return parse_user_time(now) if now else None
    except DurationError as e:
        raise typer.BadParameter(str(e), param_hint="--now") from None


@app.command()
def tick(
    ctx: typer.Context,
    now: Annotated[
        str | None, typer.Option(help="Run as if at this UTC time, e.g. 2027-03-01T14:00:00Z.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Send threads.")] = defaults.WORKERS,
    max_seconds: Annotated[
        float, typer.Option(min=0, help="Stop claiming new work after this many seconds.")
    ] = defaults.MAX_SECONDS,
    dry_run: Annotated[bool, typer.Option(help="Show what would be done; change nothing.")] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print nothing unless something failed.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="The summary as JSON.")] = False,
    sync_seconds: Annotated[
        float, typer.Option(min=0, help="Time for reading inboxes and SMS replies first.")
    ] = defaults.SYNC_SECONDS,
    no_sync: Annotated[
        bool, typer.Option("--no-sync", help="Skip reading inboxes and SMS replies.")
    ] = False,
) -> None:
    """One scheduler pass: perform the actions that are due. Run it from cron every minute.

    Exits 75 at once when another tick holds the lock.

    Example: * * * * * cd /srv/sales && pipectl tick -q
    """
    at = _parse_now(now)
    # Take the lock before loading the scheduler and its channels: a second tick exits 75 at once.
    with contextlib.nullcontext() if dry_run else tick_lock(ctx.obj["db"]):
        from ..scheduler.run import tick as run_tick

        summary = run_tick(
            ctx.obj["db"],
            now=at,
            workers=workers,
            max_seconds=max_seconds,
            dry_run=dry_run,
            stop=None if dry_run else _stop_on_signals(),
            locked=True,
            sync_seconds=0 if no_sync else sync_seconds,
        )
    if json_out:
        print_json(summary.as_dict())
        return
    if dry_run:
        for a in summary.would_send:
            what = (
                f"would send {a['type']} to {a['to']}"
                if a["to"]
                else f"would fail {a['type']}: the lead has no address for it"
            )
            if a.get("suppressed"):
                what = f"would fail {a['type']} to {a['to']}: {a['suppressed'].split(';')[0]}"
            sender = f", from {a['sender']}" if a.get("sender") else ""
            out.print(
                f"{what} (action {a['action_id']}, account {a['account']}{sender},"
                f" due {a['perform_at']})",
                markup=False,
            )
        out.print(
            f"dry run at {summary.now}: would admit {summary.admitted}, send "
            f"{len(summary.would_send)}, do {counted(summary.done, 'internal action')}; "
            f"{summary.held_back} due held back by limits; nothing was changed",
            markup=False,
        )
        return
    _print_summary(summary, quiet)


def _print_summary(summary, quiet: bool) -> None:  # noqa: ANN001  (TickSummary loads late)
    """The summary line, unless quiet and nothing failed; a failing channel is a failure."""
    if not quiet or summary.failed or summary.failing_channels:
        out.print(summary.line(), markup=False)
    for f in summary.failing_channels:
        err.print(
            f"WARNING: {f['account']}: {f['channel']} failing since {f['since']}: {f['error']}"
            " (its sends are held back; one is tried each tick)",
            markup=False,
        )
    if not quiet:  # a failing source is shown by `status` until it works again
        for error in summary.sync_errors:
            err.print(f"warning: sync: {error}", markup=False)


@app.command()
def run(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option(min=1, max=86400, help="Seconds between ticks.")
    ] = defaults.RUN_INTERVAL,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Send threads.")] = defaults.WORKERS,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only failures.")] = False,
) -> None:
    """Tick in a loop, for a systemd service; stops cleanly on SIGTERM.

    Example: pipectl --db /var/lib/pipectl/pipectl.db run --interval 60
    """
    from ..scheduler.run import tick as run_tick

    stop = _stop_on_signals()
    while not stop.is_set():
        started = time.monotonic()
        try:
            summary = run_tick(
                ctx.obj["db"], workers=workers, max_seconds=max(1.0, interval - 10), stop=stop
            )
            _print_summary(summary, quiet)
        except LockHeld as e:
            err.print(f"skipped: {e}", markup=False)
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
