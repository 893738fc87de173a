"""A claimed send for tests of the scheduler's pure parts: what the claim would build."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipectl.store.rows import ClaimedSend, SendAccount

ACCOUNT = SendAccount(key="acme", timezone="UTC", concurrency=2, instance="", channel_config={})


def claimed_send(
    id: int,
    account: int = 1,
    channel: str = "email",
    concurrency: int = 2,
    **changes: Any,
) -> ClaimedSend:
    """A send of lead `id` in account `account`; `changes` sets any other field."""
    row: tuple[Any, ...] = (id, id, account, id, id, 1, channel, channel, "{}", 0)
    row += ("2027-03-01T14:00:00Z", f"lead{id}@acme.example", None, None, None, None, None, None)
    send = ClaimedSend.from_row(row, ACCOUNT, "token")
    fields = {"concurrency": concurrency, "params": {}, **changes}
    return replace(send, **fields)
