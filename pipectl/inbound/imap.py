"""Reading a team mailbox over IMAP, read-only and incremental by UID.

Read-only because the team reads the same mailbox: folders are opened with EXAMINE and bodies
fetched with BODY.PEEK, so nothing is marked seen, moved or deleted; a guard refuses any other
command. Incremental: per folder, one `UID SEARCH` for the UIDs after the last one recorded,
under the folder's UIDVALIDITY; with no cursor, or a changed UIDVALIDITY, the folder is read
from 14 days back (SEARCH SINCE).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import ssl
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .. import defaults
from ..channels.resolve import MIN_PART as MIN_SECRET
from ..channels.resolve import redact
from ..durations import format_time, parse_time
from . import Cursor, InboundMessage, SourceError, TextStatus
from .parse import parse_message

DEFAULT_PORTS = defaults.IMAP_PORTS
REREAD_DAYS = 14
BATCH = 50  # messages per UID FETCH
BATCH_BYTES = 16 * 1024 * 1024  # and at most this much mail (one larger message goes alone)
MAX_TIMEOUT = defaults.INBOUND_TIMEOUT
# Every command this module may send; anything else (STORE, COPY, MOVE, EXPUNGE, SELECT,
# APPEND, DELETE...) is refused before it reaches the server.
ALLOWED_COMMANDS = frozenset(
    {"CAPABILITY", "LOGIN", "AUTHENTICATE", "STARTTLS", "EXAMINE", "LIST", "UID", "LOGOUT", "NOOP"}
)
ALLOWED_UID_COMMANDS = frozenset({"SEARCH", "FETCH"})
# Folders where the team's own mail lies: reading them would count follow-ups as replies.
OUTGOING_FLAGS = ("\\sent", "\\drafts", "\\all")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class _ReadOnly:
    """Mixed into imaplib's classes: refuses every command that could change the mailbox."""

    def _command(self, name: str, *args: Any) -> Any:
        if name not in ALLOWED_COMMANDS or (
            name == "UID" and str(args[0]).upper() not in ALLOWED_UID_COMMANDS
        ):
            raise imaplib.IMAP4.error(f"pipectl reads mailboxes only; refused {name} {args[:1]}")
        return super()._command(name, *args)  # type: ignore[misc]


class _Imap(_ReadOnly, imaplib.IMAP4):
    pass


class _ImapSsl(_ReadOnly, imaplib.IMAP4_SSL):
    pass


class ImapFetcher:
    """One mailbox of one account: its configured folders, read-only, new mail only."""

    kind = "imap"

    def __init__(self, account: str, config: Mapping[str, Any], *, timeout: float = MAX_TIMEOUT):
        self.account = account
        self.host = str(config.get("host") or "")
        self.security = str(config.get("security") or defaults.IMAP_SECURITY)
        self.port = int(
            config.get("port")
            or DEFAULT_PORTS.get(self.security, DEFAULT_PORTS[defaults.IMAP_SECURITY])
        )
        self.username = str(config.get("username") or "")
        self.password = str(config.get("password") or "")
        folders = config.get("folders") or list(defaults.IMAP_FOLDERS)
        self.folders = [str(f) for f in ([folders] if isinstance(folders, str) else folders)]
        self.timeout = max(1.0, min(float(timeout), MAX_TIMEOUT))
        self.name = f"imap://{self.username}@{self.host}:{self.port}"

    def fetch(
        self, cursors: Mapping[str, Cursor], *, now: str
    ) -> Iterator[tuple[InboundMessage, Cursor]]:
        """New messages of each folder, oldest first, each with the cursor that follows it."""
        imap = self._connect()
        problems: list[str] = []
        try:
            for folder in self.folders:
                try:
                    yield from self._folder(imap, folder, cursors.get(folder), now)
                except _FolderProblem as e:
                    problems.append(str(e))
        finally:
            with contextlib.suppress(Exception):
                imap.logout()
        if problems:
            raise self._error("; ".join(problems))

    def statuses(self, provider_ids: Sequence[str]) -> Iterator[TextStatus]:
        """Mailboxes report no text statuses."""
        return iter(())

    # -- the connection ------------------------------------------------------------------------

    def _connect(self) -> imaplib.IMAP4:
        if not self.host:
            raise self._error("no host configured (channels.email.inbox.host)")
        imap: imaplib.IMAP4 | None = None
        try:
            if self.security == "ssl":
                imap = _ImapSsl(
                    self.host, self.port, ssl_context=ssl.create_default_context(),
                    timeout=self.timeout,
                )  # fmt: skip
            else:
                imap = _Imap(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    imap.starttls(ssl.create_default_context())
        except (TimeoutError, OSError, imaplib.IMAP4.error, EOFError, ValueError) as e:
            if imap is not None:
                _close(imap)
            raise self._error(f"cannot connect: {_describe(e)}") from None
        try:
            self._login(imap)
        except SourceError:
            _close(imap)
            raise
        except imaplib.IMAP4.error as e:
            _close(imap)
            raise self._error(f"login refused for {self.username}: {_describe(e)}") from None
        except (TimeoutError, OSError, EOFError, ValueError) as e:
            _close(imap)
            raise self._error(f"login failed: {_describe(e)}") from None
        return imap

    def _login(self, imap: imaplib.IMAP4) -> None:
        """LOGIN, which imaplib sends in ASCII only; AUTHENTICATE PLAIN (UTF-8) otherwise."""
        if self.username.isascii() and self.password.isascii():
            imap.login(self.username, self.password)
            return
        if "AUTH=PLAIN" not in imap.capabilities:
            raise self._error(
                f"cannot log in as {self.username}: the username or password is not ASCII and"
                " the server offers no AUTHENTICATE PLAIN (AUTH=PLAIN) to send it in UTF-8"
            )
        credentials = f"\0{self.username}\0{self.password}".encode()
        imap.authenticate("PLAIN", lambda _challenge: credentials)

    def _error(self, what: str) -> SourceError:
        text = f"account {self.account}: {self.name}: {what}"
        if len(self.password) >= MIN_SECRET:
            text = redact(text, (self.password,), (self.username,))
        return SourceError(text)

    # -- one folder ----------------------------------------------------------------------------

    def _folder(
        self, imap: imaplib.IMAP4, folder: str, cursor: Cursor | None, now: str
    ) -> Iterator[tuple[InboundMessage, Cursor]]:
        uidvalidity, uids = self._new_uids(imap, folder, cursor, now)
        for batch in self._batches(imap, folder, uids):
            for uid, raw, internal in self._fetch_batch(imap, folder, batch):
                message = parse_message(
                    raw, folder=folder, uidvalidity=uidvalidity, uid=uid, internal_date=internal
                )
                yield message, Cursor(folder=folder, uidvalidity=uidvalidity, last_uid=uid)

    def _new_uids(
        self, imap: imaplib.IMAP4, folder: str, cursor: Cursor | None, now: str
    ) -> tuple[int, list[int]]:
        """EXAMINE the folder; the UIDs to read, ascending, with one UID SEARCH."""
        quoted = _quote(folder)
        try:
            typ, listed = imap.list('""', quoted)
            flags = b" ".join(d for d in listed if isinstance(d, bytes)).decode(errors="replace")
            outgoing = [f for f in OUTGOING_FLAGS if f in flags.lower()]
            if typ == "OK" and outgoing:
                raise _FolderProblem(
                    f"folder {folder!r} holds the team's own mail ({outgoing[0][1:]}); read only"
                    " the folders where replies arrive (channels.email.inbox.folders)"
                )
            typ, opened = imap.select(quoted, readonly=True)  # EXAMINE
            if typ != "OK":
                raise _FolderProblem(f"cannot open folder {folder!r}: {_text(opened)}")
            uidvalidity = int(_text(imap.response("UIDVALIDITY")[1]) or 0)
            if cursor and cursor.uidvalidity == uidvalidity and cursor.last_uid is not None:
                last = cursor.last_uid
                typ, data = imap.uid("SEARCH", f"UID {last + 1}:*")
            else:
                last = 0
                typ, data = imap.uid("SEARCH", f"SINCE {_imap_date(now, REREAD_DAYS)}")
            if typ != "OK":
                raise _FolderProblem(f"search failed in folder {folder!r}: {_text(data)}")
        except _FolderProblem:
            raise
        except (imaplib.IMAP4.error, OSError, EOFError, ValueError) as e:
            raise self._error(f"folder {folder!r}: {_describe(e)}") from None
        # `UID n:*` answers the last message even when nothing is new: keep only UIDs > last.
        uids = sorted({int(u) for u in _text(data).split() if u.isdigit() and int(u) > last})
        return uidvalidity, uids

    def _batches(self, imap: imaplib.IMAP4, folder: str, uids: list[int]) -> Iterator[list[int]]:
        """UIDs in groups of at most BATCH messages and BATCH_BYTES (sizes asked first), so a
        run of large attachments is never all in memory at once."""
        sizes: dict[int, int] = {}
        for start in range(0, len(uids), 1000):
            chunk = ",".join(map(str, uids[start : start + 1000]))
            try:
                typ, data = imap.uid("FETCH", chunk, "(UID RFC822.SIZE)")
            except (imaplib.IMAP4.error, OSError, EOFError, ValueError) as e:
                raise self._error(f"folder {folder!r}: fetch failed: {_describe(e)}") from None
            for item in data if typ == "OK" else []:
                head = item[0] if isinstance(item, tuple) else item
                uid_match, size_match = _UID.search(head or b""), _SIZE.search(head or b"")
                if uid_match and size_match:
                    sizes[int(uid_match.group(1))] = int(size_match.group(1))
        batch: list[int] = []
        total = 0
        for uid in uids:
            size = sizes.get(uid, 0)
            if batch and (len(batch) >= BATCH or total + size > BATCH_BYTES):
                yield batch
                batch, total = [], 0
            batch.append(uid)
            total += size
        if batch:
            yield batch

    def _fetch_batch(
        self, imap: imaplib.IMAP4, folder: str, uids: list[int]
    ) -> list[tuple[int, bytes, str | None]]:
        """(uid, raw bytes, internal date) of each message still there, ascending by UID."""
        try:
            typ, data = imap.uid(
                "FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE BODY.PEEK[])"
            )
        except (imaplib.IMAP4.error, OSError, EOFError, ValueError) as e:
            raise self._error(f"folder {folder!r}: fetch failed: {_describe(e)}") from None
        if typ != "OK":
            raise self._error(f"folder {folder!r}: fetch failed: {_text(data)}")
        found: dict[int, tuple[int, bytes, str | None]] = {}
        for item in data:
            if not isinstance(item, tuple) or len(item) < 2:
                continue
            head, raw = item[0], item[1]
            m = _UID.search(head)
            if not m:
                continue
            uid = int(m.group(1))
            date = _INTERNALDATE.search(head)
            found[uid] = (uid, raw, _internal_date(date.group(1)) if date else None)
        # A message expunged meanwhile is simply absent; the ones after it are still read.
        return [found[uid] for uid in uids if uid in found]


class _FolderProblem(Exception):
    """One folder cannot be read; the others still are, then the source reports it."""


def _quote(folder: str) -> str:
    """A folder name as IMAP wants it: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    name = _utf7(folder)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _utf7(name: str) -> str:
    """`Entwürfe` -> `Entw&APw-rfe`: non-ASCII runs as base64 of UTF-16, `&` as `&-`."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _text(data: Any) -> str:
    parts = data if isinstance(data, list | tuple) else [data]
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part.decode(errors="replace"))
        elif isinstance(part, str):
            out.append(part)
    return " ".join(out).strip()


def _describe(e: BaseException) -> str:
    """An exception as one readable line: a server's answer decoded, never Python's b'...'."""
    only = e.args[0] if len(e.args) == 1 else None
    text = only.decode(errors="replace") if isinstance(only, bytes) else str(e)
    if isinstance(e, TimeoutError) or "timed out" in text:
        return "timed out"
    return f"{type(e).__name__}: {text}" if not text.startswith("[") else text


def _close(imap: imaplib.IMAP4) -> None:
    with contextlib.suppress(Exception):
        imap.shutdown()


def _imap_date(now: str, days_back: int) -> str:
    """`30-Nov-2026`: IMAP's date, in English whatever the locale."""
    day = parse_time(now) - timedelta(days=days_back)
    return f"{day.day}-{MONTHS[day.month - 1]}-{day.year}"


def _internal_date(value: bytes) -> str | None:
    """INTERNALDATE (`30-Nov-2026 17:14:05 +0000`) in the stored time format."""
    try:
        day, time, zone = value.decode().strip().split()
        d, mon, year = day.split("-")
        when = datetime.strptime(
            f"{int(d):02d}-{MONTHS.index(mon.title()) + 1:02d}-{year} {time} {zone}",
            "%d-%m-%Y %H:%M:%S %z",
        )
        return format_time(when)
    except (ValueError, IndexError):
        return None
