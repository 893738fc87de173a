"""pipelines.yaml -> frozen dataclasses; every check, with file and line numbers.

The dataclasses below are the contract between the loader, `apply` and the tick.
`Action.params` is exactly what is stored in `pipeline_stage_actions.params` and copied
into `lead_stage_actions.params` when a lead enters the stage (the snapshot), so it holds
everything the tick needs, fully resolved (see the docstring of `Action`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .durations import Rate

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
