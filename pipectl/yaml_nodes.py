"""Reading a YAML file as a node tree, so every value keeps its line for error messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .durations import DurationError, parse_duration
from .errors import ConfigError

MAX_COUNT = 1_000_000_000  # a limit or count in the YAML; larger is a typo, not a plan
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


def compose(path: Path) -> Node | None:
    """The node tree of a YAML file; unreadable files and syntax errors are ConfigErrors."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read the file: {e}"]) from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        context = f" ({e.context})" if e.context else ""
        line = mark.line + 1 if mark else 1
        hint = _syntax_hint(
            text.splitlines()[line - 1] if mark and line <= len(text.splitlines()) else ""
        )
        raise ConfigError(
            [f"{path}:{line}: YAML syntax error: {e.problem}{context}{hint}"]
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}:1: YAML syntax error: {e}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}:1: YAML nested too deeply to be a pipelines file"]) from None


def _syntax_hint(line: str) -> str:
    """The usual cause of a syntax error on this line, when we can tell."""
    if "\t" in line[: len(line) - len(line.lstrip())]:
        return "; indent with spaces, not tabs"
    if "${" in line and "{" in line.split("${")[0]:
        return "; inside { } quote ${VAR} references, e.g. password: '${SMTP_PASSWORD}'"
    return ""


def line_of(node: Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "empty"
    return repr(node.value)


class NodeReader:
    """Walks a node tree; each check records `(line, message)` and carries on, so the user
    sees every problem at once."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[tuple[int, str]] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def raise_problems(self) -> None:
        """ConfigError with every problem as `file:line: message`, in line order."""
        if self.problems:
            self.problems.sort(key=lambda p: p[0])
            raise ConfigError([f"{self.path}:{line}: {msg}" for line, msg in self.problems])

    def problem(self, node: Node | None, message: str) -> None:
        self.problems.append((line_of(node), message))

    def mapping(
        self, node: Node, allowed: tuple[str, ...], what: str, *, extensions: bool = False
    ) -> dict[str, Node]:
        """The keys of a mapping node, reporting duplicates and keys not in `allowed`.

        With `extensions`, `x-...` keys are skipped: a place for `&anchors` to reuse.
        """
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping, not {kind(node)}")
            return {}
        inherited = self.merge_keys(node)
        found: dict[str, Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(name, str):
                self.problem(key_node, f"keys in {what} must be text")
            elif name in inherited and id(key_node) not in inherited[name]:
                found[name] = value_node  # a key of its own overrides one from `<<: *anchor`
                inherited.pop(name)
            elif name in first_line:
                self.problem(
                    key_node, f"duplicate key '{name}' in {what} (first at line {first_line[name]})"
                )
            elif extensions and name.startswith("x-"):
                first_line[name] = line_of(key_node)
            elif name not in allowed:
                self.problem(
                    key_node,
                    f"unknown key '{name}' in {what}; allowed: {', '.join(allowed)}"
                    + (" and x-... for anchors" if extensions else ""),
                )
            else:
                found[name] = value_node
                first_line[name] = line_of(key_node)
        return found

    def merge_keys(self, node: MappingNode) -> dict[str, set[int]]:
        """Expands `<<: *anchor` in place; returns the keys it brought in (by key node)."""
        own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        if len(own) == len(node.value):
            return {}
        try:
            self.constructor.flatten_mapping(node)
        except yaml.constructor.ConstructorError as e:
            self.problem(node, f"'<<' merge: {e.problem}")
            return {}
        inherited: dict[str, set[int]] = {}
        for key_node, _ in node.value:
            if id(key_node) not in own and isinstance(key_node, ScalarNode):
                inherited.setdefault(key_node.value, set()).add(id(key_node))
        return inherited

    def key(self, fields: dict[str, Node], node: Node, what: str) -> str | None:
        """The required `key` of an account, pipeline or stage."""
        if "key" not in fields:
            if isinstance(node, MappingNode):
                self.problem(node, f"{what} needs a key (letters, digits, '-' and '_')")
            return None
        key = self.text(fields["key"], f"{what} key")
        if key is not None and not KEY_PATTERN.fullmatch(key):
            self.problem(
                fields["key"], f"{what} key {key!r} may use only letters, digits, '-' and '_'"
            )
            return None
        return key

    def unique(self, items: Sequence[Keyed], nodes: Sequence[Node], what: str) -> None:
        """Reports a second item with the key of an earlier one."""
        seen: dict[str, int] = {}
        for item, node in zip(items, nodes, strict=True):
            if item.key in seen:
                self.problem(
                    node, f"duplicate {what} key '{item.key}' (first at line {seen[item.key]})"
                )
            else:
                seen[item.key] = line_of(node)

    def sequence(self, node: Node, what: str) -> list[Node]:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.problem(node, f"{what} must be a list (lines starting with '- '), not {kind(node)}")
        return []

    def text(self, node: Node, what: str) -> str | None:
        """A scalar as the user wrote it (so `NO` stays Norway and `+1555...` stays text)."""
        if isinstance(node, ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            return node.value
        self.problem(node, f"{what} must be text, not {kind(node)}")
        return None

    def value(self, node: Node) -> Any:
        """A scalar's value; None for a list or mapping, never built (an anchor bomb of 9^9
        items would take minutes, and a message that showed it would never end)."""
        if not isinstance(node, ScalarNode):
            return None
        return self.constructor.construct_object(node, deep=True)

    def positive_int(self, node: Node, what: str) -> int | None:
        value = self.value(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_COUNT:
            return value
        if isinstance(value, int) and value > MAX_COUNT:  # overflowed the database's integers
            self.problem(node, f"{what} must be at most {MAX_COUNT:,}")
            return None
        self.problem(node, f"{what} must be a whole number greater than 0, not {kind(node)}")
        return None

    def flag(self, node: Node, what: str) -> bool | None:
        value = self.value(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool):
            return value
        self.problem(node, f"{what} must be true or false, not {kind(node)}")
        return None

    def duration(self, node: Node, what: str) -> int | None:
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{what} must be a duration like 2h or 1d12h, not {kind(node)}")
            return None
        try:
            seconds = parse_duration(self.value(node))
        except DurationError as e:
            self.problem(node, f"{what}: {e}")
            return None
        if seconds <= 0:
            self.problem(node, f"{what} must be longer than 0s")
            return None
        return seconds

    def timezone(self, node: Node, what: str) -> str | None:
        name = self.text(node, what)
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(node, f"{what} {name!r} is not a known time zone (e.g. America/New_York)")
            return None
        return name
