"""Posting one event to a hook: the exact body, signed with the hook's secret. No database.

`X-Pipectl-Signature: sha256=<hex HMAC-SHA256 of the body>` lets the receiver check that the
body came from us unchanged; `${VAR}`s in the URL, secret and headers are read from the
environment at send time and hidden from every error message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .. import __version__
from . import ChannelError
from .resolve import Resolved, resolve_config, single_line
from .sms import retry_after

SIGNATURE_HEADER = "X-Pipectl-Signature"
EVENT_HEADER = "X-Pipectl-Event"
EVENT_ID_HEADER = "X-Pipectl-Event-Id"


def signature(body: bytes, secret: str) -> str:
    """The value of X-Pipectl-Signature for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Posted:
    """What the receiver said: 2xx is delivered; anything else is an error to retry."""

    delivered: bool
    status: int | None = None  # the HTTP status, None when no answer came
    error: str | None = None
    retry_after: float | None = None
    sent: bool = True  # False: nothing went out (a ${VAR} is missing): not an attempt


@dataclass(frozen=True)
class Endpoint:
    """A hook's settings as written: `${VAR}`s are resolved by `post_event`."""

    url: str
    secret: str | None = None
    headers: Mapping[str, str] | None = None
    timeout: float = 10.0


def post_event(
    client: httpx.Client,
    endpoint: Endpoint,
    event_type: str,
    event_id: str,
    body: str,
    env: Mapping[str, str] | None = None,
) -> Posted:
    """POST `body` to the hook; never raises for what the network or the receiver does."""
    settings = {"url": endpoint.url, "secret": endpoint.secret or "", "headers": endpoint.headers}
    try:
        resolved = resolve_config("hook", settings, os.environ if env is None else env)
    except ChannelError as e:
        return Posted(False, error=str(e).replace("channel hook", "hook"), sent=False)
    data = body.encode("utf-8")
    headers = {
        str(k): single_line(str(v)) for k, v in (resolved.config.get("headers") or {}).items()
    }
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": f"pipectl/{__version__}",
            EVENT_HEADER: event_type,
            EVENT_ID_HEADER: event_id,
        }
    )
    if resolved.config["secret"]:
        headers[SIGNATURE_HEADER] = signature(data, resolved.config["secret"])
    url = str(resolved.config["url"])
    host = _where(url)
    try:
        response = client.post(
            url, content=data, headers=headers, timeout=httpx.Timeout(endpoint.timeout)
        )
    except httpx.TimeoutException:
        return Posted(False, error=f"{host}: no answer within {endpoint.timeout:g}s")
    except httpx.HTTPError as e:  # refused, reset, TLS, a bad URL
        return Posted(False, error=_scrub(resolved, f"{host}: {type(e).__name__}: {e}"))
    status = response.status_code
    if 200 <= status < 300:
        return Posted(True, status)
    excerpt = single_line(response.text)[:200]
    text = f"{host}: HTTP {status}" + (f": {excerpt}" if excerpt else "")
    return Posted(
        False,
        status,
        _scrub(resolved, text),
        retry_after(response.headers.get("retry-after")),
    )


def _where(url: str) -> str:
    """The scheme, host and port of a URL: its path or query may carry a token."""
    try:
        parsed = httpx.URL(url)
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{parsed.host}{port}"
    except Exception:
        return "the hook"


def _scrub(resolved: Resolved, text: str) -> str:
    return resolved.scrub(text)


def sample_event(event_type: str, now: str) -> tuple[str, str]:
    """(id, body) of an example event for `pipectl hooks test`: the real shape, made-up data."""
    event_id = str(uuid.uuid4())
    replied = event_type in ("replied", "opted_out", "bounced")
    body = {
        "id": event_id,
        "type": event_type,
        "occurred_at": now,
        "account": "example",
        "pipeline": "example-pipeline",
        "stage": "won" if event_type in ("won", "lost") else "inquired",
        "lead": {
            "id": 0,
            "email": "ann@example.com",
            "phone": "+12125550123",
            "first_name": "Ann",
            "last_name": "Example",
            "fields": {"company_name": "Example Roofing"},
            "status": "active",
        },
        "reply": {
            "id": 0,
            "channel": "email",
            "kind": {"opted_out": "opt_out", "bounced": "bounce"}.get(event_type, "reply"),
            "sender": "ann@example.com",
            "subject": "Re: Hello",
            "body": "STOP" if event_type == "opted_out" else "Sounds good, call me tomorrow",
            "received_at": now,
            "source": "manual",
        }
        if replied
        else None,
    }
    return event_id, json.dumps(body, ensure_ascii=False, separators=(",", ":"))
