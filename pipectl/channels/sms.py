"""Text messages over HTTP: the Twilio REST API or a generic JSON webhook."""

from __future__ import annotations

import contextlib
import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

from . import Message, PermanentError, TransientError
from .resolve import Resolved, single_line

TWILIO_API = "https://api.twilio.com"
# httpx logs every request URL at INFO; a webhook URL may carry a token in its query string.
logging.getLogger("httpx").setLevel(logging.WARNING)


class HttpSmsSender:
    """One httpx.Client, opened on first use and reused; not shared between threads."""

    def __init__(self, resolved: Resolved, transport: str):
        self.resolved = resolved
        self.transport = transport
        cfg = resolved.config
        try:
            read = float(cfg.get("timeout") or 30)
            self.timeout = httpx.Timeout(read, connect=float(cfg.get("connect_timeout") or 10))
        except (TypeError, ValueError):
            raise TransientError("channel sms: timeout must be a number of seconds") from None
        self.client: httpx.Client | None = None

    def send(self, message: Message) -> str | None:
        """POST one text; returns the provider's message id."""
        url, kwargs = self._request(message)
        if self.client is None:
            self.client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        try:
            response = self.client.post(url, **kwargs)
        except httpx.TimeoutException:
            raise self._transient(f"{_host(url)}: timed out") from None
        except httpx.HTTPError as e:  # refused connections, resets, protocol errors
            raise self._transient(f"{_host(url)}: {type(e).__name__}: {e}") from None
        return self._result(response)

    def close(self) -> None:
        """Close the client's connections; never raises."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _request(self, message: Message) -> tuple[str, dict]:
        cfg = self.resolved.config
        if self.transport == "twilio":
            sid, token = cfg.get("account_sid"), cfg.get("auth_token")
            if not sid or not token:
                raise TransientError("channel sms: twilio needs account_sid and auth_token")
            if not cfg.get("from") and not cfg.get("messaging_service_sid"):
                raise TransientError("channel sms: twilio needs from or messaging_service_sid")
            base = str(cfg.get("base_url") or TWILIO_API).rstrip("/")
            url = f"{base}/2010-04-01/Accounts/{quote(str(sid), safe='')}/Messages.json"
            form = {"To": message.to, "Body": message.body}
            if cfg.get("messaging_service_sid"):
                form["MessagingServiceSid"] = str(cfg["messaging_service_sid"])
            if cfg.get("from"):
                form["From"] = str(cfg["from"])
            return url, {"data": form, "auth": (str(sid), str(token))}
        if not cfg.get("url"):
            raise TransientError("channel sms: webhook needs a url")
        payload = {
            "to": message.to,
            "body": message.body,
            "lead_id": message.lead_id,
            "action_id": message.action_id,
        }
        headers = {str(k): single_line(str(v)) for k, v in (cfg.get("headers") or {}).items()}
        return str(cfg["url"]), {"json": payload, "headers": headers}

    def _result(self, response: httpx.Response) -> str | None:
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json()
            except ValueError:
                return None
            key = "sid" if self.transport == "twilio" else "id"
            value = data.get(key) if isinstance(data, dict) else None
            return str(value) if value is not None else None
        excerpt = self.resolved.scrub(single_line(response.text)[:200])
        text = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
        if status in (408, 429) or status >= 500:
            wait = retry_after(response.headers.get("retry-after"))
            raise self._transient(text, wait)
        if status in (401, 403):  # the channel's credentials, not the lead: retry after a fix
            raise self._transient(f"authentication refused: HTTP {status}")
        if 400 <= status < 500:
            raise PermanentError(f"channel sms: {text}")
        raise self._transient(f"unexpected {text}")

    def _transient(self, text: str, retry: float | None = None) -> TransientError:
        return TransientError(self.resolved.scrub(f"channel sms: {text}"), retry_after=retry)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "webhook"
    except Exception:
        return "webhook"
