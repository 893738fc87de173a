"""Real CRM and spreadsheet exports through `pipectl leads import`: opt-out columns, placeholder
values, mobile columns, Excel's `sep=` line, huge cells, "Last, First" names, and output."""

from __future__ import annotations

import json

import pytest

from .conftest import dump, rows
from .scenario import T0, outbox, write_yaml
from .test_import import YAML, imported, leads, write

EMAIL_THEN_SMS = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - sms: "Did you see our email?"
          - move: won
      - {key: won, outcome: won}
"""


@pytest.fixture
def applied(cli, tmp_path):
    """test_import's two accounts and their pipelines, applied."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(YAML)
    assert cli("apply", path).exit_code == 0
    return cli


def opt_outs(db) -> list[tuple]:
    return [
        (r["email"], r["do_not_contact"], r["email_opt_out"], r["sms_opt_out"])
        for r in rows(db, "SELECT * FROM leads ORDER BY id")
    ]


def test_any_true_opt_out_column_makes_the_lead_do_not_contact(applied, db, tmp_path):
    text = (
        "Email,Do Not Contact,Unsubscribed\nann@x.com,no,yes\nbob@x.com,yes,no\ncat@x.com,no,no\n"
    )
    result = imported(applied, write(tmp_path, text), "--pipeline", "adwords")
    assert result.exit_code == 0, result.output
    assert "1 queued for enrollment" in result.stdout and "2 do-not-contact" in result.stdout
    assert [(r["email"], r["do_not_contact"], r["status"]) for r in leads(db)] == [
        ("ann@x.com", 1, None),
        ("bob@x.com", 1, None),
        ("cat@x.com", 0, "queued"),
    ]
    assert rows(db, "SELECT lead_id FROM enrollments") == [{"lead_id": 3}]


@pytest.mark.parametrize(
    "header, value, expected",
    [
        ("Email Opt Out", "1", (0, 1, 0)),  # Salesforce, Zoho
        ("HasOptedOutOfEmail", "true", (0, 1, 0)),  # Salesforce API names
        ("Do Not Call", "true", (0, 0, 1)),  # Salesforce: texts count as calls
        ("DoNotCall", "1", (0, 0, 1)),
        ("Unsubscribed from all email", "true", (0, 1, 0)),  # HubSpot
        ("Opted out of email: Marketing Information", "true", (0, 1, 0)),  # HubSpot
        ("UNSUB_TIME", "2024-05-01 10:11:12", (0, 1, 0)),  # Mailchimp's unsubscribed export
        ("CLEAN_TIME", "2024-05-01 10:11:12", (0, 1, 0)),  # Mailchimp's cleaned (bounced)
        ("Email Marketing Consent", "UNSUBSCRIBED", (0, 1, 0)),  # Klaviyo
        ("SMS Consent", "unsubscribed", (0, 0, 1)),
        ("SMS Opt Out", "yes", (0, 0, 1)),
        ("Unsubscribed", "2024-05-01", (1, 0, 0)),
        ("Opt-out date", "2024-05-01", (1, 0, 0)),
    ],
)
def test_crm_opt_out_columns_are_read_per_channel(applied, db, tmp_path, header, value, expected):
    text = f'Email,Phone,"{header}"\nann@x.com,(212) 555-0142,{value}\nbob@x.com,,\n'
    result = imported(applied, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert opt_outs(db) == [("ann@x.com", *expected), ("bob@x.com", 0, 0, 0)]
    assert header.lower() not in json.dumps(rows(db, "SELECT fields FROM leads")).lower()


def test_an_opt_out_of_both_channels_is_do_not_contact(applied, db, tmp_path):
    text = "Email,Email Opt Out,Do Not Call\nann@x.com,1,1\nbob@x.com,0,1\n"
    result = imported(applied, write(tmp_path, text), "--pipeline", "adwords")
    assert result.exit_code == 0, result.output
    assert opt_outs(db) == [("ann@x.com", 1, 1, 1), ("bob@x.com", 0, 0, 1)]
    assert "opted out of one channel: 0 of email (texts only), 1 of texts" in result.stdout
    assert [r["status"] for r in leads(db)] == [None, "queued"]


def test_an_email_opt_out_stops_email_and_do_not_call_stops_texts(cli, db, tmp_path):
    assert cli("apply", write_yaml(tmp_path, EMAIL_THEN_SMS)).exit_code == 0
    text = (
        "Email,Mobile Phone,Email Opt Out,Do Not Call\n"
        "ann@x.com,(212) 555-0101,1,0\n"
        "bob@x.com,(212) 555-0102,0,1\n"
        "cat@x.com,(212) 555-0103,0,0\n"
    )
    result = cli(
        "leads", "import", write(tmp_path, text), "--account", "acme", "--pipeline", "drip"
    )
    assert result.exit_code == 0, result.output
    assert cli("tick", "--now", T0, "-q").exit_code == 0
    sent = [p.read_text() for p in outbox(tmp_path)]
    emails = sorted(t.split("To: ")[1].split()[0] for t in sent if "To: " in t)
    texts = sorted(json.loads(t)["to"] for t in sent if t.startswith("{"))
    assert emails == ["bob@x.com", "cat@x.com"]
    assert texts == ["+12125550101", "+12125550103"]
    skipped = rows(
        db,
        "SELECT l.email, a.type, a.last_error FROM lead_stage_actions a"
        " JOIN leads l ON l.id = a.lead_id WHERE a.status = 'skipped' ORDER BY l.id",
    )
    assert skipped == [
        {"email": "ann@x.com", "type": "email", "last_error": "the lead opted out of email"},
        {"email": "bob@x.com", "type": "sms", "last_error": "the lead opted out of sms"},
    ]
    assert {r["status"] for r in leads(db)} == {"won"}


def test_map_reads_two_columns_as_do_not_contact(applied, db, tmp_path):
    text = "Email,Blocked,Bounced Hard\nann@x.com,no,yes\nbob@x.com,yes,no\ncat@x.com,no,no\n"
    result = imported(
        applied,
        write(tmp_path, text),
        "--map",
        "Blocked=do_not_contact",
        "--map",
        "Bounced Hard=do_not_contact",
    )
    assert result.exit_code == 0, result.output
    assert [r["do_not_contact"] for r in leads(db)] == [1, 1, 0]


def test_a_map_to_do_not_contact_keeps_the_recognised_opt_out_columns(applied, db, tmp_path):
    text = "Email,Blocked,Unsubscribed\nann@x.com,no,yes\nbob@x.com,yes,no\n"
    result = imported(applied, write(tmp_path, text), "--map", "Blocked=do_not_contact")
    assert result.exit_code == 0, result.output
    assert [r["do_not_contact"] for r in leads(db)] == [1, 1]


@pytest.mark.parametrize(
    "header, value",
    [
        ("GDPR Consent", "granted"),
        ("Newsletter Unsub", "x"),
        ("DNC List", "federal"),
        ("Opt Status", "out"),
        ("Do Not Disturb", "yes"),
    ],
)
def test_an_opt_out_column_pipectl_cannot_read_refuses_the_file(
    applied, db, tmp_path, header, value
):
    imported(applied, write(tmp_path, "Email\nfirst@x.com\n", "first.csv"))
    before = dump(db)
    path = write(tmp_path, f"Email,{header}\nann@x.com,\nbob@x.com,{value}\n")
    for extra in ((), ("--skip-invalid",)):
        result = imported(applied, path, "--pipeline", "adwords", *extra)
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert f"leads.csv:3: column '{header}' looks like an opt-out" in result.stderr
        assert f"--map '{header}=do_not_contact'" in result.stderr
        assert dump(db) == before
    mapped = imported(applied, path, "--map", f"{header}=custom")
    assert mapped.exit_code == 0, mapped.output
    assert [r["do_not_contact"] for r in leads(db)] == [0, 0, 0]


def test_known_columns_that_only_look_like_opt_outs_are_custom_fields(applied, db, tmp_path):
    text = "Email Address,OPTIN_TIME,UNSUB_REASON,Fax Opt Out\nann@x.com,2024-01-01,,1\n"
    result = imported(applied, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    (lead,) = leads(db)
    assert lead["do_not_contact"] == lead["email_opt_out"] == lead["sms_opt_out"] == 0
    assert json.loads(lead["fields"]) == {
        "optin_time": "2024-01-01",
        "unsub_reason": "",
        "fax_opt_out": "1",
    }


@pytest.mark.parametrize("placeholder", ["N/A", "n/a", "-", "none", "0", "000", "NULL", "?"])
def test_a_placeholder_phone_is_ignored_and_the_lead_imported(applied, db, tmp_path, placeholder):
    text = f"Email,Phone\nann@x.com,{placeholder}\nbob@x.com,(212) 555-0142\n"
    result = imported(applied, write(tmp_path, text), "--pipeline", "adwords")
    assert result.exit_code == 0, result.output
    assert "1 placeholder value ignored" in result.stdout
    assert f"line 2 phone {placeholder!r}" in result.stdout
    assert [(r["email"], r["phone"], r["status"]) for r in leads(db)] == [
        ("ann@x.com", None, "queued"),
        ("bob@x.com", "+12125550142", "queued"),
    ]


def test_json_lists_ignored_placeholders_and_a_row_left_without_address_is_invalid(
    applied, db, tmp_path
):
    text = "Email,Phone\nann@x.com,N/A\nn/a,(212) 555-0142\n-,-\n"
    result = imported(applied, write(tmp_path, text), "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ignored"] == [
        {"line": 2, "field": "phone", "value": "N/A"},
        {"line": 3, "field": "email", "value": "n/a"},
    ]
    assert report["invalid_lines"] == [4] and report["inserted"] == 2
    assert [(r["email"], r["phone"]) for r in leads(db)] == [
        ("ann@x.com", None),
        (None, "+12125550142"),
    ]


def test_a_mobile_column_wins_over_a_landline_column_for_texts(applied, db, tmp_path):
    text = (
        "Email,Phone Number,Mobile Phone Number\n"  # HubSpot
        "ann@x.com,(212) 555-0101,(917) 555-0102\n"
        "bob@x.com,(212) 555-0103,\n"
    )
    result = imported(applied, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    ann, bob = leads(db)
    assert ann["phone"] == "+19175550102"
    assert json.loads(ann["fields"]) == {"phone_number": "(212) 555-0101"}
    assert bob["phone"] == "+12125550103"


@pytest.mark.parametrize(
    "header",
    ["Phone - Mobile", "Cell Phone Number", "Mobile No"],  # Pipedrive and others
)
def test_other_mobile_column_names_win_over_a_work_phone(applied, db, tmp_path, header):
    text = f'Email,Work Phone,"{header}"\nann@x.com,(212) 555-0101,(917) 555-0102\n'
    result = imported(applied, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert leads(db)[0]["phone"] == "+19175550102"


@pytest.mark.parametrize("first_line", ["sep=;", '"sep=;"', "SEP=;"])
def test_excel_sep_line_names_the_delimiter_and_lines_stay_the_files(
    applied, db, tmp_path, first_line
):
    text = f"{first_line}\r\nEmail;Name;Company\r\nann@x.com;Ann Lee;Acme, Inc.\r\nbad@@x;Bo;\r\n"
    result = imported(applied, write(tmp_path, text), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "lines 4" in result.stdout
    (ann,) = leads(db)
    assert (ann["email"], ann["first_name"], ann["last_name"]) == ("ann@x.com", "Ann", "Lee")
    assert json.loads(ann["fields"]) == {"company": "Acme, Inc."}


def test_a_semicolon_export_with_commas_in_the_header_is_sniffed(applied, db, tmp_path):
    text = 'Email;"Name, full";Notes\nann@x.com;Ann Lee;a, b, c\nbob@x.com;Bo;d, e\n'
    result = imported(applied, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert [json.loads(r["fields"])["notes"] for r in leads(db)] == ["a, b, c", "d, e"]


def test_a_value_over_the_cell_limit_is_an_invalid_row_naming_line_and_column(
    applied, db, tmp_path
):
    huge = "x" * 140_000
    text = f"Email,Notes\nann@x.com,short\nbob@x.com,{huge}\ncat@x.com,\n"
    path = write(tmp_path, text)
    before = dump(db)
    refused = imported(applied, path)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "leads.csv:3: value in column 2 'Notes' is 140,000 characters long" in refused.stderr
    assert dump(db) == before
    skipped = imported(applied, path, "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert "1 invalid row skipped (lines 3)" in skipped.stdout
    assert [r["email"] for r in leads(db)] == ["ann@x.com", "cat@x.com"]


@pytest.mark.parametrize(
    "name, first, last",
    [
        ("Smith, John", "John", "Smith"),
        ("Smith , John Paul", "John Paul", "Smith"),
        ("John Smith, Jr.", "John", "Smith, Jr."),
        ("Dr. Ann Lee", "Ann", "Lee"),
        ("Cher", "Cher", None),
    ],
)
def test_a_full_name_is_split_including_last_comma_first(applied, db, tmp_path, name, first, last):
    result = imported(applied, write(tmp_path, f'Email,Name\nann@x.com,"{name}"\n'))
    assert result.exit_code == 0, result.output
    (lead,) = leads(db)
    assert (lead["first_name"], lead["last_name"]) == (first, last)


def test_leads_list_piped_is_tab_separated(applied, db, tmp_path):
    text = 'Email,Name,Phone\nann@x.com,"Lee, Ann",(212) 555-0142\nbob@x.com,Bo,\n'
    assert imported(applied, write(tmp_path, text), "--pipeline", "adwords").exit_code == 0
    result = applied("leads", "list")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines == [
        ["id", "account", "email", "phone", "name", "status", "pipelines"],
        [
            "1",
            "acme",
            "ann@x.com",
            "+12125550142",
            "Ann Lee",
            "queued",
            "adwords/inquired (queued)",
        ],
        ["2", "acme", "bob@x.com", "", "Bo", "queued", "adwords/inquired (queued)"],
    ]


def test_import_json_with_invalid_rows_prints_the_report_and_exits_1(applied, db, tmp_path):
    before = dump(db)
    text = "Email,Phone\nann@x.com,\nbob@@x.com,\ncat@x.com,555-12\n"
    result = imported(applied, write(tmp_path, text), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["invalid"] == 2 and report["invalid_lines"] == [3, 4]
    assert "2 invalid rows; nothing imported" in report["error"]
    assert "invalid phone '555-12'" in report["invalid_rows"][1]["reason"]
    assert "nothing imported" in result.stderr
    assert dump(db) == before
