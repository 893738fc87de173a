"""pipelines.yaml -> frozen dataclasses; every check, with file and line numbers.

The dataclasses below are the contract between the loader, `apply` and the tick.
`Action.params` is exactly what is stored in `pipeline_stage_actions.params` and copied
into `lead_stage_actions.params` when a lead enters the stage (the snapshot), so it holds
everything the tick needs, fully resolved (see the docstring of `Action`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import phonenumbers
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .durations import DurationError, Rate, parse_rate
from .errors import ConfigError
from .templates import check_template
from .yaml_nodes import NodeReader, compose, kind, line_of

ACTION_TYPES = ("email", "sms", "wait", "wait_for_reply", "move")
SEND_TYPES = ("email", "sms")
OUTCOMES = ("won", "lost")


@dataclass(frozen=True)
class Limits:
    active_leads: int | None = None  # None: no limit
    concurrency: int = 8
    rates: dict[str, Rate] = field(default_factory=dict)  # keys: "email", "sms", "all"


@dataclass(frozen=True)
class Account:
    key: str
    name: str
    timezone: str = "UTC"
    country: str | None = None
    limits: Limits = field(default_factory=Limits)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # merged with defaults
    send_window: dict[str, Any] | None = None  # normalised, see Action
    line: int = 0


@dataclass(frozen=True)
class Action:
    """One action of a stage.

    `params` by type (all JSON-serialisable; durations already in seconds):
      email:          {"subject": str, "body": str, "html": str | None}
      sms:            {"body": str}
      wait:           {"seconds": int}
      wait_for_reply: {"timeout": int, "on_reply": str | None, "on_timeout": str | None}
      move:           {"stage": str}
    plus, on every action:
      "on_failure":  "stop" | "continue" | <stage key>   (action's stage, else pipeline, else stop)
    and on email/sms:
      "retry":       {"attempts": int, "backoff": int, "max_backoff": int}
      "send_window": {"days": [0..6] (0 = Monday), "start": "HH:MM", "end": "HH:MM",
                      "timezone": str | None} or None  (action's, else pipeline's, else account's)
    Templates (`subject`, `body`, `html`) are the Jinja2 source text; a `body_file` is read
    at load time, so the snapshot holds the text itself.
    """

    type: str
    params: dict[str, Any]
    line: int = 0


@dataclass(frozen=True)
class Stage:
    key: str
    name: str
    outcome: str | None = None  # "won" | "lost" | None
    actions: tuple[Action, ...] = ()
    on_failure: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Pipeline:
    key: str
    account: str
    name: str
    stages: tuple[Stage, ...] = ()
    on_reply: str | None = None
    on_failure: str = "stop"
    line: int = 0


@dataclass(frozen=True)
class Config:
    path: Path
    accounts: tuple[Account, ...] = ()
    pipelines: tuple[Pipeline, ...] = ()
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # defaults


# ---------------------------------------------------------------------------------------------
# Loading: YAML node tree -> Config, collecting every problem with its line.

KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
VAR_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
SECRET_KEYS = ("password", "auth_token")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
RETRY_DEFAULTS = {"attempts": 5, "backoff": 60, "max_backoff": 3600}

TOP_KEYS = ("version", "accounts", "channels", "pipelines")
ACCOUNT_KEYS = ("key", "name", "timezone", "country", "limits", "channels", "send_window")
LIMIT_KEYS = ("active_leads", "concurrency", "rates")
RATE_KEYS = ("email", "sms", "all")
WINDOW_KEYS = ("days", "hours", "timezone")
RETRY_KEYS = ("attempts", "backoff", "max_backoff")
PIPELINE_KEYS = ("key", "account", "name", "on_reply", "on_failure", "send_window", "stages")
STAGE_KEYS = ("key", "name", "outcome", "actions", "on_failure")
EMAIL_KEYS = ("subject", "body", "body_file", "html", "html_file", "retry", "send_window")
SMS_KEYS = ("body", "body_file", "retry", "send_window")
WAIT_FOR_REPLY_KEYS = ("timeout", "on_reply", "on_timeout")
CHANNEL_KEYS = {
    "email": (
        "transport", "host", "port", "security", "username", "password", "timeout", "from",
        "reply_to", "list_unsubscribe", "list_unsubscribe_post", "inbox",
    ),
    "sms": (
        "transport", "account_sid", "auth_token", "messaging_service_sid", "from", "base_url",
        "url", "headers", "timeout", "connect_timeout", "inbound",
    ),
}  # fmt: skip
INBOX_KEYS = ("host", "port", "security", "username", "password", "folders")
# Folders where the team's own mail lies (by their usual names; the server's \Sent, \Drafts
# and \All flags are checked again at sync): reading them would count follow-ups as replies.
OUTGOING_FOLDERS = (
    "sent", "sent items", "sent mail", "sent messages", "drafts", "all mail", "outbox",
)  # fmt: skip
TRANSPORTS = {"email": ("smtp", "outbox"), "sms": ("twilio", "webhook", "outbox")}
REQUIRED_SETTINGS = {
    "smtp": ("host", "from"),
    "twilio": ("account_sid", "auth_token"),
    "webhook": ("url",),
}
SECURITY = ("starttls", "ssl", "none")
NUMBER_SETTINGS = ("port", "timeout", "connect_timeout")


def load_config(path: Path) -> Config:
    """Read and check a pipelines YAML; raises ConfigError listing every problem at once."""
    root = compose(path)
    reader = _Reader(path)
    try:
        config = reader.config(root)
    except RecursionError:
        raise ConfigError([f"{path}:1: YAML nested too deeply to be a pipelines file"]) from None
    reader.raise_problems()
    return config


def is_address(value: str) -> bool:
    """An email address, with or without a display name (or a ${VAR} read at send time)."""
    if VAR_REFERENCE.search(value):
        return True
    pairs = getaddresses([value])
    return bool(pairs) and all(
        "@" in address and address.rpartition("@")[2] for _, address in pairs
    )


def readable(key: str) -> str:
    """A stage or pipeline name from its key: `follow-up` -> `Follow up`."""
    words = key.replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


class _Reader(NodeReader):
    """The pipelines file's shape: accounts, channels, pipelines, stages and actions."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.folder = path.parent.resolve()

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

    # -- the file ------------------------------------------------------------------------------

    def config(self, root: Node | None) -> Config:
        if root is None:
            self.problem(None, "the file is empty; it needs version: 1, accounts and pipelines")
            return Config(path=self.path)
        top = self.mapping(root, TOP_KEYS, "the file", extensions=True)
        for required in ("version", "accounts", "pipelines"):
            if required not in top and isinstance(root, MappingNode):
                self.problem(root, f"missing top-level key '{required}'")
        if "version" in top and self.value(top["version"]) not in (1, "1"):
            self.problem(top["version"], f"version must be 1, not {kind(top['version'])}")
        channels = self.channels(top["channels"], "channels") if "channels" in top else {}
        accounts = self.accounts(top.get("accounts"), channels)
        pipelines = self.pipelines(top.get("pipelines"), {a.key: a for a in accounts})
        return Config(path=self.path, accounts=accounts, pipelines=pipelines, channels=channels)

    def unique(self, items: list[Any], nodes: list[Node], what: str) -> None:
        """Reports a second item with the key of an earlier one."""
        seen: dict[str, int] = {}
        for item, node in zip(items, nodes, strict=True):
            if item.key in seen:
                self.problem(
                    node, f"duplicate {what} key '{item.key}' (first at line {seen[item.key]})"
                )
            else:
                seen[item.key] = line_of(node)

    # -- accounts and channels -----------------------------------------------------------------

    def accounts(self, node: Node | None, defaults: dict[str, dict]) -> tuple[Account, ...]:
        nodes = self.sequence(node, "accounts") if node is not None else []
        parsed = [(self.account(n, defaults), n) for n in nodes]
        kept = [(a, n) for a, n in parsed if a is not None]
        self.unique([a for a, _ in kept], [n for _, n in kept], "account")
        return tuple(a for a, _ in kept)

    def account(self, node: Node, defaults: dict[str, dict]) -> Account | None:
        fields = self.mapping(node, ACCOUNT_KEYS, "an account")
        key = self.key(fields, node, "an account")
        if key is None:
            return None
        what = f"account '{key}'"
        name = self.text(fields["name"], f"{what} name") if "name" in fields else None
        country = None
        if "country" in fields:
            country = (self.text(fields["country"], f"{what} country") or "").upper() or None
            if country and country not in phonenumbers.SUPPORTED_REGIONS:
                self.problem(
                    fields["country"],
                    f"{what} country {country!r} is not a region code like US, GB or DE",
                )
        own = self.channels(fields["channels"], f"{what} channels") if "channels" in fields else {}
        merged = {ch: {**defaults.get(ch, {}), **own.get(ch, {})} for ch in CHANNEL_KEYS}
        merged = {ch: settings for ch, settings in merged.items() if settings}
        for channel, settings in merged.items():
            self.check_transport(channel, settings, fields.get("channels", node), what)
        return Account(
            key=key,
            name=name or readable(key),
            timezone=self.timezone(fields["timezone"], f"{what} timezone") or "UTC"
            if "timezone" in fields
            else "UTC",
            country=country,
            limits=self.limits(fields["limits"], what) if "limits" in fields else Limits(),
            channels=merged,
            send_window=self.send_window(fields.get("send_window"), what),
            line=line_of(node),
        )

    def limits(self, node: Node, what: str) -> Limits:
        fields = self.mapping(node, LIMIT_KEYS, f"{what} limits")
        rates: dict[str, Rate] = {}
        if "rates" in fields:
            for channel, rate_node in self.mapping(
                fields["rates"], RATE_KEYS, f"{what} limits.rates"
            ).items():
                if not isinstance(rate_node, ScalarNode):
                    like = f"must be a rate like 200/hour, not {kind(rate_node)}"
                    self.problem(rate_node, f"{what} rates.{channel} {like}")
                    continue
                try:
                    rates[channel] = parse_rate(self.value(rate_node))
                except DurationError as e:
                    self.problem(rate_node, f"{what} rates.{channel}: {e}")
        active = fields.get("active_leads")
        concurrency = fields.get("concurrency")
        return Limits(
            active_leads=self.positive_int(active, f"{what} active_leads") if active else None,
            concurrency=(self.positive_int(concurrency, f"{what} concurrency") or 8)
            if concurrency
            else 8,
            rates=rates,
        )

    def channels(self, node: Node, what: str) -> dict[str, dict[str, Any]]:
        """Channel settings as written: `${VAR}` stays a reference, resolved only at send time."""
        result: dict[str, dict[str, Any]] = {}
        for channel, channel_node in self.mapping(node, tuple(CHANNEL_KEYS), what).items():
            settings = {}
            for name, value_node in self.mapping(
                channel_node, CHANNEL_KEYS[channel], f"{what}.{channel}"
            ).items():
                setting = self.setting(value_node, f"{what}.{channel}.{name}", channel, name)
                if setting is not None:
                    settings[name] = setting
            result[channel] = settings
        return result

    def setting(self, node: Node, what: str, channel: str, name: str) -> Any:
        if name == "headers":
            return self.headers(node, what)
        if name == "inbox":
            return self.inbox(node, what)
        if name == "inbound":
            return self.flag(node, what)
        if name in NUMBER_SETTINGS and isinstance(node, ScalarNode):
            value = self.value(node)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return value
        value = self.text(node, what)
        if value is None:
            return None
        if "${" in value and VAR_REFERENCE.sub("", value).count("${"):
            self.problem(node, f"{what}: write environment references as ${{NAME}}")
        elif name in SECRET_KEYS and not VAR_REFERENCE.fullmatch(value):
            self.problem(
                node,
                f"{what} must be an environment reference like ${{SMTP_PASSWORD}}: secrets are"
                " read from the environment at send time, never written in the YAML",
            )
            return None
        elif name in NUMBER_SETTINGS and not VAR_REFERENCE.fullmatch(value):
            self.problem(node, f"{what} must be a number greater than 0, not {value!r}")
        elif name == "transport" and value not in TRANSPORTS[channel]:
            allowed = " | ".join(TRANSPORTS[channel])
            self.problem(node, f"{what} must be {allowed}, not {value!r}")
        elif name == "security" and value not in SECURITY:
            self.problem(node, f"{what} must be {' | '.join(SECURITY)}, not {value!r}")
        elif channel == "email" and name in ("from", "reply_to") and not is_address(value):
            self.problem(
                node,
                f'{what} {value!r} is not an email address like "Acme Sales <sales@acme.example>"',
            )
        return value

    def inbox(self, node: Node, what: str) -> dict[str, Any] | None:
        """The IMAP mailbox where replies and bounces arrive; secrets stay ${VAR} references."""
        fields = self.mapping(node, INBOX_KEYS, what)
        if not isinstance(node, MappingNode):
            return None
        inbox: dict[str, Any] = {}
        for name, value_node in fields.items():
            if name == "folders":
                inbox["folders"] = self.folders(value_node, f"{what}.folders")
                continue
            value = self.setting(value_node, f"{what}.{name}", "email", name)
            if name == "port" and isinstance(value, int | float):
                if value != int(value) or not 0 < value < 65536:
                    self.problem(value_node, f"{what}.port must be a port number, not {value}")
                    continue
                value = int(value)
            if value is not None:
                inbox[name] = value
        missing = [k for k in ("host", "username", "password") if k not in fields]
        if missing:
            self.problem(node, f"{what} needs {', '.join(missing)}")
        return inbox

    def folders(self, node: Node, what: str) -> list[str]:
        names = self.sequence(node, what) if not isinstance(node, ScalarNode) else [node]
        folders = []
        for name_node in names:
            name = self.text(name_node, what)
            if not name:
                continue
            if name.strip().lower().rsplit("/", 1)[-1].rsplit(".", 1)[-1] in OUTGOING_FOLDERS:
                self.problem(
                    name_node,
                    f"{what}: {name!r} holds the team's own mail, and reading it would count"
                    " follow-ups as replies; list only folders where replies arrive (INBOX)",
                )
                continue
            folders.append(name)
        return folders or ["INBOX"]

    def flag(self, node: Node, what: str) -> bool | None:
        value = self.value(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool):
            return value
        self.problem(node, f"{what} must be true or false, not {kind(node)}")
        return None

    def headers(self, node: Node, what: str) -> dict[str, str]:
        """Webhook headers; an Authorization header must come from the environment."""
        headers = {}
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping of header names to text")
            return headers
        for name_node, value_node in node.value:
            value = self.text(value_node, f"{what}.{name_node.value}")
            if value is None:
                continue
            if name_node.value.lower() == "authorization" and not VAR_REFERENCE.search(value):
                self.problem(
                    value_node,
                    f"{what}.{name_node.value} must use an environment reference, e.g."
                    " 'Bearer ${SMS_TOKEN}': secrets are never written in the YAML",
                )
                continue
            headers[str(name_node.value)] = value
        return headers

    def check_transport(self, channel: str, settings: dict, node: Node, what: str) -> None:
        """A transport with the settings it cannot work without (after merging defaults)."""
        transport = settings.get("transport", "outbox")
        missing = [s for s in REQUIRED_SETTINGS.get(transport, ()) if not settings.get(s)]
        if transport == "twilio" and not {"from", "messaging_service_sid"} & set(settings):
            missing.append("from (or messaging_service_sid)")
        if missing:
            self.problem(
                node,
                f"{what}: {channel} transport {transport} needs {', '.join(missing)}"
                f" (under channels.{channel})",
            )
        if channel == "sms" and settings.get("inbound") and transport != "twilio":
            self.problem(
                node,
                f"{what}: channels.sms.inbound reads texts from Twilio; transport {transport}"
                " has no inbound messages to read (remove inbound or use transport twilio)",
            )

    # -- send windows and retries --------------------------------------------------------------

    def send_window(self, node: Node | None, what: str) -> dict[str, Any] | None:
        if node is None:
            return None
        fields = self.mapping(node, WINDOW_KEYS, f"{what} send_window")
        days = self.days(fields["days"], what) if "days" in fields else list(range(7))
        start, end = self.hours(fields["hours"], what) if "hours" in fields else ("00:00", "24:00")
        timezone = None
        if "timezone" in fields:
            timezone = self.timezone(fields["timezone"], f"{what} send_window timezone")
        return {"days": days, "start": start, "end": end, "timezone": timezone}

    def days(self, node: Node, what: str) -> list[int]:
        """`mon-fri`, `mon,wed,fri` or a YAML list, as weekday numbers (0 = Monday)."""
        if isinstance(node, SequenceNode):
            parts = [self.text(n, f"{what} send_window days") or "" for n in node.value]
        else:
            parts = (self.text(node, f"{what} send_window days") or "").split(",")
        days: set[int] = set()
        for part in parts:
            ends = [self.day(p) for p in part.split("-")]
            if not part.strip() or None in ends or len(ends) > 2:
                self.problem(
                    node,
                    f"{what} send_window days {part.strip()!r} is not a day or range of days;"
                    " use e.g. mon-fri, 'mon,wed,fri' or [sat, sun]",
                )
                continue
            first, last = ends[0], ends[-1]
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        return sorted(days)

    @staticmethod
    def day(text: str) -> int | None:
        name = text.strip().lower()[:3]
        return DAY_NAMES.index(name) if name in DAY_NAMES and len(text.strip()) >= 3 else None

    def hours(self, node: Node, what: str) -> tuple[str, str]:
        text = self.text(node, f"{what} send_window hours") or ""
        m = HOURS.fullmatch(text)
        if m:
            h1, m1, h2, m2 = map(int, m.groups())
            start, end = f"{h1:02d}:{m1:02d}", f"{h2:02d}:{m2:02d}"
            if h1 < 24 and m1 < 60 and (h2 < 24 or end == "24:00") and m2 < 60 and start < end:
                return start, end
        if text:
            self.problem(
                node,
                f'{what} send_window hours {text!r} must be "HH:MM-HH:MM" with the start before'
                ' the end, e.g. "09:00-17:00"',
            )
        return "00:00", "24:00"

    def retry(self, node: Node | None, what: str) -> dict[str, int]:
        retry = dict(RETRY_DEFAULTS)
        if node is None:
            return retry
        fields = self.mapping(node, RETRY_KEYS, f"{what} retry")
        if "attempts" in fields:
            retry["attempts"] = self.positive_int(fields["attempts"], f"{what} retry attempts") or 5
        for name in ("backoff", "max_backoff"):
            if name in fields:
                retry[name] = self.duration(fields[name], f"{what} retry {name}") or retry[name]
        if "max_backoff" not in fields:
            retry["max_backoff"] = max(retry["max_backoff"], retry["backoff"])
        elif retry["max_backoff"] < retry["backoff"]:
            self.problem(fields["max_backoff"], f"{what} retry max_backoff is shorter than backoff")
        return retry

    # -- pipelines, stages, actions ------------------------------------------------------------

    def pipelines(self, node: Node | None, accounts: dict[str, Account]) -> tuple[Pipeline, ...]:
        nodes = self.sequence(node, "pipelines") if node is not None else []
        parsed = [(self.pipeline(n, accounts), n) for n in nodes]
        kept = [(p, n) for p, n in parsed if p is not None]
        self.unique([p for p, _ in kept], [n for _, n in kept], "pipeline")
        return tuple(p for p, _ in kept)

    def pipeline(self, node: Node, accounts: dict[str, Account]) -> Pipeline | None:
        fields = self.mapping(node, PIPELINE_KEYS, "a pipeline")
        key = self.key(fields, node, "a pipeline")
        if key is None:
            return None
        what = f"pipeline '{key}'"
        account_key = (
            self.text(fields["account"], f"{what} account") if "account" in fields else None
        )
        account = accounts.get(account_key or "")
        if "account" not in fields:
            self.problem(node, f"{what} needs an account (one of: {', '.join(accounts) or 'none'})")
        elif account_key is not None and account is None:
            self.problem(
                fields["account"],
                f"{what}: unknown account '{account_key}';"
                f" accounts: {', '.join(accounts) or 'none'}",
            )
        window = self.send_window(fields.get("send_window"), what)
        context = _PipelineContext(
            on_failure=self.text(fields["on_failure"], f"{what} on_failure") or "stop"
            if "on_failure" in fields
            else "stop",
            send_window=window or (account.send_window if account else None),
        )
        if "on_failure" in fields:
            context.refs.append(
                (fields["on_failure"], context.on_failure, f"{what} on_failure", True)
            )
        on_reply = (
            self.text(fields["on_reply"], f"{what} on_reply") if "on_reply" in fields else None
        )
        if on_reply is not None:
            context.refs.append((fields["on_reply"], on_reply, f"{what} on_reply", False))
        stage_nodes = (
            self.sequence(fields["stages"], f"{what} stages") if "stages" in fields else []
        )
        if not stage_nodes and isinstance(node, MappingNode):
            self.problem(fields.get("stages", node), f"{what} needs at least one stage")
        stages = [(self.stage(n, what, context), n) for n in stage_nodes]
        kept = [(s, n) for s, n in stages if s is not None]
        self.unique([s for s, _ in kept], [n for _, n in kept], f"{what} stage")
        self.check_refs(context.refs, {s.key for s, _ in kept}, what)
        self.check_loops([s for s, _ in kept], what)
        return Pipeline(
            key=key,
            account=account_key or "",
            name=self.text(fields["name"], f"{what} name") or key
            if "name" in fields
            else readable(key),
            stages=tuple(s for s, _ in kept),
            on_reply=on_reply,
            on_failure=context.on_failure,
            line=line_of(node),
        )

    def check_loops(self, stages: list[Stage], what: str) -> None:
        """Stages that move to each other with no wait between them would send a lead round
        and round within one tick: each such loop is a problem at the move that closes it."""
        instant: dict[str, tuple[str, int]] = {}  # stage -> (target, line) of its first move
        for stage in stages:
            for action in stage.actions:
                if action.type in ("wait", "wait_for_reply"):
                    break
                if action.type == "move":
                    instant[stage.key] = (action.params["stage"], action.line)
                    break
        reported: set[str] = set()
        for start in instant:
            path, key = [start], start
            while key in instant and instant[key][0] not in path:
                key = instant[key][0]
                path.append(key)
            target, line = instant.get(key, ("", 0))
            if key in instant and target == start and not reported & set(path):
                reported |= set(path)
                loop = " -> ".join([*path, start])
                self.problems.append(
                    (line, f"{what}: stages {loop} move in a loop with no wait; add a wait")
                )

    def check_refs(self, refs: list[tuple], stage_keys: set[str], what: str) -> None:
        for node, target, field_name, allow_stop in refs:
            if target in stage_keys or (allow_stop and target in ("stop", "continue")):
                continue
            choices = (["stop", "continue"] if allow_stop else []) + sorted(stage_keys)
            self.problem(
                node,
                f"{field_name}: no stage '{target}' in this pipeline;"
                f" use one of: {', '.join(choices)}",
            )

    def stage(self, node: Node, pipeline: str, context: _PipelineContext) -> Stage | None:
        fields = self.mapping(node, STAGE_KEYS, f"a stage of {pipeline}")
        key = self.key(fields, node, f"a stage of {pipeline}")
        if key is None:
            return None
        what = f"{pipeline} stage '{key}'"
        on_failure = None
        if "on_failure" in fields:
            on_failure = self.text(fields["on_failure"], f"{what} on_failure")
            if on_failure is not None:
                context.refs.append((fields["on_failure"], on_failure, f"{what} on_failure", True))
        outcome = self.text(fields["outcome"], f"{what} outcome") if "outcome" in fields else None
        if outcome is not None and outcome not in OUTCOMES:
            self.problem(fields["outcome"], f"{what} outcome must be won or lost, not {outcome!r}")
        action_nodes = (
            self.sequence(fields["actions"], f"{what} actions") if "actions" in fields else []
        )
        if outcome is not None and action_nodes:
            self.problem(fields["actions"], f"{what} has outcome {outcome}, so it has no actions")
        stage_context = _StageContext(what, on_failure or context.on_failure, context)
        actions = [self.action(n, stage_context) for n in action_nodes]
        return Stage(
            key=key,
            name=self.text(fields["name"], f"{what} name") or key
            if "name" in fields
            else readable(key),
            outcome=outcome,
            actions=tuple(a for a in actions if a is not None),
            on_failure=on_failure,
            line=line_of(node),
        )

    def action(self, node: Node, stage: _StageContext) -> Action | None:
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            found = (
                ", ".join(str(k.value) for k, _ in node.value)
                if isinstance(node, MappingNode)
                else kind(node)
            )
            self.problem(
                node,
                f"{stage.what}: an action is one of {', '.join(ACTION_TYPES)} with its options"
                f" inside it (e.g. '- wait: 1d'), not {found}",
            )
            return None
        type_node, value_node = node.value[0]
        action_type = type_node.value
        if action_type not in ACTION_TYPES:
            self.problem(
                type_node,
                f"{stage.what}: unknown action type '{action_type}';"
                f" use one of: {', '.join(ACTION_TYPES)}",
            )
            return None
        what = f"{stage.what} {action_type}"
        params = getattr(self, f"action_{action_type}")(value_node, what, stage)
        params["on_failure"] = stage.on_failure
        return Action(type=action_type, params=params, line=line_of(type_node))

    def action_email(self, node: Node, what: str, stage: _StageContext) -> dict[str, Any]:
        fields = self.mapping(node, EMAIL_KEYS, what)
        if "subject" not in fields and isinstance(node, MappingNode):
            self.problem(node, f"{what} needs a subject")
        subject = self.template_text(fields, "subject", None, node, what, required=False)
        return {
            "subject": subject or "",
            "body": self.template_text(fields, "body", "body_file", node, what, required=True),
            "html": self.template_text(fields, "html", "html_file", node, what, required=False),
            **self.send_options(fields, what, stage),
        }

    def action_sms(self, node: Node, what: str, stage: _StageContext) -> dict[str, Any]:
        if isinstance(node, ScalarNode):
            body = self.template_text({"body": node}, "body", None, node, what, required=True)
            return {"body": body, **self.send_options({}, what, stage)}
        fields = self.mapping(node, SMS_KEYS, what)
        body = self.template_text(fields, "body", "body_file", node, what, required=True)
        return {"body": body, **self.send_options(fields, what, stage)}

    def send_options(self, fields: dict[str, Node], what: str, stage: _StageContext) -> dict:
        window = self.send_window(fields.get("send_window"), what)
        return {
            "retry": self.retry(fields.get("retry"), what),
            "send_window": window or stage.pipeline.send_window,
        }

    def action_wait(self, node: Node, what: str, stage: _StageContext) -> dict[str, Any]:
        return {"seconds": self.duration(node, what)}

    def action_wait_for_reply(self, node: Node, what: str, stage: _StageContext) -> dict:
        if isinstance(node, ScalarNode):
            return {"timeout": self.duration(node, f"{what} timeout"), "on_reply": None,
                    "on_timeout": None}  # fmt: skip
        fields = self.mapping(node, WAIT_FOR_REPLY_KEYS, what)
        if "timeout" not in fields and isinstance(node, MappingNode):
            self.problem(node, f"{what} needs a timeout, e.g. {{timeout: 2d, on_timeout: lost}}")
        params: dict[str, Any] = {
            "timeout": self.duration(fields["timeout"], f"{what} timeout")
            if "timeout" in fields
            else None
        }
        for name in ("on_reply", "on_timeout"):
            target = self.text(fields[name], f"{what} {name}") if name in fields else None
            if target is not None:
                stage.pipeline.refs.append((fields[name], target, f"{what} {name}", False))
            params[name] = target
        return params

    def action_move(self, node: Node, what: str, stage: _StageContext) -> dict[str, Any]:
        target = self.text(node, what)
        if target is not None:
            stage.pipeline.refs.append((node, target, what, False))
        return {"stage": target}

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
        if name in fields and file_name in fields:
            self.problem(fields[file_name], f"{what}: give {name} or {file_name}, not both")
            return None
        if name in fields:
            source, node = self.text(fields[name], f"{what} {name}"), fields[name]
            label = name
        elif file_name in fields:
            node = fields[file_name]
            source, label = self.read_file(node, f"{what} {file_name}"), file_name
        else:
            if required and isinstance(parent, MappingNode):
                either = f"{name} or {file_name}" if file_name else name
                self.problem(parent, f"{what} needs {either}")
            return None
        if source is not None:
            for line, error in check_template(source):
                if file_name in fields:  # the template's own file and line, at the YAML's line
                    self.problem(node, f"{what} {label}: {fields[file_name].value}:{line}: {error}")
                else:
                    self.problems.append((_template_line(node, line), f"{what} {label}: {error}"))
        return source

    def read_file(self, node: Node, what: str) -> str | None:
        """A template file, relative to the YAML and inside its folder."""
        name = self.text(node, what)
        if name is None:
            return None
        target = (self.folder / name).resolve()
        if not target.is_relative_to(self.folder):
            self.problem(
                node, f"{what} {name!r} is outside the folder of {self.path}; keep templates there"
            )
            return None
        try:
            return target.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            self.problem(node, f"{what} {name!r} not found (looked for {target})")
        except (OSError, UnicodeDecodeError) as e:
            self.problem(node, f"{what} {name!r} cannot be read: {e}")
        return None


def _template_line(node: Node, line: int) -> int:
    """The YAML line of a template's `line`: a block scalar (`|`) starts on the next line."""
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        return line_of(node) + line
    return line_of(node) + line - 1


@dataclass
class _PipelineContext:
    """What a pipeline's actions inherit, and the stage references to check at its end."""

    on_failure: str
    send_window: dict[str, Any] | None
    refs: list[tuple[Node, str, str, bool]] = field(default_factory=list)


@dataclass
class _StageContext:
    what: str
    on_failure: str
    pipeline: _PipelineContext
