"""${VAR} in channel configs, resolved from the environment at send time, and kept out of errors."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from .. import defaults
from . import ChannelError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_KEYS = frozenset(defaults.SECRET_KEYS)
SECRET_SUFFIXES = defaults.SECRET_SUFFIXES
MIN_PART = 4  # shorter parts (a port, a flag) would mangle messages when scrubbed


def is_secret_key(key: str) -> bool:
    """`password`, `auth_token`, `api_key`, ... and names ending like them (`smtp_password`)."""
    key = key.lower()
    return key in SECRET_KEYS or key.endswith(SECRET_SUFFIXES)


@dataclass(frozen=True)
class Resolved:
    """A channel config with every ${VAR} replaced, plus the values that must never be shown."""

    config: dict[str, Any]
    secrets: tuple[str, ...]
    users: tuple[str, ...] = ()  # usernames that go with the secrets in basic-auth credentials

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by ***, in every encoding, for error messages."""
        return redact(text, self.secrets, self.users)


def redact(text: str, secrets: Sequence[str], users: Sequence[str] = ()) -> str:
    """`text` with each secret replaced by ***, in every form a server or Python may show it."""
    forms = {form for secret in secrets for form in _encodings(secret, tuple(users))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def resolve_config(channel: str, config: Mapping[str, Any], env: Mapping[str, str]) -> Resolved:
    """Resolve ${VAR} in every string of `config`; a missing variable is a ChannelError.

    Secrets, hidden from error messages: the values of secret keys (password, auth_token, ...)
    and of every header (an Authorization), and whatever a ${VAR} puts in a URL's userinfo or
    query string (`https://user:${PW}@host/`, `.../hook?token=${TOKEN}`). Other settings, such
    as an SMTP host or username from the environment, stay readable: the operator needs them.
    """
    secrets: set[str] = set()

    def sub(value: Any, key: str) -> Any:
        if isinstance(value, str):
            return sub_text(value, key)
        if isinstance(value, Mapping):
            return {k: sub(v, str(k) if key != "headers" else "secret") for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, key) for v in value]
        return value

    def sub_text(value: str, key: str) -> str:
        parts: list[str] = []
        spans: list[tuple[int, int]] = []  # where each ${VAR}'s value lies in the result
        pos = size = 0
        for m in _VAR.finditer(value):
            literal, raw = value[pos : m.start()], lookup(m.group(1))
            resolved = _escaped_for_url(raw, "".join(parts) + literal, value[m.end() :])
            parts += (literal, resolved)
            size += len(literal)
            spans.append((size, size + len(resolved)))
            size += len(resolved)
            pos = m.end()
        parts.append(value[pos:])
        out = "".join(parts)
        if is_secret_key(key):
            if out:
                secrets.add(out)
            regions = [(0, len(out))]
        else:
            regions = _url_secret_regions(out) if spans else []
        for start, end in spans:
            for r_start, r_end in regions:
                part = out[max(start, r_start) : min(end, r_end)]
                if len(part) >= MIN_PART:
                    secrets.update((part, unquote(part)))  # as sent, and as the variable has it
        return out

    def lookup(name: str) -> str:
        if name not in env:
            raise ChannelError(f"channel {channel}: environment variable {name} is not set")
        return env[name]

    resolved = {k: sub(v, str(k)) for k, v in config.items()}
    users = tuple(str(resolved[k]) for k in ("username", "account_sid") if resolved.get(k))
    return Resolved(resolved, tuple(sorted(secrets, key=len, reverse=True)), users)


def _escaped_for_url(value: str, before: str, after: str) -> str:
    """A ${VAR}'s value escaped for where it lies in a URL (`before` is the URL up to it), so
    a token with `&`, `#` or a space stays one query value; elsewhere it is left as it is."""
    scheme = before.find("://")
    if scheme < 0:
        return value
    rest = before[scheme + 3 :]
    if "?" in rest or "#" in rest:
        return quote(value, safe="")  # a query value or the fragment
    if "/" in rest:
        return quote(value, safe=_PATH_SAFE)  # a path: keep its slashes and sub-delimiters
    authority_end = next((i for i, c in enumerate(after) if c in "/?#"), len(after))
    if "@" in after[:authority_end]:
        return quote(value, safe="")  # user or password
    return value  # the host (or the whole URL)


_PATH_SAFE = "/:@!$&'()*+,;="


def _encodings(secret: str, users: tuple[str, ...]) -> set[str]:
    """Every form in which a server may echo a secret: as is, URL-encoded (%20 and +, either
    hex case), IMAP-quoted (`\\` and `\"`, as imaplib sends a LOGIN), escaped as Python's
    repr of the text or of its UTF-8 bytes, JSON-escaped, and base64 alone and as HTTP basic
    or SMTP/IMAP AUTH PLAIN credentials."""
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    forms = {secret, quoted}
    for text in (secret, quoted):  # a quoted LOGIN line may reach an error as str(bytes)
        forms.update((repr(text)[1:-1], repr(text.encode("utf-8"))[2:-1]))
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret, _PATH_SAFE)):
        forms.update((encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded)))
    raw = [secret, *(f"{user}:{secret}" for user in users)]
    raw += [f"\0{user}\0{secret}" for user in users]
    for text in raw:
        data = text.encode("utf-8")
        forms.update((base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()))
    return {f for f in forms if len(f) >= MIN_PART} | ({secret} if secret else set())


def _url_secret_regions(text: str) -> list[tuple[int, int]]:
    """The userinfo (`user:pw@`) and the query string and fragment of a URL, as spans."""
    scheme = text.find("://")
    if scheme < 0:
        return []
    start = scheme + 3
    end = next((i for i, c in enumerate(text[start:], start) if c in "/?#"), len(text))
    regions = []
    at = text.rfind("@", start, end)
    if at >= 0:
        regions.append((start, at))
    query = next((i for i, c in enumerate(text[end:], end) if c in "?#"), None)
    if query is not None:
        regions.append((query + 1, len(text)))
    return regions


def single_line(text: str) -> str:
    """Collapse CR, LF and other line breaks and control characters into single spaces."""
    cleaned = "".join(" " if (c < " " or c in "\x7f\x85\u2028\u2029") else c for c in text)
    return " ".join(cleaned.split())
