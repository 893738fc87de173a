"""Inbound sync: what arrived in the team's mailboxes and at the SMS provider, recorded once.

Data flows one way:

    a fetcher (imap.py, twilio.py)          reads a source; no database; yields messages
        -> InboundMessage + Cursor          what arrived, and where the source is after it
    sync.py                                 runs each source of each account within a deadline
        -> store (store/inbound_sql.py)     matches, records (once, by external_id) and applies
                                            the effect, with the cursor, in one transaction

A fetcher raises `SourceError` when the source cannot be read; the message names the account,
the source and the server, never a secret. A message that cannot be parsed is still yielded
(kind `reply`, body empty or what could be read), never skipped, so nothing after it is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..statuses import ReplyKind, values

KINDS = values(ReplyKind)


class SourceError(Exception):
    """A source could not be read (down, login refused, timeout, garbage); no secret inside."""


@dataclass(frozen=True)
class Cursor:
    """Where one folder of a source stands: stored in the transaction that records a message."""

    folder: str  # an IMAP folder, or a name of the SMS source's own choosing ("inbound")
    uidvalidity: int | None = None
    last_uid: int | None = None
    position: str | None = None  # an SMS source's last DateSent read (stored time format)


@dataclass(frozen=True)
class InboundMessage:
    """One message as it arrived, classified, ready to be matched and recorded."""

    channel: str  # "email" | "sms"
    source: str  # "imap" | "twilio"
    external_id: str  # the Message-ID, else "folder/uidvalidity/uid"; a Twilio sid
    sender: str  # lower-case email address or E.164 number it came from ("" if unknown)
    kind: str  # one of KINDS
    body: str  # the new text, quoted history removed
    received_at: str  # its Date (else when the server got it), stored time format, UTC
    subject: str | None = None
    # Message-IDs it answers, In-Reply-To first then References (newest first), for matching.
    references: tuple[str, ...] = ()
    # To/Cc/Delivered-To addresses, lower-case: mail to the list_unsubscribe address opts out.
    recipients: tuple[str, ...] = ()
    # Bounces (DSN, RFC 3464): the original's Message-ID from the returned headers, the failed
    # recipient, its status (5.1.1) and the diagnostic text.
    bounced_message_id: str | None = None
    failed_recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None


@dataclass(frozen=True)
class TextStatus:
    """The final status the SMS provider reports for a text pipectl sent."""

    provider_id: str  # the message sid stored in deliveries.provider_id
    status: str  # the provider's: delivered, undelivered, failed, sent, queued, ...
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class SyncCounts:
    """What one source's sync found; printed per account by `pipectl sync`."""

    fetched: int = 0
    replies: int = 0
    auto_replies: int = 0
    bounces: int = 0
    opt_outs: int = 0
    unmatched: int = 0
    failed_sends: int = 0  # texts the provider reported undelivered or failed
    errors: list[str] = field(default_factory=list)


class Fetcher(Protocol):
    """One source of one account: an IMAP mailbox or an SMS provider's number."""

    kind: str  # "imap" | "twilio" (sync_sources.kind)
    name: str  # shown in status and errors: e.g. "imap://ann@imap.example:993"; no secret

    def fetch(
        self, cursors: dict[str, Cursor], *, now: str
    ) -> Iterator[tuple[InboundMessage, Cursor]]:
        """Yield what arrived after `cursors` (by folder), oldest first, each with the cursor
        that follows it. Raises SourceError when the source cannot be read."""
        ...

    def statuses(self, provider_ids: Sequence[str]) -> Iterator[TextStatus]:
        """The final status of texts sent (SMS sources); an IMAP source yields nothing."""
        ...
