"""`hooks:` — where events go as signed webhooks: url, events, secret, headers, retries."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from yaml.nodes import Node, ScalarNode, SequenceNode

from .. import defaults
from ..statuses import HookEvent, values
from ..yaml_nodes import NodeReader, line_of
from .channels import VAR_REFERENCE, ChannelsReader
from .model import Hook, HookRetry, yaml_keys

HOOK_KEYS = yaml_keys(Hook)
RETRY_KEYS = yaml_keys(HookRetry)
EVENTS = values(HookEvent)


def url_problem(url: str) -> str | None:
    """Why a hook's URL cannot be posted to (its `${VAR}`s are read at send time; a URL
    that starts with one, `${HOOK_URL}`, is checked only then)."""
    if VAR_REFERENCE.match(url):
        return None
    parts = urlsplit(VAR_REFERENCE.sub("x", url))
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL, not {url!r}"
    if not parts.hostname:
        return f"names no host: {url!r}"
    return None


class HooksReader:
    """The file's `hooks:` list, checked key by key; accounts named must exist."""

    def __init__(self, nodes: NodeReader, channels: ChannelsReader):
        self.nodes = nodes
        self.channels = channels

    def hooks(self, node: Node | None, accounts: set[str]) -> tuple[Hook, ...]:
        items = self.nodes.sequence(node, "hooks") if node is not None else []
        hooks: list[Hook] = []
        seen: dict[tuple[str, str | None], int] = {}
        for i, item in enumerate(items, 1):
            hook = self.hook(item, f"hook {i}", accounts)
            if hook is None:
                continue
            identity = (hook.url, hook.account)
            if identity in seen:
                self.nodes.problem(
                    item,
                    f"hook {i}: the same url{' and account' if hook.account else ''} as the"
                    f" hook at line {seen[identity]}; list its events in one hook",
                )
                continue
            seen[identity] = hook.line
            hooks.append(hook)
        return tuple(hooks)

    def hook(self, node: Node, what: str, accounts: set[str]) -> Hook | None:
        nodes = self.nodes
        fields = nodes.mapping(node, HOOK_KEYS, what)
        if "url" not in fields:
            if fields or not isinstance(node, ScalarNode):
                nodes.problem(node, f"{what} needs a url")
            return None
        url = nodes.text(fields["url"], f"{what} url")
        if url is None:
            return None
        problem = url_problem(url) or (
            "write environment references as ${NAME}" if ChannelsReader.broken(url) else None
        )
        if problem:
            nodes.problem(fields["url"], f"{what} url {problem}")
            return None
        what = f"hook {url}"
        hook = Hook(url=url, events=EVENTS, line=line_of(node))
        changes: dict[str, object] = {}
        if "events" in fields:
            changes["events"] = self.events(fields["events"], what)
        if "account" in fields:
            account = nodes.text(fields["account"], f"{what} account")
            if account is not None and account not in accounts:
                known = ", ".join(sorted(accounts)) or "none"
                nodes.problem(
                    fields["account"], f"{what}: unknown account {account!r} (accounts: {known})"
                )
            changes["account"] = account
        if "secret" in fields:
            secret = nodes.text(fields["secret"], f"{what} secret")
            if secret is not None and not VAR_REFERENCE.fullmatch(secret):
                nodes.problem(
                    fields["secret"],
                    f"{what} secret must be an environment reference like ${{HOOK_SECRET}}:"
                    " secrets are read from the environment at send time, never written in the"
                    " YAML",
                )
            changes["secret"] = secret or ""
        if "headers" in fields:
            changes["headers"] = self.channels.headers(fields["headers"], f"{what} headers")
        if "timeout" in fields:
            changes["timeout"] = self.timeout(fields["timeout"], what)
        if "retry" in fields:
            changes["retry"] = self.retry(fields["retry"], what)
        return replace(hook, **changes)  # type: ignore[arg-type]

    def events(self, node: Node, what: str) -> tuple[str, ...]:
        """A subset of EVENTS, kept in their order; unknown names listed with the allowed."""
        names = self.nodes.sequence(node, f"{what} events")
        chosen: set[str] = set()
        for name_node in names:
            name = self.nodes.text(name_node, f"{what} events")
            if name is None:
                continue
            if name not in EVENTS:
                self.nodes.problem(
                    name_node,
                    f"{what}: unknown event {name!r}; events are {', '.join(EVENTS)}",
                )
                continue
            chosen.add(name)
        if not names and isinstance(node, SequenceNode):
            self.nodes.problem(node, f"{what} events is empty; leave it out for every event")
        return tuple(e for e in EVENTS if e in chosen) or EVENTS

    def timeout(self, node: Node, what: str) -> float:
        value = self.nodes.value(node)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 300:
            return float(value)
        self.nodes.problem(node, f"{what} timeout must be seconds between 0 and 300, not {value!r}")
        return defaults.HOOK_TIMEOUT

    def retry(self, node: Node, what: str) -> HookRetry:
        fields = self.nodes.mapping(node, RETRY_KEYS, f"{what} retry")
        retry = HookRetry()
        attempts = backoff = max_backoff = None
        if "attempts" in fields:
            attempts = self.nodes.positive_int(fields["attempts"], f"{what} retry attempts")
        if "backoff" in fields:
            backoff = self.nodes.duration(fields["backoff"], f"{what} retry backoff")
        if "max_backoff" in fields:
            max_backoff = self.nodes.duration(fields["max_backoff"], f"{what} retry max_backoff")
        backoff = backoff or retry.backoff
        if max_backoff is not None and max_backoff < backoff:
            self.nodes.problem(
                fields["max_backoff"], f"{what} retry max_backoff is shorter than backoff"
            )
        return HookRetry(
            attempts=attempts or retry.attempts,
            backoff=backoff,
            max_backoff=max(max_backoff or retry.max_backoff, backoff),
        )
