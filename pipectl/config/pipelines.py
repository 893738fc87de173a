"""Pipelines, stages, actions and their templates, as the tick will perform them.

Stage references (`on_failure`, `on_reply`, `move`, ...) are read here with the line they
were written on; whether each names a stage is checked on the finished Config (`checks.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from .. import defaults
from ..templates import check_template
from ..yaml_nodes import NodeReader, kind, line_of
from .model import (
    ACTION_TYPES,
    OUTCOMES,
    Account,
    Action,
    EmailParams,
    Pipeline,
    SendOptions,
    SmsParams,
    Stage,
    WaitForReplyParams,
    readable,
    yaml_keys,
)
from .windows import WindowsReader

PIPELINE_KEYS = yaml_keys(Pipeline)
STAGE_KEYS = yaml_keys(Stage)
EMAIL_KEYS = yaml_keys(EmailParams) + yaml_keys(SendOptions)
SMS_KEYS = yaml_keys(SmsParams) + yaml_keys(SendOptions)
WAIT_FOR_REPLY_KEYS = yaml_keys(WaitForReplyParams)


@dataclass(frozen=True)
class _Inherited:
    """What a stage's actions inherit from it and its pipeline, and how messages name it."""

    what: str
    on_failure: str
    send_window: dict[str, Any] | None


class PipelinesReader:
    """`pipelines:`, their stages and actions; templates read and syntax-checked."""

    def __init__(self, nodes: NodeReader, windows: WindowsReader, folder: Path):
        self.nodes = nodes
        self.windows = windows
        self.folder = folder

    def pipelines(self, node: Node | None, accounts: dict[str, Account]) -> tuple[Pipeline, ...]:
        nodes = self.nodes.sequence(node, "pipelines") if node is not None else []
        parsed = [(self.pipeline(n, accounts), n) for n in nodes]
        kept = [(p, n) for p, n in parsed if p is not None]
        self.nodes.unique([p for p, _ in kept], [n for _, n in kept], "pipeline")
        return tuple(p for p, _ in kept)

    def pipeline(self, node: Node, accounts: dict[str, Account]) -> Pipeline | None:
        nodes = self.nodes
        fields = nodes.mapping(node, PIPELINE_KEYS, "a pipeline")
        key = nodes.key(fields, node, "a pipeline")
        if key is None:
            return None
        what = f"pipeline '{key}'"
        account_key = (
            nodes.text(fields["account"], f"{what} account") if "account" in fields else None
        )
        account = accounts.get(account_key or "")
        if "account" not in fields:
            nodes.problem(
                node, f"{what} needs an account (one of: {', '.join(accounts) or 'none'})"
            )
        elif account_key is not None and account is None:
            nodes.problem(
                fields["account"],
                f"{what}: unknown account '{account_key}';"
                f" accounts: {', '.join(accounts) or 'none'}",
            )
        lines: dict[str, int] = {
            name: line_of(fields[name]) for name in ("on_failure", "on_reply") if name in fields
        }
        window = self.windows.send_window(fields.get("send_window"), what)
        on_failure = defaults.ON_FAILURE
        if "on_failure" in fields:
            on_failure = nodes.text(fields["on_failure"], f"{what} on_failure") or on_failure
        on_reply = (
            nodes.text(fields["on_reply"], f"{what} on_reply") if "on_reply" in fields else None
        )
        inherited = _Inherited(
            what, on_failure, window or (account.send_window if account else None)
        )
        stage_nodes = (
            nodes.sequence(fields["stages"], f"{what} stages") if "stages" in fields else []
        )
        if not stage_nodes and isinstance(node, MappingNode):
            nodes.problem(fields.get("stages", node), f"{what} needs at least one stage")
        stages = [(self.stage(n, inherited), n) for n in stage_nodes]
        kept = [(s, n) for s, n in stages if s is not None]
        nodes.unique([s for s, _ in kept], [n for _, n in kept], f"{what} stage")
        name = readable(key)
        if "name" in fields:
            name = nodes.text(fields["name"], f"{what} name") or key
        return Pipeline(
            key=key,
            account=account_key or "",
            name=name,
            on_reply=on_reply,
            on_failure=on_failure,
            send_window=window,
            stages=tuple(s for s, _ in kept),
            line=line_of(node),
            lines=lines,
        )

    def stage(self, node: Node, pipeline: _Inherited) -> Stage | None:
        nodes = self.nodes
        fields = nodes.mapping(node, STAGE_KEYS, f"a stage of {pipeline.what}")
        key = nodes.key(fields, node, f"a stage of {pipeline.what}")
        if key is None:
            return None
        what = f"{pipeline.what} stage '{key}'"
        on_failure = None
        lines: dict[str, int] = {}
        if "on_failure" in fields:
            on_failure = nodes.text(fields["on_failure"], f"{what} on_failure")
            lines["on_failure"] = line_of(fields["on_failure"])
        outcome = nodes.text(fields["outcome"], f"{what} outcome") if "outcome" in fields else None
        if outcome is not None and outcome not in OUTCOMES:
            nodes.problem(fields["outcome"], f"{what} outcome must be won or lost, not {outcome!r}")
        action_nodes = (
            nodes.sequence(fields["actions"], f"{what} actions") if "actions" in fields else []
        )
        if outcome is not None and action_nodes:
            nodes.problem(fields["actions"], f"{what} has outcome {outcome}, so it has no actions")
        stage = _Inherited(what, on_failure or pipeline.on_failure, pipeline.send_window)
        actions = [self.action(n, stage) for n in action_nodes]
        name = readable(key)
        if "name" in fields:
            name = nodes.text(fields["name"], f"{what} name") or key
        return Stage(
            key=key,
            name=name,
            outcome=outcome,
            actions=tuple(a for a in actions if a is not None),
            on_failure=on_failure,
            line=line_of(node),
            lines=lines,
        )

    def action(self, node: Node, stage: _Inherited) -> Action | None:
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            found = (
                ", ".join(str(k.value) for k, _ in node.value)
                if isinstance(node, MappingNode)
                else kind(node)
            )
            self.nodes.problem(
                node,
                f"{stage.what}: an action is one of {', '.join(ACTION_TYPES)} with its options"
                f" inside it (e.g. '- wait: 1d'), not {found}",
            )
            return None
        type_node, value_node = node.value[0]
        action_type = type_node.value
        read = ACTION_READERS.get(action_type) if isinstance(action_type, str) else None
        if read is None:
            self.nodes.problem(
                type_node,
                f"{stage.what}: unknown action type '{action_type}';"
                f" use one of: {', '.join(ACTION_TYPES)}",
            )
            return None
        lines: dict[str, int] = {}
        params = read(self, value_node, f"{stage.what} {action_type}", stage, lines)
        params["on_failure"] = stage.on_failure
        return Action(type=action_type, params=params, line=line_of(type_node), lines=lines)

    # -- each action type: (node, what, stage, lines of stage references) -> params ------------

    def email(self, node: Node, what: str, stage: _Inherited, lines: dict) -> dict[str, Any]:
        fields = self.nodes.mapping(node, EMAIL_KEYS, what)
        thread = "thread" in fields and bool(self.nodes.flag(fields["thread"], f"{what} thread"))
        if "subject" not in fields and isinstance(node, MappingNode) and not thread:
            self.nodes.problem(node, f"{what} needs a subject (or thread: true to reply)")
        subject = self.template_text(fields, "subject", None, node, what, required=False)
        params = {
            "subject": subject or "",
            "body": self.template_text(fields, "body", "body_file", node, what, required=True),
            "html": self.template_text(fields, "html", "html_file", node, what, required=False),
            **self.send_options(fields, what, stage),
        }
        if thread:  # only when set, so snapshots of existing actions stay as they were
            params["thread"] = True
        return params

    def sms(self, node: Node, what: str, stage: _Inherited, lines: dict) -> dict[str, Any]:
        if isinstance(node, ScalarNode):
            body = self.template_text({"body": node}, "body", None, node, what, required=True)
            return {"body": body, **self.send_options({}, what, stage)}
        fields = self.nodes.mapping(node, SMS_KEYS, what)
        body = self.template_text(fields, "body", "body_file", node, what, required=True)
        return {"body": body, **self.send_options(fields, what, stage)}

    def send_options(self, fields: dict[str, Node], what: str, stage: _Inherited) -> dict:
        window = self.windows.send_window(fields.get("send_window"), what)
        return {
            "retry": self.windows.retry(fields.get("retry"), what),
            "send_window": window or stage.send_window,
        }

    def wait(self, node: Node, what: str, stage: _Inherited, lines: dict) -> dict[str, Any]:
        return {"seconds": self.nodes.duration(node, what)}

    def wait_for_reply(self, node: Node, what: str, stage: _Inherited, lines: dict) -> dict:
        if isinstance(node, ScalarNode):
            return {"timeout": self.nodes.duration(node, f"{what} timeout"), "on_reply": None,
                    "on_timeout": None}  # fmt: skip
        fields = self.nodes.mapping(node, WAIT_FOR_REPLY_KEYS, what)
        if "timeout" not in fields and isinstance(node, MappingNode):
            self.nodes.problem(
                node, f"{what} needs a timeout, e.g. {{timeout: 2d, on_timeout: lost}}"
            )
        params: dict[str, Any] = {
            "timeout": self.nodes.duration(fields["timeout"], f"{what} timeout")
            if "timeout" in fields
            else None
        }
        for name in ("on_reply", "on_timeout"):
            params[name] = (
                self.nodes.text(fields[name], f"{what} {name}") if name in fields else None
            )
            if name in fields:
                lines[name] = line_of(fields[name])
        return params

    def move(self, node: Node, what: str, stage: _Inherited, lines: dict) -> dict[str, Any]:
        lines["stage"] = line_of(node)
        return {"stage": self.nodes.text(node, what)}

    # -- templates -----------------------------------------------------------------------------

    def template_text(
        self,
        fields: dict[str, Node],
        name: str,
        file_name: str | None,
        parent: Node,
        what: str,
        *,
        required: bool,
    ) -> str | None:
        """A template's source, given inline or as a file beside the YAML; syntax checked."""
        nodes = self.nodes
        if name in fields and file_name in fields:
            nodes.problem(fields[file_name], f"{what}: give {name} or {file_name}, not both")
            return None
        if name in fields:
            source, node = nodes.text(fields[name], f"{what} {name}"), fields[name]
            label = name
        elif file_name is not None and file_name in fields:
            node = fields[file_name]
            source, label = self.read_file(node, f"{what} {file_name}"), file_name
        else:
            if required and isinstance(parent, MappingNode):
                either = f"{name} or {file_name}" if file_name else name
                nodes.problem(parent, f"{what} needs {either}")
            return None
        if source is not None:
            for line, error in check_template(source):
                if file_name is not None and file_name in fields:  # the file's line, at the YAML's
                    nodes.problem(
                        node, f"{what} {label}: {fields[file_name].value}:{line}: {error}"
                    )
                else:
                    nodes.problems.append((_template_line(node, line), f"{what} {label}: {error}"))
        return source

    def read_file(self, node: Node, what: str) -> str | None:
        """A template file, relative to the YAML and inside its folder."""
        name = self.nodes.text(node, what)
        if name is None:
            return None
        target = (self.folder / name).resolve()
        if not target.is_relative_to(self.folder):
            self.nodes.problem(
                node,
                f"{what} {name!r} is outside the folder of {self.nodes.path}; keep templates there",
            )
            return None
        try:
            return target.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            self.nodes.problem(node, f"{what} {name!r} not found (looked for {target})")
        except (OSError, UnicodeDecodeError) as e:
            self.nodes.problem(node, f"{what} {name!r} cannot be read: {e}")
        return None


def _template_line(node: Node, line: int) -> int:
    """The YAML line of a template's `line`: a block scalar (`|`) starts on the next line."""
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        return line_of(node) + line
    return line_of(node) + line - 1


ActionReader = Callable[[PipelinesReader, Node, str, _Inherited, dict], dict[str, Any]]
ACTION_READERS: dict[str, ActionReader] = {
    "email": PipelinesReader.email,
    "sms": PipelinesReader.sms,
    "wait": PipelinesReader.wait,
    "wait_for_reply": PipelinesReader.wait_for_reply,
    "move": PipelinesReader.move,
}
assert tuple(ACTION_READERS) == ACTION_TYPES
