"""The CSV parser on its own: files in tmp_path -> lead records, no database."""

from __future__ import annotations

import re
from pathlib import Path

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from pipectl.errors import CsvError
from pipectl.lead_columns import parse_map, snake_case
from pipectl.lead_values import normalise_email, normalise_phone
from pipectl.leads import InvalidRow, LeadRecord, open_leads


def read(tmp_path: Path, text: str | bytes, country: str | None = "US", maps=()) -> list:
    path = tmp_path / "leads.csv"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return list(open_leads(path, country=country, mapping=parse_map(list(maps))))


@pytest.mark.parametrize(
    "header, field",
    [
        ("Email", "email"),
        ("Email Address", "email"),
        ("E-mail", "email"),
        ("E-mail Address", "email"),
        ("EMAIL_ADDRESS", "email"),
        ("Phone", "phone"),
        ("Phone Number", "phone"),
        ("Mobile", "phone"),
        ("Mobile Phone", "phone"),
        ("Cell", "phone"),
        ("Telephone", "phone"),
    ],
)
def test_contact_columns_are_matched_by_alias(tmp_path, header, field):
    value = "Ann@Example.com" if field == "email" else "(212) 555-0142"
    [rec] = read(tmp_path, f"{header},Other\n{value},x\n")
    assert getattr(rec, field) == ("ann@example.com" if field == "email" else "+12125550142")


@pytest.mark.parametrize(
    "first, last",
    [("First Name", "Last Name"), ("Firstname", "Surname"), ("Given Name", "Family Name")],
)
def test_name_columns_are_matched_by_alias(tmp_path, first, last):
    [rec] = read(tmp_path, f"email,{first},{last}\na@b.com,Ann,Lee\n")
    assert (rec.first_name, rec.last_name) == ("Ann", "Lee")


def test_full_name_is_split_when_there_are_no_first_and_last_columns(tmp_path):
    [a, b] = read(tmp_path, "Email,Full Name\na@b.com,Ann Marie Lee\nc@d.com,Cher\n")
    assert (a.first_name, a.last_name) == ("Ann", "Marie Lee")
    assert (b.first_name, b.last_name) == ("Cher", None)


def test_name_is_a_custom_field_when_first_and_last_exist(tmp_path):
    [rec] = read(tmp_path, "Email,First Name,Name\na@b.com,Ann,Acme Corp\n")
    assert rec.first_name == "Ann" and rec.fields == {"name": "Acme Corp"}


def test_other_columns_become_snake_case_custom_fields_and_empty_values_are_empty(tmp_path):
    [rec] = read(tmp_path, "Email,Company Name,leadSource,Notes (internal)\na@b.com,Acme,Ads,\n")
    assert rec.fields == {"company_name": "Acme", "lead_source": "Ads", "notes_internal": ""}
    assert snake_case("Notes (internal)") == "notes_internal"


def test_utf8_bom_crlf_and_quoted_comma_and_newline(tmp_path):
    text = '\ufeffEmail,Company\r\na@b.com,"Acme, Inc."\r\nc@d.com,"Two\r\nlines"\r\ne@f.com,x\r\n'
    recs = read(tmp_path, text.encode("utf-8"))
    assert [r.line for r in recs] == [2, 3, 5]
    assert recs[0].fields == {"company": "Acme, Inc."}
    assert recs[1].fields == {"company": "Two\nlines"}


def test_invalid_rows_carry_the_physical_line_where_the_row_starts(tmp_path):
    text = 'Email,Notes\na@b.com,"one\ntwo\nthree"\n\nbob@@x.com,y\n'
    ok, bad = read(tmp_path, text)
    assert isinstance(ok, LeadRecord) and ok.line == 2
    assert isinstance(bad, InvalidRow) and bad.line == 6
    assert str(bad).startswith(f"{tmp_path / 'leads.csv'}:6: invalid email 'bob@@x.com': ")


@pytest.mark.parametrize(
    "raw, country, e164",
    [
        ("(212) 555-0142", "US", "+12125550142"),
        ("212.555.0142", "US", "+12125550142"),
        ("1-212-555-0142", "US", "+12125550142"),
        ("+1 212 555 0142", "US", "+12125550142"),
        ("07911 123456", "GB", "+447911123456"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "US", "+442079460958"),
    ],
)
def test_phones_are_stored_e164_in_the_accounts_country(raw, country, e164):
    assert normalise_phone(raw, country) == e164


@pytest.mark.parametrize("raw", ["555-12", "123", "not a phone", "+1 000 000 0000"])
def test_impossible_phones_are_invalid(raw):
    with pytest.raises(ValueError, match=re.escape(f"invalid phone {raw!r}")):
        normalise_phone(raw, "US")


def test_a_phone_without_country_code_needs_the_accounts_country():
    with pytest.raises(ValueError, match="no \\+country code"):
        normalise_phone("212 555 0142", None)


@pytest.mark.parametrize(
    "value, expected", [("yes", True), ("Y", True), ("1", True), ("true", True), ("no", False)]
)
def test_do_not_contact_column(tmp_path, value, expected):
    [rec] = read(tmp_path, f"email,Unsubscribed\na@b.com,{value}\n")
    assert rec.do_not_contact is expected


def test_map_reads_a_column_as_a_field_and_wins_over_an_alias(tmp_path):
    [rec] = read(
        tmp_path, "Email,Phone,Cell No\na@b.com,2125550100,2125550142\n", maps=["Cell No=phone"]
    )
    assert rec.phone == "+12125550142" and rec.fields == {"phone": "2125550100"}


@pytest.mark.parametrize(
    "spec, message", [("Cell", "Column=field"), ("Cell=fax", "unknown field 'fax'")]
)
def test_bad_map_options_name_the_problem(spec, message):
    with pytest.raises(CsvError, match=message):
        parse_map([spec])


def test_map_of_a_missing_column_names_it(tmp_path):
    with pytest.raises(CsvError, match="'cellno', which is not in the header"):
        read(tmp_path, "email\na@b.com\n", maps=["Cell No=phone"])


def test_rows_with_fewer_fields_than_the_header_are_read(tmp_path):
    [rec] = read(tmp_path, "email,company,notes\na@b.com,Acme\n")
    assert rec.fields == {"company": "Acme", "notes": ""}


def _slow_phone(value: str, country: str) -> str | None:
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@settings(max_examples=150, deadline=None)
@given(
    country=st.sampled_from(["US", "GB", "CA", "DE", "FR", "AU", "IN", "BR"]),
    prefix=st.sampled_from(["", "0", "1", "+1", "+44", "+49", "00"]),
    digits=st.text("0123456789", min_size=6, max_size=12),
    sep=st.sampled_from(["", " ", "-", "."]),
)
def test_phone_fast_path_agrees_with_phonenumbers(country, prefix, digits, sep):
    value = prefix + digits[:3] + sep + digits[3:]
    try:
        ours = normalise_phone(value, country)
    except ValueError:
        ours = None
    assert ours == _slow_phone(value, country)


@settings(max_examples=150, deadline=None)
@given(
    local=st.from_regex(r"[a-zA-Z0-9._%+-]{1,20}", fullmatch=True),
    domain=st.from_regex(
        r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,8}){0,2}\.(com|io|test|c0|co\.uk)", fullmatch=True
    ),
)
def test_email_fast_path_agrees_with_email_validator(local, domain):
    value = f"{local}@{domain}"
    try:
        expected = validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        ours = normalise_email(value)
    except ValueError:
        ours = None
    assert ours == expected


def test_phone_and_mobile_columns_prefer_the_mobile_and_keep_the_other(tmp_path):
    """A CRM export with both: texts go to the mobile; the desk phone fills in and is kept."""
    records = read(
        tmp_path,
        "First Name,Email,Phone,Mobile\r\n"
        "Jane,jane@doe.example,(212) 555-0101,212-555-0199\r\n"
        "John,,(646) 555-0102,\r\n",
    )
    jane, john = records
    assert jane.phone == "+12125550199" and jane.fields["other_phone"] == "(212) 555-0101"
    assert john.phone == "+16465550102"


def test_two_explicit_maps_to_one_field_are_refused(tmp_path):
    with pytest.raises(CsvError, match="--map reads both 'A' and 'B' as phone"):
        read(tmp_path, "Email,A,B\nx@y.example,1,2\n", maps=["A=phone", "B=phone"])


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_separated_exports_are_read(tmp_path, sep):
    text = sep.join(["E-Mail", "Vorname", "Firma"]) + "\n"
    text += sep.join(["jonas@beispiel.de", "Jonas", '"Müller, Söhne"']) + "\n"
    (lead,) = read(tmp_path, text, country="DE")
    assert lead.email == "jonas@beispiel.de" and lead.first_name is None
    assert lead.fields == {"vorname": "Jonas", "firma": "Müller, Söhne"}
