"""Raw RFC 5322 bytes -> InboundMessage: what kind of mail it is and the new text in it.

Never raises: broken MIME, unknown charsets, missing headers and huge parts all give a message
(at worst a `reply` with an empty body), so a sync never stops or skips at a bad one.
"""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from mailparser_reply import EmailReplyParser

from .. import defaults
from ..durations import format_time, parse_time, utcnow
from ..store.replies_sql import is_opt_out
from . import InboundMessage

# Quoted-history markers are recognised in these languages (mail-parser-reply's codes).
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "sv", "pl"]
MAX_TEXT = 64 * 1024  # a reply's text beyond this is not read for its quoted history
MAX_BODY = defaults.INBOUND_BODY  # characters of new text kept
MAX_DIAGNOSTIC = 300
MAX_REFERENCES = 50  # a runaway thread's References: the newest ones are the ones that match
MSGID = re.compile(r"<[^<>\s]+>")
STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
RETURNED_TYPES = ("text/rfc822-headers", "message/rfc822", "message/global-headers")
AUTO_PRECEDENCE = ("auto_reply", "bulk", "junk", "list")
# Exchange's automatic replies before it set Auto-Submitted: X-Auto-Response-Suppress (which
# Outlook also puts on ordinary mail) together with one of these subject prefixes.
EXCHANGE_AUTO_SUBJECT = re.compile(
    r"\s*(automatic reply|out of office|autosvar|automatische antwort|réponse automatique"
    r"|respuesta automática|risposta automatica|automatisch antwoord)\s*:",
    re.IGNORECASE,
)
SUBJECT_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:\s*)+", re.I)


def parse_message(
    raw: bytes,
    *,
    folder: str,
    uidvalidity: int,
    uid: int,
    internal_date: str | None = None,
) -> InboundMessage:
    """One fetched mail as an InboundMessage; never raises (see the module docstring)."""
    fallback_id = f"{folder}/{uidvalidity}/{uid}"
    try:
        return _parse(raw, fallback_id, internal_date)
    except Exception:  # a parser bug on a strange message must not stop the sync
        return InboundMessage(
            channel="email",
            source="imap",
            external_id=fallback_id,
            sender="",
            kind="reply",
            body="",
            received_at=internal_date or format_time(utcnow()),
        )


def _parse(raw: bytes, fallback_id: str, internal_date: str | None) -> InboundMessage:
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    message_id = _first_id(header(msg, "Message-ID"))
    sender = _addresses(msg, "From")
    subject = header(msg, "Subject") or None
    references = _references(msg)
    recipients = tuple(
        a for name in ("To", "Cc", "Delivered-To", "X-Original-To") for a in _addresses(msg, name)
    )
    fields: dict[str, Any] = {
        "channel": "email",
        "source": "imap",
        "external_id": message_id or fallback_id,
        "sender": sender[0] if sender else "",
        "subject": subject,
        "references": references,
        "recipients": tuple(dict.fromkeys(recipients)),
        "received_at": _received_at(msg, internal_date),
    }
    report = delivery_report(msg)
    if report is not None:
        return InboundMessage(**fields, **report)
    body = new_text(msg)
    return InboundMessage(**fields, kind=_kind(msg, subject, body), body=body)


def header(msg: Message, name: str) -> str:
    """A header decoded to text (RFC 2047 words, unknown charsets), on one line; "" if absent."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        words = []
        for chunk, charset in decode_header(str(value)):
            if isinstance(chunk, str):
                words.append(chunk)
                continue
            try:
                words.append(chunk.decode(charset or "ascii", errors="replace"))
            except LookupError:  # a charset no codec knows
                words.append(chunk.decode("utf-8", errors="replace"))
        text = "".join(words)
    except Exception:
        text = str(value)
    return " ".join(text.split())


def _addresses(msg: Message, name: str) -> list[str]:
    values = msg.get_all(name) or []
    try:
        pairs = getaddresses([str(v) for v in values])
    except Exception:
        return []
    return [addr.strip().lower() for _, addr in pairs if "@" in addr]


def _first_id(text: str) -> str | None:
    m = MSGID.search(text)
    return m.group(0) if m else None


def _references(msg: Message) -> tuple[str, ...]:
    """In-Reply-To, then References newest first: the sends this message may answer."""
    ids = MSGID.findall(header(msg, "In-Reply-To"))
    ids += reversed(MSGID.findall(header(msg, "References")))
    return tuple(dict.fromkeys(ids))[:MAX_REFERENCES]


def _received_at(msg: Message, internal_date: str | None) -> str:
    """The Date header; the server's date when it is missing, unreadable or far in the future."""
    received = parse_time(internal_date) if internal_date else None
    try:
        sent = parsedate_to_datetime(header(msg, "Date"))
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        latest = (received or datetime.now(UTC)) + timedelta(days=1)
        if sent.year >= 1990 and sent <= latest:
            return format_time(sent)
    except Exception:
        pass
    return format_time(received) if received else format_time(utcnow())


# -- what kind of mail -------------------------------------------------------------------------


def _kind(msg: Message, subject: str | None, body: str) -> str:
    if is_auto_reply(msg, subject):
        return "auto_reply"
    bare_subject = SUBJECT_PREFIX.sub("", subject or "")
    if is_opt_out(body) or is_opt_out(bare_subject):
        return "opt_out"
    return "reply"


def is_auto_reply(msg: Message, subject: str | None) -> bool:
    """RFC 3834 and the auto-responder headers that mail systems really send."""
    auto = header(msg, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    if header(msg, "Precedence").lower() in AUTO_PRECEDENCE or msg.get("List-Id") is not None:
        return True
    if "mailbox rules agent" in header(msg, "X-MS-Exchange-Generated-Message-Source").lower():
        return True
    return msg.get("X-Auto-Response-Suppress") is not None and bool(
        EXCHANGE_AUTO_SUBJECT.match(subject or "")
    )


def delivery_report(msg: Message) -> dict | None:
    """A DSN (RFC 3464) as kind/status/recipient/original Message-ID; None if not a DSN."""
    if msg.get_content_type() != "multipart/report":
        return None
    report_type = collapse_rfc2231_value(msg.get_param("report-type", "", header="content-type"))
    if report_type.lower() not in (
        "delivery-status",
        "global-delivery-status",
    ):
        return None
    blocks: list[dict[str, str]] = []
    returned: Message | None = None
    text = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in DSN_TYPES:
            blocks += _dsn_blocks(part)
        elif ctype in RETURNED_TYPES and returned is None:
            returned = _returned_headers(part)
        elif ctype == "text/plain" and not text:
            text = _decoded(part)
    recipients = [b for b in blocks if "action" in b or "final-recipient" in b]
    failed = [r for r in recipients if _is_failure(r)]
    delayed = [r for r in recipients if _is_delay(r)]
    chosen = (failed or delayed or recipients or [{}])[0]
    kind = "bounce" if failed else "soft_bounce" if delayed else "auto_reply"
    status = _status(chosen)
    diagnostic = " ".join(chosen.get("diagnostic-code", "").split())
    diagnostic = re.sub(r"^(smtp|x-[\w-]+)\s*;\s*", "", diagnostic, flags=re.I)
    recipient = chosen.get("final-recipient") or chosen.get("original-recipient") or ""
    recipient = recipient.split(";", 1)[-1].strip().strip("<>").lower()
    return {
        "kind": kind,
        "body": _first_lines(text),
        "bounced_message_id": _original_id(returned, blocks),
        "failed_recipient": recipient or None,
        "status": status,
        "diagnostic": diagnostic[:MAX_DIAGNOSTIC] or None,
    }


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a message/delivery-status part (lower-case names): the
    per-message one first, then one per recipient."""
    payload: Any = part.get_payload()  # Messages, or text when the email package left it whole
    if isinstance(payload, list):  # the email package splits the part into header blocks
        blocks = [{k.lower(): str(v) for k, v in block.items()} for block in payload]
    else:
        text = _decoded(part)
        blocks = [
            {k.lower(): str(v) for k, v in HeaderParser().parsestr(chunk.strip() + "\n").items()}
            for chunk in re.split(r"\r?\n\s*\r?\n", text)
            if chunk.strip()
        ]
    return blocks


def _original_id(returned: Message | None, blocks: list[dict[str, str]]) -> str | None:
    """The bounced message's Message-ID: from its returned headers, else the DSN's
    X-Original-Message-ID field (Gmail and Exchange add it)."""
    found = _first_id(header(returned, "Message-ID")) if returned is not None else None
    for block in blocks:
        found = found or _first_id(block.get("x-original-message-id", ""))
    return found


def _returned_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return HeaderParser().parsestr(_decoded(part))


def _status(recipient: dict[str, str]) -> str | None:
    for name in ("status", "diagnostic-code"):
        m = STATUS.search(recipient.get(name, ""))
        if m:
            return m.group(0)
    return None


def _is_failure(recipient: dict[str, str]) -> bool:
    status = _status(recipient) or ""
    action = recipient.get("action", "").strip().lower()
    return action == "failed" and not status.startswith("4")


def _is_delay(recipient: dict[str, str]) -> bool:
    action = recipient.get("action", "").strip().lower()
    return action == "delayed" or (_status(recipient) or "").startswith("4")


def _first_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines()[:20])[:MAX_BODY]


# -- the new text ------------------------------------------------------------------------------


def new_text(msg: Message) -> str:
    """The text the sender wrote in this message, without the quoted history."""
    plain = html = None
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = _decoded(part)
        elif ctype == "text/html" and html is None:
            html = _decoded(part)
        if plain is not None:
            break
    text = plain if plain is not None and plain.strip() else html_to_text(html or "")
    text = text.replace("\r\n", "\n")[:MAX_TEXT]
    try:
        reply = EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text=text)
    except Exception:
        reply = text
    return _drop_trailing_quote(reply or "")[:MAX_BODY]


def _drop_trailing_quote(text: str) -> str:
    """Any '>' quoted block left at the end, with its 'On ... wrote:' line (any language)."""
    lines = text.strip().splitlines()
    end = len(lines)
    while end and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end == len(lines):
        return text.strip()
    if end and lines[end - 1].rstrip().endswith(":"):
        end -= 1
    return "\n".join(lines[:end]).strip()


def _decoded(part: Message) -> str:
    """A part's text in its charset; an unknown or wrong charset is read as UTF-8, replaced."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", errors="replace")


class _HtmlText(HTMLParser):
    """HTML -> plain text, leaving out scripts, styles and the quoted thread (blockquotes,
    Gmail's gmail_quote and Outlook's divRplyFwdMsg/appendonsend)."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table", "hr"}
    QUOTE_MARKERS = ("gmail_quote", "divrplyfwdmsg", "appendonsend", "moz-cite-prefix")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0  # depth inside an element whose text is left out
        self.stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        marks = " ".join(str(v) for k, v in attrs if k in ("class", "id")).lower()
        if any(m in marks for m in self.QUOTE_MARKERS):
            self.stopped = True  # everything after the quote marker is history
        if tag in ("script", "style", "blockquote", "head"):
            self.skip += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "blockquote", "head") and self.skip:
            self.skip -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip and not self.stopped:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body, without the quoted thread."""
    parser = _HtmlText()
    try:
        parser.feed(html[: MAX_TEXT * 4])
        parser.close()
    except Exception:
        pass
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
