"""Channels render and send messages. No database here: a send returns or raises.

The tick calls, from worker threads:
    message = render_message(action)          # pipectl.channels.render (templates sandboxed)
    provider_id = senders.send(message)       # a SenderPool, one connection per thread
and turns `TransientError` into a retry of that lead (honouring `retry_after`),
`PermanentError` into a failure of that lead, and `ChannelError` (the channel is broken,
not the lead) into holding the channel's sends until a probe gets through. Any other
exception is treated as transient by the tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class TransientError(Exception):
    """Worth retrying this send later: a recipient's server said 4xx to RCPT or DATA, an
    HTTP 500 for this request."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ChannelError(TransientError):
    """The channel is broken, whoever the recipient: the server is down or unreachable, TLS
    or the login fails, the sender is refused, a ${VAR} is missing, the URL is wrong. Its
    sends are held (not an attempt) until a probe gets through; `retry_after` delays the
    probe. A TransientError, so code that does not know it still retries.

    `sent`: the message itself went out (a provider answered its request with an error), so
    a probe that failed this way was an attempt of its send; a missing ${VAR} or a refused
    connection sent nothing."""

    def __init__(self, message: str, retry_after: float | None = None, sent: bool = False):
        super().__init__(message, retry_after)
        self.sent = sent


class PermanentError(Exception):
    """Retrying cannot help this lead: a refused recipient, an invalid number, a message
    refused for its content, a template error, no address."""


@dataclass(frozen=True)
class Message:
    """A rendered message, ready to send; everything a sender needs and nothing secret."""

    channel: str  # "email" | "sms"
    account: str  # account key
    config: dict[str, Any]  # the account's channel config, ${VAR} not yet resolved
    to: str
    body: str
    action_id: int
    lead_id: int
    message_id: str  # derived from the action: the same on every attempt
    subject: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    date: str | None = None  # the tick's clock (`--now` included), UTC text: the Date header


@dataclass(frozen=True)
class SendAction:
    """What the tick hands a worker: the claimed action and the lead it is for."""

    action_id: int
    lead_id: int
    account: str
    type: str  # "email" | "sms"
    params: dict[str, Any]  # the snapshot (see pipectl.config.Action)
    lead: dict[str, Any]  # email, phone, first_name, last_name, timezone and custom fields
    config: dict[str, Any]  # the account's config for this channel (may be empty)
    instance: str = ""  # the database's random id, part of the Message-ID
    sent_at: str | None = None  # the tick's clock as it sends: the Date header
    # `thread: true`: the enrollment's previous email {"message_id", "subject", "references"}
    thread: dict[str, Any] | None = None
