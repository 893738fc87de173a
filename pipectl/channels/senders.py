"""SenderPool: picks the transport for a message and keeps one connection per worker thread."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .. import defaults
from . import ChannelError, Message, PermanentError, TransientError
from .resolve import Resolved, resolve_config

TRANSPORTS = defaults.TRANSPORTS


class Sender(Protocol):
    def send(self, message: Message) -> str | None: ...

    def close(self) -> None: ...


class SenderPool:
    """Senders for one tick: each thread reuses one connection per (account, channel config)."""

    def __init__(
        self,
        outbox_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        reuse_connections: bool = True,
    ):
        self.outbox_dir = Path(outbox_dir)
        self.env = os.environ if env is None else env
        self.reuse_connections = reuse_connections
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[threading.Lock, Sender]] = []

    def send(self, message: Message) -> str | None:
        """Send `message` (thread-safe); returns the provider's id or raises Transient/Permanent."""
        resolved = resolve_config(message.channel, message.config or {}, self.env)
        try:
            if not self.reuse_connections:
                sender = self._new_sender(message.channel, resolved)
                try:
                    return sender.send(message)
                finally:
                    sender.close()
            lock, sender = self._sender_for(message, resolved)
            with lock:
                return sender.send(message)
        except (TransientError, PermanentError):
            raise
        except Exception as e:  # a bug or an odd config: retry, and never show a secret
            text = f"channel {message.channel}: {type(e).__name__}: {e}"
            raise TransientError(resolved.scrub(text)) from None

    def close(self) -> None:
        """Close every connection opened by any thread; once, at the end of the tick."""
        with self._lock:
            senders = list(self._all)
        for lock, sender in senders:
            with lock, contextlib.suppress(Exception):
                sender.close()

    def _sender_for(self, message: Message, resolved: Resolved) -> tuple[threading.Lock, Sender]:
        cache: dict[Any, tuple[threading.Lock, Sender]] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        # Keyed on the resolved config (kept in memory only): a changed password gets a new login.
        key = (
            message.account,
            message.channel,
            json.dumps(resolved.config, sort_keys=True, default=str),
        )
        entry = cache.get(key)
        if entry is None:
            entry = (threading.Lock(), self._new_sender(message.channel, resolved))
            cache[key] = entry
            with self._lock:
                self._all.append(entry)
        return entry

    def _new_sender(self, channel: str, resolved: Resolved) -> Sender:
        transport = str(resolved.config.get("transport") or defaults.TRANSPORT).lower()
        if transport not in TRANSPORTS.get(channel, ()):
            raise ChannelError(f"channel {channel}: unknown transport {transport!r}")
        # Each transport loads with its first message (httpx alone costs more than an idle tick).
        if transport == "outbox":
            from .outbox import OutboxSender

            return OutboxSender(self.outbox_dir, resolved)
        if transport == "smtp":
            from .email import SmtpSender

            return SmtpSender(resolved)
        from .sms import HttpSmsSender

        return HttpSmsSender(resolved, transport)
