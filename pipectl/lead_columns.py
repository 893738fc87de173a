"""A leads file's header: which column is which lead field (aliases, `--map`), which are
opt-outs, which custom fields (named for templates). No rows here: `leads.py` reads them
by the plan made here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CsvError
from .exports import EXPORT_COLUMNS
from .opt_outs import (
    NOT_OPT_OUTS,
    OPT_OUT_FIELDS,
    looks_like_opt_out,
    normalise_header,
    opt_out_column,
)

FIELDS = ("email", "phone", "first_name", "last_name", "name", "timezone", "do_not_contact")
MAP_TARGETS = (*FIELDS, "email_opt_out", "sms_opt_out", "custom")
ALIASES = {
    "email": "email emailaddress primaryemail workemail",
    # In preference order: a text needs a mobile, so a mobile column beats a phone column,
    # which beats a work or home line, whatever their order in the file.
    "phone": "mobile mobilephone mobilephonenumber mobilenumber mobileno phonemobile"
    " cell cellphone cellphonenumber cellnumber"
    " phone phonenumber telephone telephonenumber tel"
    " workphone phonework businessphone officephone homephone phonehome otherphone phoneother",
    "first_name": "firstname givenname forename",
    "last_name": "lastname surname familyname",
    "name": "name fullname contactname",
    "timezone": "timezone tz",
}
ALIAS_TO_FIELD = {alias: f for f, aliases in ALIASES.items() for alias in aliases.split()}
ALIAS_RANK = {alias: n for aliases in ALIASES.values() for n, alias in enumerate(aliases.split())}
# `leads export` columns that state what pipectl knows; an import of the export skips them.
EXPORT_ONLY = frozenset(c.replace("_", "") for c in EXPORT_COLUMNS)


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How the rows of a file are read: column indexes by what they hold."""

    targets: dict[str, int]  # lead field -> its column
    custom: list[tuple[int, str]]  # (column, custom field name)
    unnamed: list[int]  # columns with no name: a value in one makes the row invalid
    opt_outs: list[tuple[int, int, str]]  # (column, OPT_OUT_FIELDS index, kind)
    suspect: list[int]  # columns that look like opt-outs pipectl cannot read
    custom_unique: bool  # no two custom columns share a name
    at: tuple[int, ...]  # FIELDS' columns (the header's length: none)
    email_alt: tuple[int, ...]  # other email columns, read where the first is empty
    phone_alt: tuple[int, ...]  # ... and phone columns


def snake_case(name: str) -> str:
    """A custom field's name in templates: `Company Name` -> `company_name`."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^0-9a-z]+", "_", s.lower()).strip("_")


def parse_map(specs: list[str]) -> dict[str, str]:
    """`--map 'Col=field'` options -> {normalised column: field}; `custom` keeps the column as a
    custom field (for a column that only looks like an opt-out)."""
    mapping: dict[str, str] = {}
    for spec in specs:
        column, sep, target = spec.partition("=")
        target = target.strip().lower().replace("-", "_").replace(" ", "_")
        if not sep or not column.strip() or not target:
            raise CsvError(f"--map {spec!r}: write it as 'Column=field', e.g. 'Cell No=phone'")
        if target not in MAP_TARGETS:
            raise CsvError(
                f"--map {spec!r}: unknown field {target!r}; use one of {', '.join(MAP_TARGETS)}"
            )
        mapping[normalise_header(column)] = target
    return mapping


def plan_columns(where: str, header: list[str], mapping: dict[str, str]) -> ColumnPlan:
    """What each column of the header is read as (`where`: the header's file:line): a lead
    field, an opt-out, a custom field; CsvError for a header that cannot be imported."""
    keys = [normalise_header(h) for h in header]
    _check_header(where, header, keys, mapping)
    has_names = {"first_name", "last_name"} & {mapping.get(k, ALIAS_TO_FIELD.get(k)) for k in keys}
    targets: dict[str, int] = {}
    alternates: dict[str, list[int]] = {}
    custom: list[tuple[int, str]] = []
    unnamed: list[int] = []
    opt_outs: list[tuple[int, int, str]] = []  # (column, OPT_OUT_FIELDS index, kind)
    suspect: list[int] = []  # columns that look like opt-outs we cannot read
    for i, key in enumerate(keys):
        if key in EXPORT_ONLY and key not in mapping:
            continue  # what `leads export` adds for spreadsheets: pipectl's own state
        target = mapping.get(key) or ALIAS_TO_FIELD.get(key)
        if key not in mapping and target in mapping.values():
            target = None  # an explicit --map to this field wins over the alias
        if target == "name" and has_names and key not in mapping:
            target = None
        opt_out = opt_out_column(key) if key not in mapping else None
        if target in OPT_OUT_FIELDS or opt_out:
            # Every opt-out column counts, mapped or recognised: any true one opts out.
            known = opt_out or (None, "flag")
            field_name = target if target in OPT_OUT_FIELDS else known[0]
            opt_outs.append((i, OPT_OUT_FIELDS.index(field_name), known[1]))
            continue
        if target == "custom":
            target = None
        elif target is None and key not in NOT_OPT_OUTS and looks_like_opt_out(header[i]):
            suspect.append(i)
        if target is None:
            if not key:
                unnamed.append(i)
            else:
                custom.append((i, snake_case(header[i]) or key))
            continue
        if target in targets:
            j = targets[target]
            if key in mapping and keys[j] in mapping:
                raise CsvError(
                    f"{where}: --map reads both {header[j]!r} and {header[i]!r} as {target};"
                    " map one of them"
                )
            # Exports often have both (Phone and Mobile): the preferred alias is read
            # first, the other fills in where it is empty and is kept as a custom field.
            if key in mapping or ALIAS_RANK.get(key, 99) < ALIAS_RANK.get(keys[j], 99):
                targets[target], i = i, j
            alternates.setdefault(target, []).append(i)
            custom_name = snake_case(header[i]) or keys[i]
            custom.append((i, f"other_{custom_name}" if custom_name in FIELDS else custom_name))
            continue
        targets[target] = i
    if "email" not in targets and "phone" not in targets:
        looks_like_data = any("@" in h or sum(c.isdigit() for c in h) >= 7 for h in header)
        hint = (
            "the first line looks like data: the file needs a header row"
            if looks_like_data
            else "name one with --map 'Column=email' or --map 'Column=phone'"
        )
        raise CsvError(
            f"{where}: no email or phone column in the header"
            f" (columns: {', '.join(h for h in header)}); {hint}"
        )
    return ColumnPlan(
        targets=targets,
        custom=custom,
        unnamed=unnamed,
        opt_outs=opt_outs,
        suspect=suspect,
        custom_unique=len({n for _, n in custom}) == len(custom),
        at=tuple(targets.get(f, len(header)) for f in FIELDS),
        email_alt=tuple(alternates.get("email", ())),
        phone_alt=tuple(alternates.get("phone", ())),
    )


def _check_header(where: str, header: list[str], keys: list[str], mapping: dict[str, str]) -> None:
    """No two columns read as one name, and every --map names a column that exists."""
    seen: dict[str, int] = {}
    for i, (key, name) in enumerate(zip(keys, header, strict=True)):
        if key and key in seen:
            first = header[seen[key]]
            raise CsvError(
                f"{where}: columns {seen[key] + 1} {first!r} and {i + 1} {name!r}"
                " have the same name once case, spaces and punctuation are ignored"
            )
        seen[key] = i
    for key in mapping:
        if key not in seen:
            raise CsvError(
                f"{where}: --map names column {key!r}, which is not in the header"
                f" (columns: {', '.join(h for h in header)})"
            )
