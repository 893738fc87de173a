"""Opt-out columns of CRM and mailing-tool exports: which ones pipectl reads, per channel, and
what their values mean (no database, no CSV reading)."""

from __future__ import annotations

import re

MAX_SHOWN = 60
OPT_OUT_FIELDS = ("do_not_contact", "email_opt_out", "sms_opt_out")
# Opt-out columns of CRM and mailing-tool exports, by normalised header: (field, kind).
# `flag`: yes/no (a date also means yes); `when`: any value is the time they opted out;
# `consent`: subscribed / unsubscribed. Every one of them counts: any true one opts out.
OPT_OUT_COLUMNS = (
    ("do_not_contact", "flag", "donotcontact unsubscribed optedout optout dnc"),
    # Salesforce (Email Opt Out, HasOptedOutOfEmail; Zoho too), HubSpot (Unsubscribed from
    # all email, hs_email_optout; `Opted out of email: <type>` is read by prefix below).
    (
        "email_opt_out",
        "flag",
        "emailoptout hasoptedoutofemail optedoutofemail emailoptedout donotemail donotmail"
        " unsubscribedfromallemail hsemailoptout emailunsubscribed unsubscribedfromemail"
        " emailbounced emailhardbounced hardbounced emailsuppressed",
    ),
    # Salesforce's Do Not Call: texts count as calls under US rules.
    (
        "sms_opt_out",
        "flag",
        "donotcall donottext donotsms smsoptout textoptout smsoptedout optedoutofsms"
        " hasoptedoutofsms smsunsubscribed",
    ),
    (
        "do_not_contact",
        "when",
        "unsubscribedate unsubscribeddate unsubscribedat unsubscribedon optoutdate optedoutat"
        " optedoutdate optedouton",
    ),
    # Mailchimp: UNSUB_TIME on the unsubscribed export, CLEAN_TIME on the cleaned (bounced) one.
    ("email_opt_out", "when", "unsubtime cleantime emailoptoutdate"),
    ("sms_opt_out", "when", "smsoptoutdate"),
    # Klaviyo and others: a consent state per channel.
    (
        "email_opt_out",
        "consent",
        "emailmarketingconsent emailconsent emailsubscriptionstatus emailmarketingstatus",
    ),
    ("sms_opt_out", "consent", "smsmarketingconsent smsconsent smssubscriptionstatus"),
)
OPT_OUTS = {key: (f, kind) for f, kind, keys in OPT_OUT_COLUMNS for key in keys.split()}
OPT_OUT_PREFIXES = {"optedoutofemail": ("email_opt_out", "flag")}
# Known columns that look like opt-outs but are not (details, opt-ins, a channel we never use).
NOT_OPT_OUT_COLUMNS = (
    "unsubcampaigntitle unsubcampaignid unsubreason unsubreasonother optintime optinip"
    " cleancampaigntitle cleancampaignid faxoptout hasoptedoutoffax confirmtime confirmip"
    " optinsource optindate"
)
NOT_OPT_OUTS = frozenset(NOT_OPT_OUT_COLUMNS.split())
LOOKS_LIKE_OPT_OUT = re.compile(
    r"unsub|opt(ed)?(out|in)|donot|dnc|consent|suppress|blocklist|blacklist|stopcontact"
)
OPT_WORD = re.compile(r"(?:^|[^a-z])opt(?:ed|s)?(?:$|[^a-z])")
TRUE = {"true", "yes", "1", "y"}
FALSE = {"false", "no", "0", "n"}
CONSENT_OUT = {"unsubscribed", "optedout", "optout", "suppressed", "revoked", "withdrawn", "no"}
CONSENT_IN = {"subscribed", "optedin", "optin", "neversubscribed", "granted", "yes", "pending"}
DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")


def opt_out_column(key: str) -> tuple[str, str] | None:
    """(field, kind) for an opt-out column that exports are known to have, else None."""
    if key in OPT_OUTS:
        return OPT_OUTS[key]
    return next((v for p, v in OPT_OUT_PREFIXES.items() if key.startswith(p)), None)


def looks_like_opt_out(header: str) -> bool:
    """A column name that may say whom not to contact (`GDPR consent`, `Opt status`)."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", header).lower()
    return bool(LOOKS_LIKE_OPT_OUT.search(normalise_header(header)) or OPT_WORD.search(words))


def opted_out(value: str, kind: str, column: str) -> bool:
    """Whether one opt-out cell says the lead opted out; ValueError when it cannot tell."""
    if kind == "when":
        return True
    v = value.lower()
    if kind == "consent":
        key = normalise_header(v)
        if key in CONSENT_OUT:
            return True
        if key in CONSENT_IN:
            return False
        raise ValueError(
            f"invalid {column} {shown(value)}: use subscribed or unsubscribed (or yes/no)"
        )
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    if DATE.match(v):
        return True  # the date they opted out
    raise ValueError(f"invalid {column} {shown(value)}: use true/yes/1/y or false/no/0/n")


def normalise_header(name: str) -> str:
    """The key columns are matched by: lower case, letters and digits only."""
    return "".join(c for c in name.lower() if c.isalnum())


def shown(value: str) -> str:
    """A value quoted for a message, cut short when long."""
    return repr(value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "...")
