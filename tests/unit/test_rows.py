"""ClaimedSend: what the claim hands the scheduler, typed and never changed in place."""

from __future__ import annotations

import dataclasses

import pytest

# The one import of the module under test: when it moves, change this line only.
from pipectl.store.rows import ClaimedSend, SendAccount

ACCOUNT = SendAccount(
    key="acme",
    timezone="Europe/Paris",
    concurrency=4,
    instance="db1",
    channel_config={"from": "Acme <sales@acme.example>"},
)
# One row as the claim reads it (`SEND_COLUMNS`, without the two contact flags at the end).
ROW = (
    *(11, 22, 3, 44, 55, 66, "email", "email", '{"subject": "Hi"}', 2, "2027-03-01T14:00:00Z"),
    *("ann@x.example", "+15550100001", "Ann", "Lee", '{"company": "X"}', "America/Chicago", 9),
)


def test_a_claimed_send_reads_the_claims_row_by_name():
    send = ClaimedSend.from_row(ROW, ACCOUNT, "tok-1")
    assert (send.id, send.lead_id, send.account_id, send.enrollment_id) == (11, 22, 3, 44)
    assert (send.lead_stage_id, send.pipeline_id) == (55, 66)
    assert (send.type, send.channel) == ("email", "email")
    assert send.params == {"subject": "Hi"}
    assert send.attempt == 3  # two attempts made before: this is the third
    assert (send.email, send.phone, send.first_name, send.last_name) == (
        "ann@x.example",
        "+15550100001",
        "Ann",
        "Lee",
    )
    assert (send.fields, send.timezone, send.sender_id) == (
        '{"company": "X"}',
        "America/Chicago",
        9,
    )
    assert (send.account_key, send.account_timezone, send.concurrency) == (
        "acme",
        "Europe/Paris",
        4,
    )
    assert (send.instance, send.claim_token) == ("db1", "tok-1")
    assert send.channel_config == {"from": "Acme <sales@acme.example>"}
    assert (send.sender_address, send.thread, send.probe) == (None, None, False)
    assert send.health_key == (3, "email") and send.address == "ann@x.example"


def test_a_claimed_send_cannot_be_changed_in_place():
    """Worker threads read it while the tick holds it; a rolled back claim leaves nothing."""
    send = ClaimedSend.from_row(ROW, ACCOUNT, "tok-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        send.attempt = 4  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):  # slots: no field outside the class
        send.extra = 1  # type: ignore[attr-defined]


def test_starting_copies_a_send_only_when_the_database_counted_another_attempt():
    send = ClaimedSend.from_row(ROW, ACCOUNT, "tok-1")
    assert send.started(3) is send
    again = send.started(5)
    assert (again.attempt, send.attempt) == (5, 3)
    assert dataclasses.replace(again, attempt=3) == send


def test_a_sender_mailbox_overrides_the_channel_and_holds_only_its_own_health():
    send = ClaimedSend.from_row(ROW, ACCOUNT, "tok-1")
    sent = send.from_sender(7, "bob@acme.example", {"from": "Bob <bob@acme.example>", "port": 2})
    assert sent.channel_config == {"from": "Bob <bob@acme.example>", "port": 2}
    assert (sent.sender_id, sent.health_key) == (7, (3, "email:bob@acme.example"))
    assert send.channel_config == {"from": "Acme <sales@acme.example>"}  # the original stays
    assert ACCOUNT.channel_config == {"from": "Acme <sales@acme.example>"}
    assert send.as_probe().probe and not send.probe
    assert send.in_thread({"message_id": "<m1>"}).thread == {"message_id": "<m1>"}
