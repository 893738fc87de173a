"""cron starts `pipectl tick` every minute: the CLI and an idle tick load no channel, no template
engine, no HTTP client, no phone or email parser, no pydantic and (with -q) no rich; each
loads when a command needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .scenario import ONE_EMAIL, setup

HEAVY = (
    "jinja2",
    "httpx",
    "phonenumbers",
    "email_validator",
    "idna",
    "smtplib",
    "yaml",
    "pipectl.templates",
    "pipectl.config",
    "pipectl.leads",
    "pipectl.channels.email",
    "pipectl.channels.sms",
    "pipectl.channels.outbox",
    "pydantic",  # typer 0.29 loads it for every command (pyproject pins typer below it)
    "rich.console",  # only to print: `tick -q` prints nothing
)

# Runs the CLI as `pipectl` does, in a fresh interpreter, then reports which modules it loaded.
PROBE = """\
import json, sys
from pipectl.cli import app
try:
    app(sys.argv[1:], prog_name="pipectl")
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m in %r)}))
"""


def loaded_by(*args: str) -> tuple[int, list[str]]:
    """Exit code and the heavy modules loaded by `pipectl ARGS` in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["loaded"]


def test_importing_the_cli_loads_no_channel_or_parser():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, pipectl.cli; print([m for m in {HEAVY!r} if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_an_idle_tick_and_status_load_nothing_a_send_needs(cli, db: Path, tmp_path: Path):
    setup(
        cli,
        tmp_path,
        ONE_EMAIL.replace("- email:", "- wait: 1d\n          - email:"),
        {("acme", "drip"): 3},
    )
    assert cli("tick", "--now", "2027-03-01T14:00:00Z").exit_code == 0  # admitted, now waiting
    assert loaded_by("--db", str(db), "tick", "-q", "--now", "2027-03-01T15:00:00Z") == (0, [])
    status = loaded_by("--db", str(db), "status", "--now", "2027-03-01T15:00:00Z")
    assert status == (0, ["rich.console"])
    # The same probe sees them load once a message is due: the check can fail.
    code, loaded = loaded_by("--db", str(db), "tick", "-q", "--now", "2027-03-02T15:00:00Z")
    assert code == 0
    assert {"jinja2", "pipectl.templates", "pipectl.channels.outbox"} <= set(loaded)
    assert "httpx" not in loaded and "pipectl.channels.sms" not in loaded
