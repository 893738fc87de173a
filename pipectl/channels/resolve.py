"""${VAR} in channel configs, resolved from the environment at send time, and kept out of errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import TransientError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_KEYS = frozenset({"password", "auth_token", "api_key", "token", "secret"})


@dataclass(frozen=True)
class Resolved:
    """A channel config with every ${VAR} replaced, plus the values that must never be shown."""

    config: dict[str, Any]
    secrets: tuple[str, ...]

    def scrub(self, text: str) -> str:
        """`text` with every secret value replaced by ***, for error messages."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def resolve_config(channel: str, config: Mapping[str, Any], env: Mapping[str, str]) -> Resolved:
    """Resolve ${VAR} in every string of `config`; a missing variable is a TransientError."""
    secrets: set[str] = set()

    def sub(value: Any, key: str) -> Any:
        if isinstance(value, str):
            out = _VAR.sub(lambda m: lookup(m.group(1)), value)
            if key in SECRET_KEYS and out:
                secrets.add(out)
            return out
        if isinstance(value, Mapping):
            return {k: sub(v, k if key != "headers" else "secret") for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, key) for v in value]
        return value

    def lookup(name: str) -> str:
        if name not in env:
            raise TransientError(f"channel {channel}: environment variable {name} is not set")
        value = env[name]
        if len(value) >= 4:  # shorter values (ports, flags) would mangle messages when scrubbed
            secrets.add(value)
        return value

    resolved = {k: sub(v, k) for k, v in config.items()}
    return Resolved(resolved, tuple(sorted(secrets, key=len, reverse=True)))


def single_line(text: str) -> str:
    """Collapse CR, LF and other line breaks and control characters into single spaces."""
    cleaned = "".join(" " if (c < " " or c in "\x7f\x85\u2028\u2029") else c for c in text)
    return " ".join(cleaned.split())
