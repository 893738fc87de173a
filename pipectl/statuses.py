"""Every status a row can hold, as `StrEnum`s: the code and the schema's CHECKs share one list."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, StrEnum


class ActionStatus(StrEnum):
    """A lead's action (`lead_stage_actions.status`): waiting for its turn, then due, and so on."""

    WAITING = "waiting"  # an earlier action of the stage comes first
    PENDING = "pending"  # due at perform_at
    RUNNING = "running"  # claimed by a tick
    AWAITING_REPLY = "awaiting_reply"  # a wait_for_reply with a timeout
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # the lead left the stage before its turn


class EnrollmentStatus(StrEnum):
    """A lead in a pipeline (`enrollments.status`); the lead's status shows its latest one."""

    QUEUED = "queued"  # waiting for room under the account's active_leads
    ACTIVE = "active"
    IDLE = "idle"  # reached the end of a stage with no outcome and nothing left to do
    WON = "won"
    LOST = "lost"
    STOPPED = "stopped"  # a reply, an opt-out or an operator stopped it
    FAILED = "failed"


# A lead's status (`leads.status`) is its latest enrollment's; NULL when in no pipeline.
LeadStatus = EnrollmentStatus
NOT_ENROLLED = "not_enrolled"  # a filter, never stored: leads in no pipeline


class ReplyKind(StrEnum):
    """What an inbound message turned out to be (`replies.kind`)."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    OPT_OUT = "opt_out"
    BOUNCE = "bounce"
    SOFT_BOUNCE = "soft_bounce"


class DeliveryStatus(StrEnum):
    """A send's fate as the provider or a bounce reported it (`deliveries.status`)."""

    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    UNDELIVERED = "undelivered"


class HookEvent(StrEnum):
    """What a webhook can be told (`hook_events.type`, `hooks:` `events` in the YAML)."""

    REPLIED = "replied"  # a reply (not an auto-reply, not an opt-out) matched to a lead
    OPTED_OUT = "opted_out"
    BOUNCED = "bounced"  # a hard bounce returned one of the lead's emails
    WON = "won"  # the lead entered a stage with `outcome: won`
    LOST = "lost"
    FAILED = "failed"  # an action of the lead failed for good
    STAGE_ENTERED = "stage_entered"


class HookEventStatus(StrEnum):
    """An event on its way to one hook (`hook_events.status`)."""

    PENDING = "pending"  # due at next_attempt_at
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed, or the hook was removed


class Channel(StrEnum):
    """Where an action goes (`lead_stage_actions.channel`)."""

    EMAIL = "email"
    SMS = "sms"
    INTERNAL = "internal"  # no message: waits, moves, tags


def values(enum: type[Enum]) -> tuple[str, ...]:
    """An enum's values in order, for CLI choices and error messages."""
    return tuple(member.value for member in enum)


def sql_list(members: Iterable[Enum]) -> str:
    """Statuses as an SQL list, e.g. "('queued', 'active')": for CHECKs and `IN` clauses."""
    return "(" + ", ".join(f"'{member.value}'" for member in members) + ")"
