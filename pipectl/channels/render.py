"""A claimed action + its lead -> a Message; template and address problems are permanent."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from . import Message, PermanentError, SendAction
from .addresses import AddressError, ascii_domains, wire_address
from .resolve import single_line

if TYPE_CHECKING:
    from ..templates import Lead

_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")


def render_message(action: SendAction) -> Message:
    """Render the action's templates for its lead; raises PermanentError when it cannot."""
    if action.type not in ("email", "sms"):
        raise PermanentError(f"cannot send an action of type {action.type!r}")
    lead = lead_context(action.lead)
    context = {"lead": lead}
    params = action.params
    headers: dict[str, str] = {}
    if action.type == "email":
        to = _address(lead.get("email"), "email address")
        subject = single_line(_render(params.get("subject") or "", context, "subject"))
        if params.get("thread") and action.thread:
            subject, headers = _in_thread(action.thread, subject)
        body = _render(params.get("body") or "", context, "body")
        html_source = params.get("html")
        html = _render(html_source, context, "html", html=True) if html_source else None
    else:
        to = _address(lead.get("phone"), "phone number")
        subject, html = None, None
        body = _render(params.get("body") or "", context, "body")
    return Message(
        channel=action.type,
        account=action.account,
        config=dict(action.config or {}),
        to=to,
        body=body,
        action_id=action.action_id,
        lead_id=action.lead_id,
        message_id=message_id(action.action_id, (action.config or {}).get("from"), action.instance),
        subject=subject,
        html=html,
        headers=headers,
        date=action.sent_at,
    )


def _in_thread(previous: dict[str, Any], subject: str) -> tuple[str, dict[str, str]]:
    """A reply to the enrollment's previous email: its subject with `Re: ` (unless the
    action gives one), and In-Reply-To and References naming it."""
    if not subject:
        before = str(previous.get("subject") or "")
        subject = before if before[:3].lower() == "re:" else f"Re: {before}".rstrip()
    parent = str(previous["message_id"])
    references = f"{previous.get('references') or ''} {parent}".strip()
    return subject, {"In-Reply-To": parent, "References": references}


def lead_context(lead: dict[str, Any]) -> Lead:
    """The `lead` templates see: standard and custom fields side by side, missing and empty
    ones left out (they render as nothing and test false in `{% if lead.x %}`)."""
    context: dict[str, Any] = {}
    custom = lead.get("fields")
    if isinstance(custom, dict):
        context.update(custom)
    context.update({k: v for k, v in lead.items() if k != "fields" or not isinstance(v, dict)})
    from ..templates import lead_fields  # Jinja2 loads with the first message, not the CLI

    return lead_fields(context)


@lru_cache(maxsize=256)
def _domain(from_address: str) -> str:
    """The domain of a From address (parsed once per address, not once per message)."""
    if "${" not in from_address:
        from email.utils import parseaddr

        _, addr = parseaddr(ascii_domains(from_address))
        candidate = addr.rpartition("@")[2]
        if "@" in addr and _DOMAIN.match(candidate):
            return candidate.lower()
    return "pipectl.local"


def message_id(action_id: int, from_address: Any, instance: str = "") -> str:
    """The Message-ID of an action: the same on every attempt, so a repeat can be dropped;
    `instance` (the database's id) keeps two databases' actions apart."""
    domain = _domain(from_address) if isinstance(from_address, str) else "pipectl.local"
    suffix = f".{instance}" if instance else ""
    return f"<pipectl.{int(action_id)}{suffix}@{domain}>"


def _address(value: Any, what: str) -> str:
    address = str(value).strip() if value is not None else ""
    if not address:
        raise PermanentError(f"lead has no {what}")
    if _SPACE_OR_CONTROL.search(address) or (what == "email address" and "@" not in address):
        raise PermanentError(f"lead's {what} is not valid")
    if what == "email address":
        try:
            return wire_address(address)
        except AddressError as e:
            raise PermanentError(f"lead's {what} is not valid: {e}") from None
    return address


def _render(source: str, context: dict[str, Any], part: str, html: bool = False) -> str:
    from jinja2 import TemplateError

    from .. import templates

    try:
        return templates.render(source, context, html=html)
    except TemplateError as e:
        raise PermanentError(f"template error in {part}: {e.message or type(e).__name__}") from None
    except Exception as e:  # a template bug such as {{ lead.name + 1 }}, not a channel problem
        raise PermanentError(f"template error in {part}: {type(e).__name__}: {e}") from None
