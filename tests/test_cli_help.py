"""Every command explains itself with an example and is documented in the README."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from pipectl import __version__
from pipectl.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands() -> list[tuple[str, Any]]:
    """Every command and sub-command, as `pipectl leads import` names it."""
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        if hasattr(command, "commands"):  # a group (typer may vendor its own click)
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}", sub)
        else:
            found.append((prefix, command))

    walk("pipectl", typer.main.get_command(app))
    return found


COMMANDS = commands()


def test_the_command_tree_is_complete():
    names = {name for name, _ in COMMANDS}
    for expected in ("pipectl status", "pipectl leads show", "pipectl leads enroll",
                     "pipectl actions list", "pipectl retry", "pipectl tick"):  # fmt: skip
        assert expected in names


@pytest.mark.parametrize("name,command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example_and_is_in_the_readme(cli, name, command):
    assert command.help and "Example" in command.help, f"{name} has no Example in its help"
    result = cli(*name.split()[1:], "--help")
    assert result.exit_code == 0 and "Example" in result.stdout
    assert f"`{name}" in README or f"$ {name}" in README or f"\n{name}" in README, (
        f"{name} is not documented in README.md"
    )


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"pipectl {__version__}"


def test_no_colour_when_piped_or_under_no_color(tmp_path):
    db = tmp_path / "pipectl.db"
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color"}
    args = ["--db", str(db), "status", "--now", "2027-03-01T14:00:00Z"]
    result = subprocess.run(
        [sys.executable, "-m", "pipectl", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout and "WARNING: no tick has ever run" in result.stdout


@pytest.mark.parametrize("name", ["pipectl"] + [n for n, _ in COMMANDS])
def test_flags_show_as_flags_in_help_without_a_type(cli, name):
    result = cli(*name.split()[1:], "--help")
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout
    if name in ("pipectl tick", "pipectl status"):
        assert "--json" in result.stdout
    if name == "pipectl":
        assert "--version" in result.stdout
