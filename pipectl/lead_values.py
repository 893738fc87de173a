"""A lead's values as pipectl keeps them: email lower-cased and checked, phone numbers in
E.164 (in the account's country), IANA time zones, a full name split in two. Each raises
ValueError naming the value; the CSV reader turns that into an invalid row.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .opt_outs import shown

# A value that stands for "no phone" (or "no email") in exports: ignored, and reported.
PLACEHOLDER = re.compile(
    r"[\s\-_.?/#*x0]*|(?i:n\s*/?\s*a|none|null|nil|unknown|tbd|no\s*(phone|email))"
)
SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "dds", "cpa"}
TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof"}


def split_name(full: str) -> tuple[str | None, str | None]:
    """A full name as (first, last): `John Smith`, `Smith, John`, `Dr. John Smith, Jr.`."""
    suffix = ""
    head, comma, tail = full.rpartition(",")
    if comma and head.strip() and tail.strip().lower().strip(".") in SUFFIXES:
        full, suffix = head, f", {tail.strip()}"
    last_part, comma, first_part = full.partition(",")
    if comma and last_part.strip() and first_part.strip():  # Last, First
        first, last = first_part.split(), last_part.split()
    else:
        words = full.replace(",", " ").split()
        first, last = words[:1], words[1:]
        if len(words) > 2 and words[0].lower().strip(".") in TITLES:
            first, last = words[1:2], words[2:]
    first_name = " ".join(first) or None
    last_name = (" ".join(last) + suffix) if last else None
    return first_name, last_name


_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63})"
_PLAIN_EMAIL = re.compile(rf"({_LOCAL})@({_DOMAIN})")


def normalise_email(value: str) -> str:
    """A valid address, lower-cased; plain ASCII addresses skip the slower full validation."""
    lowered = value.lower()
    m = _PLAIN_EMAIL.fullmatch(lowered)
    if (
        m
        and len(lowered) <= 254
        and len(m.group(1)) <= 64
        and "--" not in m.group(2)
        and m.group(3) not in SPECIAL_USE_DOMAIN_NAMES
    ):
        return lowered
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        raise ValueError(f"invalid email {shown(value)}: {e}") from None


_FORMATTING = str.maketrans("", "", " ()-./\u00a0")


def normalise_phone(value: str, country: str | None) -> str:
    """E.164 (`+12125550123`); a number without +country code is read as `country`'s."""
    fast = _plain_national(value, country) if country else None
    if fast:
        return fast
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException as e:
        if e.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and not country:
            raise ValueError(
                f"invalid phone {shown(value)}: no +country code, and the account has no country"
            ) from None
        raise ValueError(f"invalid phone {shown(value)}: {e._msg}") from None
    if not phonenumbers.is_valid_number(number):
        where = f"for {country}" if country and not value.lstrip().startswith("+") else ""
        raise ValueError(f"invalid phone {shown(value)}: not a valid phone number {where}".rstrip())
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _plain_national(value: str, country: str) -> str | None:
    """E.164 for a plain number of the account's own country, else None (the slow path decides)."""
    digits = value.translate(_FORMATTING)
    if digits.startswith("+"):
        digits = digits[1:]
        plus = True
    else:
        plus = False
    if not (digits.isascii() and digits.isdigit()):
        return None
    meta = _metadata(country)
    if meta is None:
        return None
    cc = str(meta.country_code)
    candidates = [digits[len(cc) :]] if plus else []
    if not plus:
        prefix = meta.national_prefix_for_parsing
        if prefix and prefix.isdigit() and digits.startswith(prefix):
            candidates.append(digits[len(prefix) :])
        candidates.append(digits)
    if plus and not digits.startswith(cc):
        return None
    for national in candidates:
        if national and national[0] != "0" and _valid_for(national, country, int(cc)):
            return f"+{cc}{national}"
    return None


TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@lru_cache(maxsize=64)
def _metadata(country: str) -> phonenumbers.PhoneMetadata | None:
    return phonenumbers.PhoneMetadata.metadata_for_region(country.upper(), None)


@lru_cache(maxsize=64)
def _validity(country: str) -> dict[int, re.Pattern[str]]:
    """Per national number length, one pattern: the region's general and type patterns.

    The same test as phonenumbers' `is_valid_number_for_region`, precompiled: a number is
    valid when it fits the general description and one number type (checked in tests).
    """
    meta = _metadata(country)
    general = meta.general_desc if meta else None
    if general is None or not general.national_number_pattern:
        return {}
    lengths = set(general.possible_length or range(1, 18))
    by_length: dict[int, re.Pattern[str]] = {}
    for n in lengths:
        types = [
            desc.national_number_pattern
            for desc in (getattr(meta, name) for name in TYPE_DESCS)
            if desc is not None
            and desc.national_number_pattern
            and (not desc.possible_length or n in desc.possible_length)
        ]
        if types:
            alternatives = "|".join(f"(?:{t})" for t in types)
            by_length[n] = re.compile(
                f"(?=(?:{general.national_number_pattern})$)(?:{alternatives})"
            )
    return by_length


def _valid_for(national: str, country: str, cc: int) -> bool:
    pattern = _validity(country).get(len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


@lru_cache(maxsize=1024)
def check_timezone(value: str) -> str:
    """An IANA time zone name such as `Europe/London`."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"invalid timezone {shown(value)}: use an IANA name such as America/New_York"
        ) from None
    return value
