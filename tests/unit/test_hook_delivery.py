"""The pure parts of webhook delivery: the signature, and when a refused event goes again."""

from __future__ import annotations

import hashlib
import hmac

from pipectl.channels.webhooks import signature
from pipectl.scheduler.hooks import HookCourier
from pipectl.store.rows import HookDelivery, HookOutcome, HookTarget

RETRY = {"attempts": 4, "backoff": 60, "max_backoff": 600}
HOOK = HookTarget(1, "http://127.0.0.1/in", "${S}", {}, 10.0, RETRY)


def refused(attempts: int, retry_after: float | None = None) -> HookOutcome:
    event = HookDelivery(7, "e-7", "won", "{}", attempts)
    return HookOutcome(event, HOOK, False, "2027-03-01T14:00:00Z", "HTTP 503", retry_after)


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"id":"e-7","type":"won"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature(body, "s3cret") == f"sha256={expected}"
    assert signature(body + b" ", "s3cret") != signature(body, "s3cret")


def test_a_refused_event_goes_again_later_each_time_then_never() -> None:
    first = HookCourier._retry_at(refused(0))
    assert first is not None and "2027-03-01T14:00:30Z" <= first <= "2027-03-01T14:01:00Z"
    third = HookCourier._retry_at(refused(2))
    assert third is not None and "2027-03-01T14:02:00Z" <= third <= "2027-03-01T14:04:00Z"
    assert HookCourier._retry_at(refused(3)) is None  # the fourth attempt was the last


def test_retry_after_is_honoured_and_a_delivered_event_is_not_retried() -> None:
    assert HookCourier._retry_at(refused(0, retry_after=3600)) == "2027-03-01T15:00:00Z"
    delivered = HookOutcome(refused(0).delivery, HOOK, True, "2027-03-01T14:00:00Z")
    assert HookCourier._retry_at(delivered) is None
