"""Retry policy: how long to wait before a send is tried again. A pure function."""

from __future__ import annotations

import random
from collections.abc import Callable

from .. import defaults

MAX_RETRY_AFTER = 86400.0


def retry_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with jitter (half fixed, half random), never sooner than the
    server's Retry-After, which is honoured up to a day (30,000 years overflowed the date)."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    delay = delay / 2 + rand() * delay / 2
    return max(delay, min(retry_after or 0, MAX_RETRY_AFTER))


def probe_delay(down_for: float, retry_after: float | None = None) -> float:
    """How long a failing channel waits before its next probe: as long as it has been
    failing (at least PROBE_BACKOFF, at most PROBE_MAX_BACKOFF), with the sends' jitter, so
    the waits about double and a provider that is down is not hammered once a minute. Time,
    not the number of failed sends: sixteen sends failing together are one failure."""
    wait = min(max(down_for, defaults.PROBE_BACKOFF), defaults.PROBE_MAX_BACKOFF)
    return retry_delay(1, wait, wait, retry_after)
