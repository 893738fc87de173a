"""Channels, inboxes and secrets: settings kept as written, `${VAR}` resolved only at send time."""

from __future__ import annotations

import re
from email.utils import getaddresses
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from .. import defaults
from ..channels.addresses import mailbox_address as sender_address
from ..channels.resolve import is_secret_key
from ..yaml_nodes import NodeReader
from .model import CHANNELS, Inbox, SenderLimits, Warmup, yaml_keys

VAR_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
CHANNEL_KEYS = {channel: yaml_keys(settings) for channel, settings in CHANNELS.items()}
INBOX_KEYS = yaml_keys(Inbox)
# A sender mailbox overrides any email channel key and adds its daily limit and warm-up.
SENDER_KEYS = tuple(k for k in CHANNEL_KEYS["email"] if k != "senders") + yaml_keys(SenderLimits)
SENDER_OWN = defaults.SENDER_OWN
WARMUP_KEYS = yaml_keys(Warmup)
# Folders where the team's own mail lies (by their usual names; the server's \Sent, \Drafts
# and \All flags are checked again at sync): reading them would count follow-ups as replies.
OUTGOING_FOLDERS = (
    "sent", "sent items", "sent mail", "sent messages", "drafts", "all mail", "outbox",
)  # fmt: skip
REQUIRED_SETTINGS = {
    "smtp": ("host", "from"),
    "twilio": ("account_sid", "auth_token"),
    "webhook": ("url",),
}
NUMBER_SETTINGS = ("port", "timeout", "connect_timeout")


def is_address(value: str) -> bool:
    """An email address, with or without a display name (or a ${VAR} read at send time)."""
    if VAR_REFERENCE.search(value):
        return True
    pairs = getaddresses([value])
    return bool(pairs) and all(
        "@" in address and address.rpartition("@")[2] for _, address in pairs
    )


class ChannelsReader:
    """The `channels:` of the file and of each account, checked key by key."""

    def __init__(self, nodes: NodeReader):
        self.nodes = nodes
        self.sender_nodes: dict[int, Node] = {}  # id of a sender's dict -> its node, for lines

    def channels(self, node: Node, what: str) -> dict[str, dict[str, Any]]:
        """Channel settings as written: `${VAR}` stays a reference, resolved only at send time."""
        result: dict[str, dict[str, Any]] = {}
        for channel, channel_node in self.nodes.mapping(node, tuple(CHANNEL_KEYS), what).items():
            settings = {}
            for name, value_node in self.nodes.mapping(
                channel_node, CHANNEL_KEYS[channel], f"{what}.{channel}"
            ).items():
                setting = self.setting(value_node, f"{what}.{channel}.{name}", channel, name)
                if setting is not None:
                    settings[name] = setting
            result[channel] = settings
        return result

    def setting(self, node: Node, what: str, channel: str, name: str) -> Any:
        if name == "headers":
            return self.headers(node, what)
        if name == "inbox":
            return self.inbox(node, what)
        if name == "senders":
            return self.senders(node, what)
        if name == "inbound":
            return self.nodes.flag(node, what)
        if name in NUMBER_SETTINGS and isinstance(node, ScalarNode):
            value = self.nodes.value(node)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return value
        text = self.nodes.text(node, what)
        if text is None:
            return None
        self.check_text(node, what, channel, name, text)
        if is_secret_key(name) and not VAR_REFERENCE.fullmatch(text) and not self.broken(text):
            return None
        return text

    @staticmethod
    def broken(text: str) -> bool:
        """A `${` that is not a whole `${NAME}` reference."""
        return "${" in text and bool(VAR_REFERENCE.sub("", text).count("${"))

    def check_text(self, node: Node, what: str, channel: str, name: str, value: str) -> None:
        """One problem at most per setting, the first that applies."""
        problem = self.nodes.problem
        if self.broken(value):
            problem(node, f"{what}: write environment references as ${{NAME}}")
        elif is_secret_key(name) and not VAR_REFERENCE.fullmatch(value):
            problem(
                node,
                f"{what} must be an environment reference like ${{SMTP_PASSWORD}}: secrets are"
                " read from the environment at send time, never written in the YAML",
            )
        elif name in NUMBER_SETTINGS and not VAR_REFERENCE.fullmatch(value):
            problem(node, f"{what} must be a number greater than 0, not {value!r}")
        elif name == "transport" and value not in defaults.TRANSPORTS[channel]:
            allowed = " | ".join(defaults.TRANSPORTS[channel])
            problem(node, f"{what} must be {allowed}, not {value!r}")
        elif name == "security" and value not in defaults.SECURITY:
            problem(node, f"{what} must be {' | '.join(defaults.SECURITY)}, not {value!r}")
        elif channel == "email" and name in ("from", "reply_to") and not is_address(value):
            problem(
                node,
                f'{what} {value!r} is not an email address like "Acme Sales <sales@acme.example>"',
            )

    def senders(self, node: Node, what: str) -> list[dict[str, Any]]:
        """Sender mailboxes: each overrides the email channel's keys, with its own daily limit,
        warm-up and inbox; named by its `from` address, which must be written out."""
        senders: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for number, sender_node in enumerate(self.nodes.sequence(node, what), start=1):
            where = f"{what}[{number}]"
            fields = self.nodes.mapping(sender_node, SENDER_KEYS, where)
            if not isinstance(sender_node, MappingNode):
                continue
            sender: dict[str, Any] = {}
            for name, value_node in fields.items():
                value = self.sender_setting(value_node, f"{where}.{name}", name)
                if value is not None:
                    sender[name] = value
            address = self.sender_identity(fields, sender_node, where)
            if "daily_limit" not in fields:
                self.nodes.problem(
                    sender_node, f"{where} needs daily_limit (sends per day, e.g. 300)"
                )
            if address in seen:
                self.nodes.problem(
                    fields["from"],
                    f"{where}: sender {address} is listed twice (first at line {seen[address]})",
                )
            elif address:
                seen[address] = fields["from"].start_mark.line + 1
            self.sender_nodes[id(sender)] = sender_node
            senders.append(sender)
        return senders

    def sender_setting(self, node: Node, what: str, name: str) -> Any:
        if name == "daily_limit":
            return self.nodes.positive_int(node, what)
        if name == "warmup":
            fields = self.nodes.mapping(node, WARMUP_KEYS, what)
            warmup = {}
            for key in WARMUP_KEYS:
                if key not in fields:
                    if isinstance(node, MappingNode):
                        self.nodes.problem(node, f"{what} needs {key} (e.g. start: 20, step: 10)")
                    continue
                if (value := self.nodes.positive_int(fields[key], f"{what}.{key}")) is not None:
                    warmup[key] = value
            return warmup if len(warmup) == len(WARMUP_KEYS) else None
        if name == "inbox":
            return self.inbox(node, what, partial=True)
        return self.setting(node, what, "email", name)

    def sender_identity(self, fields: dict[str, Node], node: Node, what: str) -> str:
        """The sender's address, from its `from` (written out: a ${VAR} cannot name it)."""
        if "from" not in fields:
            self.nodes.problem(node, f'{what} needs from, e.g. "Ann Lee <ann@acme.example>"')
            return ""
        value = self.nodes.value(fields["from"])
        if not isinstance(value, str) or VAR_REFERENCE.search(value) or not is_address(value):
            if isinstance(value, str) and VAR_REFERENCE.search(value):
                self.nodes.problem(
                    fields["from"],
                    f"{what}.from names the sender: write the address out, not {value!r}",
                )
            return ""
        return sender_address(value)

    def check_senders(self, email: dict[str, Any], node: Node, what: str) -> None:
        """Each sender with the channel's settings it inherits: a transport it can use and
        an inbox complete once merged with the channel's."""
        base = {k: v for k, v in email.items() if k not in ("senders", "inbox")}
        for sender in email.get("senders") or ():
            where = self.sender_nodes.get(id(sender), node)
            name = f"{what} sender {sender_address(str(sender.get('from') or ''))}"
            settings = {**base, **{k: v for k, v in sender.items() if k not in SENDER_OWN}}
            self.check_transport("email", settings, where, name)
            if "inbox" in sender:
                inbox = {**(email.get("inbox") or {}), **(sender["inbox"] or {})}
                missing = [k for k in ("host", "username", "password") if not inbox.get(k)]
                if missing:
                    self.nodes.problem(
                        where,
                        f"{name}: inbox needs {', '.join(missing)}"
                        " (under the sender's inbox or the channel's)",
                    )

    def inbox(self, node: Node, what: str, *, partial: bool = False) -> dict[str, Any] | None:
        """The IMAP mailbox where replies and bounces arrive; secrets stay ${VAR} references.
        `partial`: a sender's, completed by the channel's inbox."""
        fields = self.nodes.mapping(node, INBOX_KEYS, what)
        if not isinstance(node, MappingNode):
            return None
        inbox: dict[str, Any] = {}
        for name, value_node in fields.items():
            if name == "folders":
                inbox["folders"] = self.folders(value_node, f"{what}.folders")
                continue
            value = self.setting(value_node, f"{what}.{name}", "email", name)
            if name == "port" and isinstance(value, int | float):
                if value != int(value) or not 0 < value < 65536:
                    self.nodes.problem(
                        value_node, f"{what}.port must be a port number, not {value}"
                    )
                    continue
                value = int(value)
            if value is not None:
                inbox[name] = value
        missing = [k for k in ("host", "username", "password") if k not in fields]
        if missing and not partial:
            self.nodes.problem(node, f"{what} needs {', '.join(missing)}")
        return inbox

    def folders(self, node: Node, what: str) -> list[str]:
        names = self.nodes.sequence(node, what) if not isinstance(node, ScalarNode) else [node]
        folders = []
        for name_node in names:
            name = self.nodes.text(name_node, what)
            if not name:
                continue
            if name.strip().lower().rsplit("/", 1)[-1].rsplit(".", 1)[-1] in OUTGOING_FOLDERS:
                self.nodes.problem(
                    name_node,
                    f"{what}: {name!r} holds the team's own mail, and reading it would count"
                    " follow-ups as replies; list only folders where replies arrive (INBOX)",
                )
                continue
            folders.append(name)
        return folders or list(defaults.IMAP_FOLDERS)

    def headers(self, node: Node, what: str) -> dict[str, str]:
        """Webhook headers; an Authorization header must come from the environment."""
        headers: dict[str, str] = {}
        if not isinstance(node, MappingNode):
            self.nodes.problem(node, f"{what} must be a mapping of header names to text")
            return headers
        for name_node, value_node in node.value:
            value = self.nodes.text(value_node, f"{what}.{name_node.value}")
            if value is None:
                continue
            if name_node.value.lower() == "authorization" and not VAR_REFERENCE.search(value):
                self.nodes.problem(
                    value_node,
                    f"{what}.{name_node.value} must use an environment reference, e.g."
                    " 'Bearer ${SMS_TOKEN}': secrets are never written in the YAML",
                )
                continue
            headers[str(name_node.value)] = value
        return headers

    def check_transport(self, channel: str, settings: dict, node: Node, what: str) -> None:
        """A transport with the settings it cannot work without (after merging defaults)."""
        transport = settings.get("transport", defaults.TRANSPORT)
        missing = [s for s in REQUIRED_SETTINGS.get(transport, ()) if not settings.get(s)]
        if settings.get("senders") and "from" in missing:  # each sender has its own
            missing.remove("from")
        if transport == "twilio" and not {"from", "messaging_service_sid"} & set(settings):
            missing.append("from (or messaging_service_sid)")
        if missing:
            self.nodes.problem(
                node,
                f"{what}: {channel} transport {transport} needs {', '.join(missing)}"
                f" (under channels.{channel})",
            )
        if channel == "sms" and settings.get("inbound") and transport != "twilio":
            self.nodes.problem(
                node,
                f"{what}: channels.sms.inbound reads texts from Twilio; transport {transport}"
                " has no inbound messages to read (remove inbound or use transport twilio)",
            )
