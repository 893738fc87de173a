"""The docs match the product: every command and option is in the README, every command the
README shows exists, and docs/SCHEMA.md is what the migrations create."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from pipectl.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Options every command has, documented once (help, shell completion).
GENERIC = {"--help", "-h", "--install-completion", "--show-completion"}


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every leaf command as ("pipectl leads import", its click command)."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(("pipectl", *path)), command
        return
    for name, sub in subcommands.items():
        yield from commands(sub, (*path, name))


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = dict(commands(ROOT_COMMAND))


def mentions(option: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def paragraphs(name: str) -> str:
    """The README's lines that show `name`, each with the indented lines that continue it."""
    out: list[str] = []
    taking = False
    for line in README.splitlines():
        if mentions(name, line):
            taking = True
        elif not line.startswith("  "):
            taking = False
        if taking:
            out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_readme_with_its_options(name):
    lines = paragraphs(name)
    assert lines, f"README.md never shows `{name}`"
    missing = [
        "/".join(param.opts)
        for param in COMMANDS[name].params
        if param.opts[0].startswith("-")
        and not GENERIC & set(param.opts)
        and not any(mentions(opt, lines) for opt in param.opts)
    ]
    assert not missing, f"README.md's lines showing `{name}` do not mention {missing}"


def test_the_global_options_are_in_the_readme():
    for param in ROOT_COMMAND.params:
        if not GENERIC & set(param.opts):
            assert any(mentions(opt, README) for opt in param.opts), param.opts


def shown_commands(text: str) -> Iterator[str]:
    """Each `pipectl WORD [WORD]` in the README's code (spans and blocks), global options
    skipped; WORD as written."""
    code = re.findall(r"`([^`\n]+)`", text)
    code += [line for line in text.splitlines() if line.startswith(("    ", "$ "))]
    code += re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    for chunk in code:
        for match in re.finditer(r"\bpipectl((?:\s+--db(?:\s+|=)\S+)?)\s+([a-z][\w-]*)", chunk):
            group = match.group(2)
            rest = chunk[match.end() :].split()
            if group in COMMANDS_BY_GROUP and rest and re.fullmatch(r"[a-z][\w-]*", rest[0]):
                yield f"pipectl {group} {rest[0]}"
            else:
                yield f"pipectl {group}"


COMMANDS_BY_GROUP = {name.split()[1] for name in COMMANDS if len(name.split()) == 3}


def test_every_command_the_readme_shows_exists():
    shown = set(shown_commands(README))
    assert shown, "no command found in README.md: the test reads it wrong"
    unknown = sorted(name for name in shown if name not in COMMANDS)
    assert not unknown, f"README.md shows commands pipectl does not have: {unknown}"


def test_schema_doc_is_what_the_migrations_create():
    spec = importlib.util.spec_from_file_location("schema_doc", ROOT / "tools" / "schema_doc.py")
    assert spec and spec.loader
    schema_doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schema_doc)
    assert (ROOT / "docs" / "SCHEMA.md").read_text() == schema_doc.render(), (
        "docs/SCHEMA.md is out of date: run `make schema-doc` and commit it"
    )
