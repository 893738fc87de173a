"""Accounts and their limits: who sends, how much at once, from which channels."""

from __future__ import annotations

from typing import Any

import phonenumbers
from yaml.nodes import Node, ScalarNode

from .. import defaults
from ..durations import DurationError, Rate, parse_rate
from ..yaml_nodes import NodeReader, kind, line_of
from .channels import CHANNEL_KEYS, ChannelsReader
from .model import RATE_KEYS, Account, Limits, readable, yaml_keys
from .windows import WindowsReader

ACCOUNT_KEYS = yaml_keys(Account)
LIMIT_KEYS = yaml_keys(Limits)


class AccountsReader:
    """`accounts:`, each merged with the file's default channels."""

    def __init__(self, nodes: NodeReader, channels: ChannelsReader, windows: WindowsReader):
        self.nodes = nodes
        self.channels = channels
        self.windows = windows

    def accounts(self, node: Node | None, channel_defaults: dict[str, dict]) -> tuple[Account, ...]:
        nodes = self.nodes.sequence(node, "accounts") if node is not None else []
        parsed = [(self.account(n, channel_defaults), n) for n in nodes]
        kept = [(a, n) for a, n in parsed if a is not None]
        self.nodes.unique([a for a, _ in kept], [n for _, n in kept], "account")
        return tuple(a for a, _ in kept)

    def account(self, node: Node, channel_defaults: dict[str, dict]) -> Account | None:
        nodes = self.nodes
        fields = nodes.mapping(node, ACCOUNT_KEYS, "an account")
        key = nodes.key(fields, node, "an account")
        if key is None:
            return None
        what = f"account '{key}'"
        name = nodes.text(fields["name"], f"{what} name") if "name" in fields else None
        country = None
        if "country" in fields:
            country = (nodes.text(fields["country"], f"{what} country") or "").upper() or None
            if country and country not in phonenumbers.SUPPORTED_REGIONS:
                nodes.problem(
                    fields["country"],
                    f"{what} country {country!r} is not a region code like US, GB or DE",
                )
        own = (
            self.channels.channels(fields["channels"], f"{what} channels")
            if "channels" in fields
            else {}
        )
        merged = {ch: {**channel_defaults.get(ch, {}), **own.get(ch, {})} for ch in CHANNEL_KEYS}
        merged = {ch: settings for ch, settings in merged.items() if settings}
        for channel, settings in merged.items():
            self.channels.check_transport(channel, settings, fields.get("channels", node), what)
        if (merged.get("email") or {}).get("senders"):
            self.channels.check_senders(merged["email"], fields.get("channels", node), what)
        timezone = defaults.TIMEZONE
        if "timezone" in fields:
            timezone = nodes.timezone(fields["timezone"], f"{what} timezone") or defaults.TIMEZONE
        return Account(
            key=key,
            name=name or readable(key),
            timezone=timezone,
            country=country,
            limits=self.limits(fields["limits"], what) if "limits" in fields else Limits(),
            channels=merged,
            send_window=self.windows.send_window(fields.get("send_window"), what),
            line=line_of(node),
        )

    def limits(self, node: Node, what: str) -> Limits:
        nodes = self.nodes
        fields = nodes.mapping(node, LIMIT_KEYS, f"{what} limits")
        rates: dict[str, Rate] = {}
        if "rates" in fields:
            for channel, rate_node in nodes.mapping(
                fields["rates"], RATE_KEYS, f"{what} limits.rates"
            ).items():
                if not isinstance(rate_node, ScalarNode):
                    like = f"must be a rate like 200/hour, not {kind(rate_node)}"
                    nodes.problem(rate_node, f"{what} rates.{channel} {like}")
                    continue
                try:
                    rates[channel] = parse_rate(nodes.value(rate_node))
                except DurationError as e:
                    nodes.problem(rate_node, f"{what} rates.{channel}: {e}")
        active = fields.get("active_leads")
        concurrency = fields.get("concurrency")
        limits: dict[str, Any] = {"rates": rates}
        if active:
            limits["active_leads"] = nodes.positive_int(active, f"{what} active_leads")
        if concurrency:
            given = nodes.positive_int(concurrency, f"{what} concurrency")
            limits["concurrency"] = given or defaults.CONCURRENCY
        return Limits(**limits)
