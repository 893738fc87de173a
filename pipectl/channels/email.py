"""Email over SMTP: one reused connection per worker, proper MIME, errors classified."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from functools import lru_cache

from .. import defaults
from . import ChannelError, Message, PermanentError, TransientError
from .addresses import ascii_domains
from .resolve import Resolved, single_line

DEFAULT_FROM = defaults.EMAIL_FROM
DEFAULT_PORTS = defaults.SMTP_PORTS
_QUEUED_AS = re.compile(rb"queued as ([^\s;]+)", re.IGNORECASE)
# A reused connection the server has closed: worth one reconnect.
_STALE = (
    smtplib.SMTPServerDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class _Registry(HeaderRegistry):
    """HeaderRegistry builds a new class on every lookup (~20 us, 15 per message); cache them."""

    @lru_cache(maxsize=128)  # noqa: B019 - one registry for the process
    def __getitem__(self, name: str):
        return super().__getitem__(name)


POLICY = policy.default.clone(header_factory=_Registry())


def build_mime(message: Message, config: dict) -> EmailMessage:
    """The RFC 5322 message for SMTP and the outbox alike; every header made single-line."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _header("From", ascii_domains(str(config.get("from") or DEFAULT_FROM)))
    msg["To"] = single_line(message.to)
    msg["Subject"] = single_line(message.subject or "")
    msg["Date"] = _date(message.date)
    msg["Message-ID"] = message.message_id
    if config.get("reply_to"):
        msg["Reply-To"] = _header("Reply-To", ascii_domains(str(config["reply_to"])))
    if config.get("list_unsubscribe"):
        msg["List-Unsubscribe"] = _header("List-Unsubscribe", str(config["list_unsubscribe"]))
        if config.get("list_unsubscribe_post"):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in message.headers.items():
        msg[single_line(name)] = single_line(str(value))
    msg.set_content(message.body)
    if message.html:
        msg.add_alternative(message.html, subtype="html")
    return msg


def _date(when: str | None):
    """The Date header: the tick's clock (`--now` included), else the real one."""
    if when is None:
        return _header("Date", formatdate(usegmt=True))
    from ..durations import parse_time

    return _header("Date", formatdate(parse_time(when).timestamp(), usegmt=True))


@lru_cache(maxsize=256)
def _header(name: str, value: str):
    """A parsed header shared by many messages (parsing an address costs ~0.2 ms each time)."""
    return POLICY.header_factory(name, single_line(value))


@lru_cache(maxsize=1)
def _local_hostname() -> str:
    """The EHLO name, looked up once: socket.getfqdn can take seconds on a bad resolver."""
    return socket.getfqdn()


class _Replies:
    """Keeps the server's reply to DATA, which names the queue id ("queued as ...")."""

    last_data_reply = b""

    def data(self, msg):
        # A mixin for smtplib.SMTP and SMTP_SSL: the `data` it extends is theirs.
        code, reply = super().data(msg)  # type: ignore[misc]
        self.last_data_reply = reply
        return code, reply


class _SMTP(_Replies, smtplib.SMTP):
    pass


class _SMTPSSL(_Replies, smtplib.SMTP_SSL):
    pass


class _ServerClosed(Exception):
    """A 421 reply: the server closed the connection; worth one reconnect if it was reused."""


class SmtpSender:
    """One SMTP connection, opened on first use and reused; not shared between threads."""

    def __init__(self, resolved: Resolved):
        self.resolved = resolved
        cfg = resolved.config
        self.host = str(cfg.get("host") or "")
        self.security = str(cfg.get("security") or defaults.SMTP_SECURITY).lower()
        if self.security not in DEFAULT_PORTS:
            raise ChannelError(f"channel email: unknown security {self.security!r}")
        try:
            self.port = int(cfg.get("port") or DEFAULT_PORTS[self.security])
            self.timeout = float(cfg.get("timeout") or defaults.SEND_TIMEOUT)
        except (TypeError, ValueError):
            raise ChannelError("channel email: port and timeout must be numbers") from None
        self.conn: _SMTP | _SMTPSSL | None = None

    def send(self, message: Message) -> str | None:
        """Send one message; reconnects once if the server closed a reused connection."""
        mime = build_mime(message, self.resolved.config)
        for attempt in (1, 2):
            reused = self.conn is not None
            try:
                return self._deliver(mime, message.to)
            except (*_STALE, _ServerClosed) as e:
                self.close(polite=False)
                if not reused or attempt == 2:
                    text = str(e) or type(e).__name__
                    raise self._channel_error(f"connection lost: {text}") from None
        raise AssertionError("unreachable")

    def close(self, polite: bool = True) -> None:
        """Say QUIT (when `polite`) and drop the connection; never raises."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if polite:
                conn.quit()
        except Exception:
            pass
        finally:
            conn.close()

    def _deliver(self, mime: EmailMessage, to: str) -> str | None:
        try:
            conn = self.conn or self._connect()
            sender = parseaddr(str(mime["From"]))[1] or DEFAULT_FROM
            conn.last_data_reply = b""
            conn.send_message(mime, from_addr=sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = next(iter(e.recipients.values()), (0, b""))
            raise self._classified(code, reply, "recipient refused") from None
        except smtplib.SMTPSenderRefused as e:  # MAIL FROM: the channel's sender, not the lead
            if e.smtp_code == 421:
                raise _ServerClosed(f"sender refused: 421 {_text(e.smtp_error)}") from None
            if e.smtp_code == 552:  # the message's size, declared in MAIL FROM
                raise self._classified(e.smtp_code, e.smtp_error, "message refused") from None
            self.close(polite=False)
            raise self._channel_error(
                f"sender refused: {e.smtp_code} {_text(e.smtp_error)}"
            ) from None
        except smtplib.SMTPDataError as e:
            raise self._classified(e.smtp_code, e.smtp_error, "message refused") from None
        except smtplib.SMTPNotSupportedError:  # SMTPUTF8 needed and not offered
            raise PermanentError(
                f"channel email: {self.host}:{self.port} does not offer SMTPUTF8, which the"
                f" address {to!r} needs (its part before the @ is not ASCII)"
            ) from None
        except smtplib.SMTPAuthenticationError as e:
            self.close(polite=False)
            raise self._channel_error(f"authentication refused ({e.smtp_code})") from None
        except smtplib.SMTPResponseException as e:  # to the greeting, EHLO, STARTTLS
            self.close(polite=False)
            raise self._channel_error(f"server said {e.smtp_code} {_text(e.smtp_error)}") from None
        except _STALE:
            raise
        except (smtplib.SMTPException, OSError) as e:  # timeouts, refused connections, TLS
            self.close(polite=False)
            raise self._channel_error(f"{type(e).__name__}: {e}") from None
        match = _QUEUED_AS.search(conn.last_data_reply or b"")
        return match.group(1).decode("ascii", "replace") if match else None

    def _connect(self) -> _SMTP | _SMTPSSL:
        if not self.host:
            raise ChannelError("channel email: no SMTP host configured")
        if not str(self.resolved.config.get("from") or "").strip():  # e.g. ${SMTP_FROM} empty
            raise ChannelError("channel email: no from address configured")
        name = _local_hostname()
        conn: _SMTP | _SMTPSSL
        if self.security == "ssl":
            conn = _SMTPSSL(
                self.host, self.port, local_hostname=name, timeout=self.timeout, context=self._tls()
            )
        else:
            conn = _SMTP(self.host, self.port, local_hostname=name, timeout=self.timeout)
        self.conn = conn
        if self.security == "starttls":
            conn.starttls(context=self._tls())
            conn.ehlo()
        cfg = self.resolved.config
        if cfg.get("username"):
            conn.login(str(cfg["username"]), str(cfg.get("password") or ""))
        return conn

    def _tls(self) -> ssl.SSLContext:
        """Verify the server's certificate; `ca_file` trusts a private CA (an internal relay)."""
        return ssl.create_default_context(cafile=self.resolved.config.get("ca_file") or None)

    def _classified(self, code: int, reply: bytes | str, what: str) -> Exception:
        text = f"{what}: {code} {_text(reply)}"
        if code == 530:  # "authentication required": the channel's settings, not the lead
            return self._channel_error(text)
        if 500 <= code < 600:
            return PermanentError(self.resolved.scrub(f"channel email: {text}"))
        if code == 421:  # the server is closing this connection (often an idle timeout)
            return _ServerClosed(text)
        return self._transient(text)

    def _transient(self, text: str) -> TransientError:
        """This recipient or message, for now (4xx to RCPT or DATA): retried with backoff."""
        where = f"{self.host}:{self.port}"
        return TransientError(self.resolved.scrub(f"channel email: {where}: {text}"))

    def _channel_error(self, text: str) -> ChannelError:
        """The server or its settings, whoever the recipient: the channel's sends are held."""
        where = f"{self.host}:{self.port}"
        return ChannelError(self.resolved.scrub(f"channel email: {where}: {text}"))


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return single_line(reply)[:200]
