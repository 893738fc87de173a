"""Text messages over HTTP: the Twilio REST API or a generic JSON webhook."""

from __future__ import annotations

import contextlib
import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

from .. import defaults
from . import ChannelError, Message, PermanentError, TransientError
from .resolve import Resolved, single_line

TWILIO_API = defaults.TWILIO_API
# HTTP statuses that say the URL, the credentials or the server are wrong or down, whoever
# the recipient: the channel's sends are held until a probe gets through.
CHANNEL_STATUSES = frozenset({401, 403, 404, 405, 407, 408, 410, 429, 502, 503, 504})
SERVER_ERRORS = frozenset({502, 503, 504})
# Twilio's error codes about the sending side (the account, the `From` number), not about
# the `To` number or the message, which fail only that lead (21211, 21610, 21614, ...).
TWILIO_CHANNEL_CODES = frozenset(
    {20003, 20005, 20404, 21212, 21603, 21606, 21607, 21611, 21659, 21660}
)
# httpx logs every request URL at INFO; a webhook URL may carry a token in its query string.
logging.getLogger("httpx").setLevel(logging.WARNING)


class HttpSmsSender:
    """One httpx.Client, opened on first use and reused; not shared between threads."""

    def __init__(self, resolved: Resolved, transport: str):
        self.resolved = resolved
        self.transport = transport
        cfg = resolved.config
        try:
            read = float(cfg.get("timeout") or defaults.SEND_TIMEOUT)
            self.timeout = httpx.Timeout(
                read, connect=float(cfg.get("connect_timeout") or defaults.CONNECT_TIMEOUT)
            )
        except (TypeError, ValueError):
            raise ChannelError("channel sms: timeout must be a number of seconds") from None
        self.client: httpx.Client | None = None

    def send(self, message: Message) -> str | None:
        """POST one text; returns the provider's message id."""
        url, kwargs = self._request(message)
        if self.client is None:
            self.client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        try:
            response = self.client.post(url, **kwargs)
        except httpx.TimeoutException:
            raise self._channel_error(f"{_host(url)}: timed out") from None
        except httpx.HTTPError as e:  # refused connections, resets, protocol errors, TLS
            raise self._channel_error(f"{_host(url)}: {type(e).__name__}: {e}") from None
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
                raise ChannelError("channel sms: twilio needs account_sid and auth_token")
            if not cfg.get("from") and not cfg.get("messaging_service_sid"):
                raise ChannelError("channel sms: twilio needs from or messaging_service_sid")
            base = str(cfg.get("base_url") or TWILIO_API).rstrip("/")
            url = f"{base}/2010-04-01/Accounts/{quote(str(sid), safe='')}/Messages.json"
            form = {"To": message.to, "Body": message.body}
            if cfg.get("messaging_service_sid"):
                form["MessagingServiceSid"] = str(cfg["messaging_service_sid"])
            if cfg.get("from"):
                form["From"] = str(cfg["from"])
            return url, {"data": form, "auth": (str(sid), str(token))}
        if not cfg.get("url"):
            raise ChannelError("channel sms: webhook needs a url")
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
        wait = retry_after(response.headers.get("retry-after"))
        if status in (401, 403):  # the channel's credentials, not the lead: held until fixed
            raise self._channel_error(f"authentication refused: HTTP {status}", wait)
        if status in CHANNEL_STATUSES or self._twilio_code(response) in TWILIO_CHANNEL_CODES:
            # A server error may have come after the provider took the text: a probe answered
            # so was an attempt. A refused login, a wrong URL or a rate limit sent nothing.
            raise self._channel_error(text, wait, sent=status in SERVER_ERRORS)
        if status >= 500:  # this request broke the server: retried, as this lead's
            raise self._transient(text, wait)
        if 400 <= status < 500:  # the number or the message: this lead's
            raise PermanentError(f"channel sms: {text}")
        raise self._channel_error(f"unexpected {text}")  # a redirect: a wrong URL

    def _twilio_code(self, response: httpx.Response) -> int | None:
        """Twilio's error code in a JSON error body, if any."""
        if self.transport != "twilio":
            return None
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError):
            return None
        return code if isinstance(code, int) else None

    def _transient(self, text: str, retry: float | None = None) -> TransientError:
        return TransientError(self.resolved.scrub(f"channel sms: {text}"), retry_after=retry)

    def _channel_error(
        self, text: str, retry: float | None = None, sent: bool = False
    ) -> ChannelError:
        return ChannelError(
            self.resolved.scrub(f"channel sms: {text}"), retry_after=retry, sent=sent
        )


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
