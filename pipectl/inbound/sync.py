"""Run every inbound source of every account, within a deadline, and record what arrived.

Each account's sources are built from its stored channel config (`channels.email.inbox`,
`channels.sms` with `inbound`), ${VAR} resolved from the environment only now. Sources run
one after another; one that fails is recorded as failing (its error never holds a secret)
and the others go on. A source cut short by the deadline resumes from its cursor next time.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from .. import defaults
from ..channels import TransientError
from ..channels.resolve import Resolved, resolve_config
from ..statuses import DeliveryStatus
from . import KINDS, Fetcher, InboundMessage, SourceError, SyncCounts

if TYPE_CHECKING:
    from ..store import Store

MAX_SOURCE_TIMEOUT = 30.0  # seconds a source may block on one read
_MAILTO = re.compile(r"mailto:([^?>,\s]+)", re.IGNORECASE)
_OFF = {"false", "no", "off", "0"}
_STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass
class SourceRun:
    """One source of one account in one sync."""

    kind: str
    name: str
    counts: SyncCounts = field(default_factory=SyncCounts)
    error: str | None = None
    skipped: bool = False  # the deadline passed before its turn, or another runner reads it


@dataclass
class AccountSync:
    """What one sync did for one account, source by source."""

    account: str
    sources: list[SourceRun] = field(default_factory=list)

    def total(self) -> SyncCounts:
        total = SyncCounts()
        for s in self.sources:
            for name in ("fetched", "replies", "auto_replies", "bounces", "opt_outs"):
                setattr(total, name, getattr(total, name) + getattr(s.counts, name))
            total.unmatched += s.counts.unmatched
            total.failed_sends += s.counts.failed_sends
            total.errors += [s.error] if s.error else []
        return total

    def as_dict(self) -> dict[str, Any]:
        total = self.total()
        return {
            "account": self.account,
            "fetched": total.fetched,
            "replies": total.replies,
            "auto_replies": total.auto_replies,
            "bounces": total.bounces,
            "opt_outs": total.opt_outs,
            "unmatched": total.unmatched,
            "failed_sends": total.failed_sends,
            "sources": [
                {"kind": s.kind, "name": s.name, "error": s.error, "skipped": s.skipped}
                for s in self.sources
            ],
        }


@dataclass
class _Source:
    """A source about to run: its fetcher, or why it could not be built."""

    kind: str
    name: str
    fetcher: Fetcher | None
    resolved: Resolved | None
    error: str | None = None
    unsubscribe: frozenset[str] = frozenset()
    own: frozenset[str] = frozenset()


def sync(
    store: Store,
    *,
    now: str,
    account_key: str | None = None,
    seconds: float | None = None,
    env: Mapping[str, str] | None = None,
) -> list[AccountSync]:
    """Sync every configured source (of one account, if given) within `seconds`."""
    env = os.environ if env is None else env
    deadline = None if seconds is None else time.monotonic() + seconds
    accounts = (
        [store.config.account_by_key(account_key)] if account_key else store.config.accounts()
    )
    results = []
    for account in accounts:
        sources = _sources(account, env, _left(deadline))
        if not sources:
            store.sync_sources.retire_sources(account["id"], [])  # an inbox removed from the YAML
            continue
        done = AccountSync(account["key"])
        ids = []
        for source in sources:
            source_id = store.sync_sources.sync_source(account["id"], source.kind, source.name)
            ids.append(source_id)
            with store.sync_sources.reading(source_id) as mine:
                if not mine:  # another runner reads it now: each message is read once
                    done.sources.append(SourceRun(source.kind, source.name, skipped=True))
                    continue
                done.sources.append(_run(store, account, source, source_id, now, deadline))
        store.sync_sources.retire_sources(account["id"], ids)
        results.append(done)
    return results


def _left(deadline: float | None) -> float:
    """Seconds a source may block on one read: what the deadline leaves, at most 30."""
    if deadline is None:
        return MAX_SOURCE_TIMEOUT
    return max(0.5, min(MAX_SOURCE_TIMEOUT, deadline - time.monotonic()))


def _configs(channels: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The account's inbound sources: the email channel's inbox and every sender's, and the
    SMS provider's inbound messages."""
    found: list[tuple[str, dict[str, Any]]] = []
    email = channels.get("email") or {}
    inboxes = [dict(email["inbox"])] if isinstance(email.get("inbox"), Mapping) else []
    for sender in email.get("senders") or ():  # each sender's own, completed by the channel's
        if isinstance(sender, Mapping) and isinstance(sender.get("inbox"), Mapping):
            inboxes.append({**(email.get("inbox") or {}), **sender["inbox"]})
    for inbox in inboxes:
        if ("imap", inbox) not in found:  # two senders sharing one mailbox: read it once
            found.append(("imap", inbox))
    sms = channels.get("sms") or {}
    inbound = sms.get("inbound", defaults.SMS_INBOUND)
    if sms.get("transport") == "twilio" and str(inbound).strip().lower() not in _OFF:
        found.append(("twilio", dict(sms)))
    return found


def _sources(account: sqlite3.Row, env: Mapping[str, str], timeout: float) -> list[_Source]:
    """The account's sources, built from its stored config with ${VAR} resolved now."""
    channels = json.loads(account["channels"] or "{}")
    own = _own_addresses(channels.get("email") or {})
    unsubscribe = frozenset(
        a.lower()
        for a in _MAILTO.findall(str((channels.get("email") or {}).get("list_unsubscribe") or ""))
    )
    sources = []
    for kind, config in _configs(channels):
        what = "email inbox" if kind == "imap" else "sms inbound"
        try:
            resolved = resolve_config(what, config, env)
        except TransientError as e:  # a ${VAR} not set: named, never a value
            sources.append(_Source(kind, _fallback_name(kind, config), None, None, str(e)))
            continue
        try:
            fetcher = _fetcher(kind, account["key"], resolved.config, timeout)
        except Exception as e:  # a config the fetcher refuses (e.g. a port that is no number)
            error = resolved.scrub(f"{type(e).__name__}: {e}")
            sources.append(_Source(kind, _fallback_name(kind, config), None, resolved, error))
            continue
        sources.append(_Source(kind, fetcher.name, fetcher, resolved, None, unsubscribe, own))
    return sources


def _fetcher(kind: str, account: str, config: dict[str, Any], timeout: float) -> Fetcher:
    if kind == "imap":
        from .imap import ImapFetcher

        return ImapFetcher(account, config, timeout=timeout)
    from .twilio import TwilioFetcher

    return TwilioFetcher(account, config, timeout=timeout)


def _fallback_name(kind: str, config: Mapping[str, Any]) -> str:
    """A source's name from its unresolved config (${VAR} shown as written, never a value)."""
    if kind == "imap":
        return (
            f"imap://{config.get('username', '')}@{config.get('host', '')}:{config.get('port', '')}"
        )
    return f"twilio://{config.get('account_sid', '')}/{config.get('from', '')}"


def _run(
    store: Store,
    account: sqlite3.Row,
    source: _Source,
    source_id: int,
    now: str,
    deadline: float | None,
) -> SourceRun:
    """Read one source until it is done or the deadline passes; record its outcome."""
    run = SourceRun(source.kind, source.name)
    if deadline is not None and time.monotonic() >= deadline:
        run.skipped = True
        return run
    if source.fetcher is None:
        run.error = f"account {account['key']}: {source.name}: {source.error}"
        store.sync_sources.sync_finished(source_id, now, run.error)
        return run
    try:
        _read(store, account, source, source_id, now, deadline, run.counts)
    except sqlite3.Error:
        raise  # the database, not the source: the caller reports it
    except SourceError as e:
        run.error = _scrub(source, str(e))
    except Exception as e:  # a fetcher bug must not stop the other sources
        run.error = _scrub(
            source, f"account {account['key']}: {source.name}: {type(e).__name__}: {e}"
        )
    store.sync_sources.sync_finished(source_id, now, run.error)
    return run


def _scrub(source: _Source, text: str) -> str:
    return source.resolved.scrub(text) if source.resolved else text


def _read(
    store: Store,
    account: sqlite3.Row,
    source: _Source,
    source_id: int,
    now: str,
    deadline: float | None,
    counts: SyncCounts,
) -> None:
    assert source.fetcher is not None
    messages = source.fetcher.fetch(store.sync_sources.sync_cursors(source_id), now=now)
    try:
        for message, cursor in messages:
            message = _unsubscribing(_sane(message, now), source.unsubscribe)
            if message.sender and message.sender in source.own:
                # The team writing in the thread (a colleague, a copy of our own mail) is no
                # answer from the lead: kept, unmatched, acting on nothing.
                message = replace(message, references=())
            recorded = store.inbound.record_inbound(account["id"], message, cursor, source_id, now)
            counts.fetched += 1
            if recorded.new:
                _count(counts, recorded.kind, recorded.matched)
            if deadline is not None and time.monotonic() >= deadline:
                return  # cut short: the cursor stored with the last message resumes it
    finally:
        close = getattr(messages, "close", None)
        if close is not None:
            close()
    if source.kind != "twilio":
        return
    sids = store.delivery_status.texts_awaiting_status(account["id"], now)
    if not sids:
        return
    for status in source.fetcher.statuses(sids):
        if (
            store.delivery_status.record_text_status(account["id"], status, now)
            == DeliveryStatus.UNDELIVERED
        ):
            counts.failed_sends += 1
        if deadline is not None and time.monotonic() >= deadline:
            return


def _sane(message: InboundMessage, now: str) -> InboundMessage:
    """A message the database can hold: a fetcher's odd value (a kind it made up, a date
    that is no date) must never stop the sync on that message forever."""
    changes: dict[str, Any] = {}
    if message.kind not in KINDS:
        changes["kind"] = "reply"
    if not _STORED_TIME.fullmatch(message.received_at or ""):
        changes["received_at"] = now
    if message.channel not in ("email", "sms"):
        changes["channel"] = "sms" if message.source == "twilio" else "email"
    return replace(message, **changes) if changes else message


def _own_addresses(email: Mapping[str, Any]) -> frozenset[str]:
    """The account's own sending addresses (`from`, `reply_to`), lower-case."""
    found = set()
    mailboxes = [email, *(s for s in email.get("senders") or () if isinstance(s, Mapping))]
    for mailbox in mailboxes:
        for key in ("from", "reply_to"):
            value = str(mailbox.get(key) or "")
            if value and "${" not in value:
                address = parseaddr(value)[1].strip().lower()
                if "@" in address:
                    found.add(address)
    return frozenset(found)


def _unsubscribing(message: InboundMessage, addresses: frozenset[str]) -> InboundMessage:
    """Mail to the list_unsubscribe mailto address is an opt-out, whatever it says."""
    if message.kind == "reply" and addresses and addresses & set(message.recipients):
        return replace(message, kind="opt_out")
    return message


def _count(counts: SyncCounts, kind: str, matched: bool) -> None:
    if not matched:
        counts.unmatched += 1
        return
    name = {
        "reply": "replies",
        "auto_reply": "auto_replies",
        "bounce": "bounces",
        "opt_out": "opt_outs",
    }.get(kind)
    if name:
        setattr(counts, name, getattr(counts, name) + 1)
