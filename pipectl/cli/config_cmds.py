"""init, validate, apply."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..store.config_plan import CHANGED, CREATED, REMOVED, UNCHANGED, Plan, RemovalRefused
from .app import app, open_store, out, print_json

if TYPE_CHECKING:
    from ..config import Config

FileArg = Annotated[Path, typer.Argument(help="The pipelines YAML file.", show_default=True)]
MARKS = {CREATED: "[green]+[/]", CHANGED: "[yellow]~[/]", REMOVED: "[red]-[/]"}


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the database (idempotent).

    Example: pipectl --db /var/lib/pipectl/pipectl.db init
    """
    store = open_store(ctx)
    out.print(f"database ready: {store.name}")


@app.command()
def validate(file: FileArg = Path("pipelines.yaml")) -> None:
    """Check a pipelines YAML, templates included; print every problem as file:line: message.

    Example: pipectl validate pipelines.yaml
    """
    from ..config import load_config  # YAML and Jinja2 load only for the commands using them

    config = load_config(file)
    out.print(f"{file}: ok ({_counts(config)})", markup=False)


@app.command()
def apply(
    ctx: typer.Context,
    file: FileArg = Path("pipelines.yaml"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan and write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Remove stages and pipelines even while leads are in them."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Load the YAML into the database in one transaction and print what changed.

    Example: pipectl apply pipelines.yaml --dry-run
    """
    from ..config import load_config

    config = load_config(file)
    try:
        plan = open_store(ctx).config.apply_config(config, force=force, dry_run=dry_run)
    except RemovalRefused as e:
        if dry_run:  # the plan first, then why it cannot be applied as it is
            e.plan.dry_run = True
            if as_json:
                print_json({**e.plan.as_json(), "refused": e.refused})
            else:
                _print_plan(file, config, e.plan)
        raise
    if as_json:
        print_json(plan.as_json())
        return
    _print_plan(file, config, plan)


def _print_plan(file: Path, config: Config, plan: Plan) -> None:
    for change in plan.changes:
        if change.change == UNCHANGED:
            continue
        detail = f" ({change.detail})" if change.detail else ""
        out.print(f"  {MARKS[change.change]} {change.kind} {change.key}: {change.change}{detail}")
    prefix = "dry run, nothing written: " if plan.dry_run else ""
    if not plan.changed:
        out.print(f"{prefix}{file}: nothing changed ({_counts(config)})", markup=False)
        return
    counts = ", ".join(
        f"{plan.count(name)} {name}" for name in (CREATED, CHANGED, UNCHANGED, REMOVED)
    )
    verb = "would apply" if plan.dry_run else "applied"
    out.print(f"{prefix}{verb} {file}: {counts}", markup=False)


def _counts(config: Config) -> str:
    stages = [s for p in config.pipelines for s in p.stages]
    actions = sum(len(s.actions) for s in stages)
    return ", ".join(
        _plural(n, word)
        for n, word in (
            (len(config.accounts), "account"),
            (len(config.pipelines), "pipeline"),
            (len(stages), "stage"),
            (actions, "action"),
            (len(config.hooks), "hook"),
        )
        if n or word != "hook"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
