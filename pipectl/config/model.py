"""The frozen dataclasses a pipelines file becomes: the contract between the loader, `apply`
and the tick.

`Action.params` is exactly what is stored in `pipeline_stage_actions.params` and copied into
`lead_stage_actions.params` when a lead enters the stage (the snapshot), so it holds everything
the tick needs, fully resolved (see the docstring of `Action`). Each dataclass's fields are also
the keys the YAML allows in its section (`yaml_keys`), so a new field is a new key in one edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import defaults
from ..durations import Rate

ACTION_TYPES = ("email", "sms", "wait", "wait_for_reply", "move")
SEND_TYPES = ("email", "sms")
OUTCOMES = ("won", "lost")
RATE_KEYS = (*SEND_TYPES, "all")  # limits.rates: per channel and overall

# A field the YAML does not write (where it was read), or writes under another name.
WHERE: dict[str, Any] = {"yaml": None}


def written_as(key: str, *, file: bool = False) -> dict[str, Any]:
    """Field metadata: the YAML key of a field (`from`), and whether `<key>_file` may give it."""
    return {"yaml": key, "file": file}


def yaml_keys(cls: type) -> tuple[str, ...]:
    """The keys a section of the YAML allows: its dataclass's fields, in order, as written."""
    keys: list[str] = []
    for f in fields(cls):
        key = f.metadata.get("yaml", f.name)
        if key is None or key in keys:
            continue
        keys.append(key)
        if f.metadata.get("file"):
            keys.append(f"{key}_file")
    return tuple(keys)


def readable(key: str) -> str:
    """A stage or pipeline name from its key: `follow-up` -> `Follow up`."""
    words = key.replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


# -- accounts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    active_leads: int | None = defaults.ACTIVE_LEADS  # None: no limit
    concurrency: int = defaults.CONCURRENCY
    rates: dict[str, Rate] = field(default_factory=dict)  # keys: RATE_KEYS


@dataclass(frozen=True)
class Account:
    key: str
    name: str
    timezone: str = defaults.TIMEZONE
    country: str | None = None
    limits: Limits = field(default_factory=Limits)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # merged with defaults
    send_window: dict[str, Any] | None = None  # normalised, see SendWindow
    line: int = field(default=0, metadata=WHERE)


# -- channels: the settings each takes, as written (`${VAR}` kept, resolved at send time) ---------


@dataclass(frozen=True)
class Inbox:
    """The IMAP mailbox where an email channel's replies and bounces arrive."""

    host: str = ""
    port: int | None = None  # by security: defaults.IMAP_PORTS
    security: str = defaults.IMAP_SECURITY
    username: str = ""
    password: str = ""  # a ${VAR}
    folders: tuple[str, ...] = defaults.IMAP_FOLDERS


@dataclass(frozen=True)
class EmailChannel:
    transport: str = defaults.TRANSPORT
    host: str = ""
    port: int | None = None  # by security: defaults.SMTP_PORTS
    security: str = defaults.SMTP_SECURITY
    username: str = ""
    password: str = ""  # a ${VAR}
    timeout: float = defaults.SEND_TIMEOUT
    sender: str = field(default="", metadata=written_as("from"))
    reply_to: str = ""
    list_unsubscribe: str = ""
    list_unsubscribe_post: str = ""
    inbox: Inbox | None = None
    senders: tuple[dict[str, Any], ...] = ()  # Sender mailboxes, each a dict as written


@dataclass(frozen=True)
class Warmup:
    """A new mailbox's ramp: `start` sends on its first day, `step` more each day after."""

    start: int = 0
    step: int = 0


@dataclass(frozen=True)
class SenderLimits:
    """What a sender adds to the email channel's keys (which it may all override)."""

    daily_limit: int = 0  # sends per day, in the account's time zone
    warmup: Warmup | None = None


@dataclass(frozen=True)
class SmsChannel:
    transport: str = defaults.TRANSPORT
    account_sid: str = ""
    auth_token: str = ""  # a ${VAR}
    messaging_service_sid: str = ""
    sender: str = field(default="", metadata=written_as("from"))
    base_url: str = ""
    url: str = ""  # transport webhook
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = defaults.SEND_TIMEOUT
    connect_timeout: float = defaults.CONNECT_TIMEOUT
    inbound: bool = defaults.SMS_INBOUND


CHANNELS: dict[str, type] = {"email": EmailChannel, "sms": SmsChannel}

# -- send windows and retries ---------------------------------------------------------------------


@dataclass(frozen=True)
class SendWindow:
    """When sends may go out; stored as a dict of these fields (`days`: 0 = Monday)."""

    days: tuple[int, ...] = tuple(range(7))
    start: str = field(default=defaults.SEND_WINDOW_START, metadata=written_as("hours"))
    end: str = field(default=defaults.SEND_WINDOW_END, metadata=written_as("hours"))
    timezone: str | None = None  # None: the account's


@dataclass(frozen=True)
class Retry:
    """How a failed send is retried; stored as a dict of these fields (seconds)."""

    attempts: int = defaults.RETRY_ATTEMPTS
    backoff: int = defaults.RETRY_BACKOFF
    max_backoff: int = defaults.RETRY_MAX_BACKOFF


# -- pipelines, stages, actions -------------------------------------------------------------------


@dataclass(frozen=True)
class SendOptions:
    """What every send action (email, sms) may add to its params, after its own."""

    retry: Retry = field(default_factory=Retry)
    send_window: SendWindow | None = None  # the action's, else the pipeline's, else the account's


@dataclass(frozen=True)
class EmailParams:
    subject: str = ""
    body: str = field(default="", metadata=written_as("body", file=True))
    html: str | None = field(default=None, metadata=written_as("html", file=True))
    thread: bool = False  # sent as a reply in the enrollment's thread (subject optional)


@dataclass(frozen=True)
class SmsParams:
    body: str = field(default="", metadata=written_as("body", file=True))


@dataclass(frozen=True)
class WaitForReplyParams:
    timeout: int | None = None
    on_reply: str | None = None
    on_timeout: str | None = None


@dataclass(frozen=True)
class Action:
    """One action of a stage.

    `params` by type (all JSON-serialisable; durations already in seconds):
      email:          {"subject": str, "body": str, "html": str | None,
                       "thread": True (only when set: a reply in the enrollment's thread)}
      sms:            {"body": str}
      wait:           {"seconds": int}
      wait_for_reply: {"timeout": int, "on_reply": str | None, "on_timeout": str | None}
      move:           {"stage": str}
    plus, on every action:
      "on_failure":  "stop" | "continue" | <stage key>   (action's stage, else pipeline, else stop)
    and on email/sms (SendOptions):
      "retry":       {"attempts": int, "backoff": int, "max_backoff": int}
      "send_window": {"days": [0..6] (0 = Monday), "start": "HH:MM", "end": "HH:MM",
                      "timezone": str | None} or None  (action's, else pipeline's, else account's)
    Templates (`subject`, `body`, `html`) are the Jinja2 source text; a `body_file` is read
    at load time, so the snapshot holds the text itself.
    """

    type: str
    params: dict[str, Any]
    line: int = 0
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # per param


@dataclass(frozen=True)
class Stage:
    key: str
    name: str
    outcome: str | None = None  # "won" | "lost" | None
    actions: tuple[Action, ...] = ()
    on_failure: str | None = None
    line: int = field(default=0, metadata=WHERE)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False, metadata=WHERE)


@dataclass(frozen=True)
class Pipeline:
    key: str
    account: str
    name: str
    on_reply: str | None = None
    on_failure: str = defaults.ON_FAILURE
    send_window: dict[str, Any] | None = None  # its own, as its actions inherit it
    stages: tuple[Stage, ...] = ()
    line: int = field(default=0, metadata=WHERE)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False, metadata=WHERE)


# -- webhooks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookRetry:
    """How an event that its receiver refused is retried (seconds)."""

    attempts: int = defaults.HOOK_RETRY["attempts"]
    backoff: int = defaults.HOOK_RETRY["backoff"]
    max_backoff: int = defaults.HOOK_RETRY["max_backoff"]


@dataclass(frozen=True)
class Hook:
    """A receiver of events (`hooks:`); `secret` and header values keep their ${VAR}s."""

    url: str
    events: tuple[str, ...] = ()  # HookEvent values, in their order; the YAML's default: all
    account: str | None = None  # only this account's events; None: every account's
    secret: str = ""  # a ${VAR}: signs each body
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = defaults.HOOK_TIMEOUT
    retry: HookRetry = field(default_factory=HookRetry)
    line: int = field(default=0, metadata=WHERE)


@dataclass(frozen=True)
class Config:
    path: Path = field(metadata=WHERE)
    version: int = 1
    accounts: tuple[Account, ...] = ()
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # defaults of accounts'
    pipelines: tuple[Pipeline, ...] = ()
    hooks: tuple[Hook, ...] = ()
