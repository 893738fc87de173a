"""`pipectl leads import` and `leads list` as a user runs them, checked in the database file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import dump, rows

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
YAML = """\
version: 1
accounts:
  - {key: acme, name: Acme Roofing, timezone: America/New_York, country: US}
  - {key: globex, name: Globex Solar, timezone: Europe/London, country: GB}
pipelines:
  - key: adwords
    account: acme
    name: Google Adwords Campaign
    stages:
      - key: inquired
        actions:
          - email: {subject: "Thanks, {{ lead.first_name }}", body: "Hello."}
      - key: follow-up
        actions:
          - sms: "Did you see our email?"
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
  - key: solar-webinar
    account: globex
    name: Solar webinar
    stages:
      - key: registered
        actions:
          - email: {subject: "See you there", body: "Soon."}
"""
GOOD = "Email,First Name,Phone\nann@example.com,Ann,(212) 555-0142\n"


@pytest.fixture
def applied(cli, tmp_path):
    """The two example accounts and their pipelines, applied from a YAML in tmp_path."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(YAML)
    result = cli("apply", path)
    assert result.exit_code == 0, result.output
    return cli


def write(tmp_path: Path, text: str | bytes, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def flat(text: str) -> str:
    """A message as one line of words, without the box a usage error is drawn in."""
    return " ".join(text.translate(str.maketrans("│╭╮╰╯─", "      ")).split())


def imported(cli, path, *args: str):
    return cli("leads", "import", path, "--account", "acme", *args)


def leads(db) -> list[dict]:
    return rows(db, "SELECT * FROM leads ORDER BY id")


BAD_FILES = [
    (
        "invalid_email",
        "Email,Name\nann@x.com,Ann\nbob@@x.com,Bob\n",
        ["leads.csv:3:", "'bob@@x.com'"],
    ),
    ("invalid_phone", "Phone,Name\n555-12,Bob\n", ["leads.csv:2:", "invalid phone '555-12'"]),
    ("no_email_no_phone", "Email,Phone,Name\n,,Bob\n", ["leads.csv:2:", "no email and no phone"]),
    ("too_many_fields", "Email,Name\nann@x.com,Ann,Extra\n", ["leads.csv:2:", "3 fields", "has 2"]),
    ("bad_timezone", "Email,Time Zone\na@x.com,Mars/Olympus\n", ["leads.csv:2:", "'Mars/Olympus'"]),
    (
        "bad_flag",
        "Email,Unsubscribed\na@x.com,maybe\n",
        ["leads.csv:2:", "invalid Unsubscribed 'maybe'"],
    ),
    (
        "after_quoted_newline",
        'Email,Notes\na@x.com,"one\ntwo"\nnot-an-email,x\n',
        ["leads.csv:4:", "'not-an-email'"],
    ),
    ("xlsx", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), ["leads.csv:", "ZIP archive"]),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(100), ["leads.csv:", "PNG image"]),
    ("nul_bytes", b"Email\x00,Name\nx\x00y\n", ["leads.csv:", "binary"]),
    (
        "latin1",
        "Email,Name\na@x.com,Ann\nb@x.com,Ren\xe9e\n".encode("latin-1"),
        ["leads.csv:3:", "0xe9"],
    ),
    ("empty", b"", ["leads.csv:", "empty"]),
    ("blank_lines_only", "\n\r\n  \n", ["leads.csv:", "empty"]),
    ("no_contact_column", "Name,Company\nBob,Acme\n", ["leads.csv:1:", "no email or phone column"]),
    ("headerless", "bob@x.com,Bob\nann@x.com,Ann\n", ["leads.csv:1:", "looks like data"]),
    (
        "duplicate_columns",
        "Email,Company Name,company_name\na@x.com,A,B\n",
        ["leads.csv:1:", "'Company Name'", "'company_name'"],
    ),
    (
        "bad_mobile_beside_a_phone",
        "Email,Phone,Mobile\na@x.com,1,2\n",
        ["leads.csv:2:", "invalid phone '2'"],
    ),
]


@pytest.mark.parametrize("name, content, expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_csv_is_refused_with_file_and_line_and_changes_nothing(
    applied, db, tmp_path, name, content, expected
):
    assert (
        imported(applied, write(tmp_path, GOOD, "good.csv"), "--pipeline", "adwords").exit_code == 0
    )
    before = dump(db)
    result = imported(applied, write(tmp_path, content), "--pipeline", "adwords")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.stderr
    assert dump(db) == before


def test_every_invalid_row_is_listed_up_to_a_cap(applied, db, tmp_path):
    body = "".join(f"bad{i}@@x.com\n" for i in range(60))
    result = imported(applied, write(tmp_path, "Email\n" + body))
    assert result.exit_code == 1
    assert "leads.csv:2: invalid email 'bad0@@x.com'" in result.stderr
    assert "leads.csv:51:" in result.stderr and "leads.csv:52:" not in result.stderr
    assert "and 10 more" in result.stderr
    assert "60 invalid rows; nothing imported" in result.stderr
    assert leads(db) == []


def test_a_map_naming_no_column_is_refused_at_the_files_header_line(applied, db, tmp_path):
    before = dump(db)
    path = write(tmp_path, GOOD, "g.csv")
    result = applied("leads", "import", path, "--account", "acme", "--map", "Nope=email")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == (
        f"error: {path}:1: --map names column 'nope', which is not in the header"
        " (columns: Email, First Name, Phone)\n"
    )
    assert dump(db) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--account", "nope"], "no account 'nope'"),
        (["--account", "acme", "--pipeline", "nope"], "no pipeline 'nope'"),
        (["--account", "acme", "--pipeline", "solar-webinar"], "does not belong to account 'acme'"),
        (["--account", "acme", "--pipeline", "adwords", "--stage", "x"], "no stage 'x'"),
    ],
)
def test_unknown_account_pipeline_stage_or_field_is_an_error(applied, db, tmp_path, args, message):
    before = dump(db)
    result = applied("leads", "import", write(tmp_path, GOOD), *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert dump(db) == before


def test_example_export_aliases_custom_fields_and_phones(applied, db):
    result = imported(applied, EXAMPLES / "leads-acme.csv")
    assert result.exit_code == 0, result.output
    assert "25 inserted, 0 updated, 0 unchanged" in result.stdout
    whitfield = rows(db, "SELECT * FROM leads WHERE email = 'tom.whitfield@whitfieldbuilders.com'")[
        0
    ]
    assert whitfield["phone"] == "+17185550123"
    assert (whitfield["first_name"], whitfield["last_name"]) == ("Tom", "Whitfield")
    fields = json.loads(whitfield["fields"])
    assert fields["company_name"] == "Whitfield Builders, LLC"
    assert fields["lead_source"] == "Google Ads"
    assert {r["phone"] for r in leads(db) if r["phone"]} >= {"+12125550142", "+12125550198"}
    assert rows(db, "SELECT email FROM leads WHERE id = 2")[0]["email"] == (
        "djohnson@oakridgeproperties.net"
    )
    notes = json.loads(rows(db, "SELECT fields FROM leads WHERE id = 6")[0]["fields"])["notes"]
    assert notes == "Board meets monthly.\nCall after 5pm."


def test_uk_example_with_time_zone_and_unsubscribed(applied, db):
    result = applied(
        "leads", "import", EXAMPLES / "leads-globex.csv", "--account", "globex",
        "--pipeline", "solar-webinar",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "9 queued for enrollment" in result.stdout and "1 do-not-contact" in result.stdout
    sophie = rows(db, "SELECT * FROM leads WHERE email = 'sophie.hughes@hotmail.co.uk'")[0]
    assert (sophie["phone"], sophie["timezone"], sophie["do_not_contact"]) == (
        "+447825123789", "Europe/Dublin", 1,
    )  # fmt: skip
    assert (
        rows(db, "SELECT count(*) n FROM enrollments WHERE lead_id = ?", sophie["id"])[0]["n"] == 0
    )


def test_bom_crlf_and_line_numbers_after_a_quoted_newline(applied, db, tmp_path):
    text = '\ufeffE-mail,Notes\r\na@x.com,"one\r\ntwo"\r\nnope,x\r\nb@x.com,"Acme, Inc."\r\n'
    result = imported(applied, write(tmp_path, text.encode()), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "leads.csv:4: invalid email 'nope'" in result.stderr
    assert "1 invalid row skipped (lines 4)" in result.stdout
    assert [(r["email"], json.loads(r["fields"])) for r in leads(db)] == [
        ("a@x.com", {"notes": "one\ntwo"}),
        ("b@x.com", {"notes": "Acme, Inc."}),
    ]


def test_duplicates_in_the_file_are_merged_later_values_winning(applied, db, tmp_path):
    text = (
        "Email,First Name,Phone,Company\n"
        "Ann@X.com,Ann,,Acme\n"
        ",,(212) 555-0142,Phone Only Co\n"
        "ann@x.com,Annie,212-555-0199,\n"
        ",Pat,+1 212 555 0142,\n"
    )
    result = imported(applied, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert "4 rows; 2 inserted" in result.stdout and "2 duplicate rows merged" in result.stdout
    ann, pat = leads(db)
    assert (ann["email"], ann["first_name"], ann["phone"]) == ("ann@x.com", "Annie", "+12125550199")
    assert json.loads(ann["fields"]) == {"company": "Acme"}
    assert (pat["email"], pat["first_name"], pat["phone"]) == (None, "Pat", "+12125550142")


def test_second_import_is_unchanged_and_does_not_requeue(applied, db):
    path = EXAMPLES / "leads-acme.csv"
    assert imported(applied, path, "--pipeline", "adwords").exit_code == 0
    before = dump(db)
    result = imported(applied, path, "--pipeline", "adwords", "--json")
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (0, 0, 25)
    assert (summary["queued"], summary["already_enrolled"]) == (0, 25)
    assert dump(db) == before


def test_a_changed_field_updates_the_lead_and_merges_custom_fields(applied, db, tmp_path):
    imported(applied, write(tmp_path, "Email,Company,Size\nann@x.com,Acme,10\nbob@x.com,B,1\n"))
    result = imported(
        applied,
        write(tmp_path, "Email,Company,Phone\nANN@x.com,Acme Ltd,2125550142\nbob@x.com,B,\n"),
    )
    assert "0 inserted, 1 updated, 1 unchanged" in result.stdout
    ann = leads(db)[0]
    assert json.loads(ann["fields"]) == {"company": "Acme Ltd", "size": "10"}
    assert ann["phone"] == "+12125550142"


def test_skip_invalid_imports_the_valid_rows(applied, db, tmp_path):
    text = "Email\nann@x.com\nbob@@x.com\ncid@x.com\n"
    result = imported(applied, write(tmp_path, text), "--skip-invalid", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["invalid"], summary["invalid_lines"]) == (2, 1, [3])
    [row] = summary["invalid_rows"]
    assert row["line"] == 3 and row["reason"].startswith("invalid email 'bob@@x.com'")
    assert result.stderr == ""
    plain = imported(applied, write(tmp_path, text), "--skip-invalid")
    assert plain.exit_code == 0 and "leads.csv:3: invalid email 'bob@@x.com'" in plain.stderr
    assert [r["email"] for r in leads(db)] == ["ann@x.com", "cid@x.com"]


def test_dry_run_reports_the_same_and_changes_nothing(applied, db, tmp_path):
    imported(applied, write(tmp_path, GOOD, "first.csv"), "--pipeline", "adwords")
    before = dump(db)
    text = GOOD + "new@x.com,New,\n"
    dry = imported(applied, write(tmp_path, text), "--pipeline", "adwords", "--dry-run", "--json")
    assert dump(db) == before
    real = imported(applied, write(tmp_path, text), "--pipeline", "adwords", "--json")
    assert {**json.loads(dry.stdout), "dry_run": False} == json.loads(real.stdout)
    assert json.loads(real.stdout)["queued"] == 1


def test_map_reads_an_unknown_column_as_a_field(applied, db, tmp_path):
    text = "Contact,Cell No,Org\nann@x.com,212 555 0142,Acme\n"
    result = imported(
        applied, write(tmp_path, text), "--map", "Contact=email", "--map", "Cell No=phone"
    )
    assert result.exit_code == 0, result.output
    [ann] = leads(db)
    assert (ann["email"], ann["phone"], json.loads(ann["fields"])) == (
        "ann@x.com", "+12125550142", {"org": "Acme"},
    )  # fmt: skip


def test_enrollment_is_queued_at_the_first_stage_in_file_order(applied, db, tmp_path):
    text = "Email\nzed@x.com\nann@x.com\n"
    result = imported(applied, write(tmp_path, text), "--pipeline", "adwords")
    assert "adwords: 2 queued for enrollment" in result.stdout
    queue = rows(
        db,
        "SELECT l.email, e.status, s.key stage, e.queued_at FROM enrollments e"
        " JOIN leads l ON l.id = e.lead_id JOIN pipeline_stages s ON s.id = e.entry_stage_id"
        " ORDER BY e.id",
    )
    assert [(q["email"], q["status"], q["stage"]) for q in queue] == [
        ("zed@x.com", "queued", "inquired"),
        ("ann@x.com", "queued", "inquired"),
    ]
    assert len(queue[0]["queued_at"]) == len("2027-03-01T14:00:00Z")
    assert {r["status"] for r in leads(db)} == {"queued"}


def test_stage_option_names_the_entry_stage(applied, db, tmp_path):
    imported(applied, write(tmp_path, GOOD), "--pipeline", "adwords", "--stage", "follow-up")
    stage = rows(
        db, "SELECT s.key FROM enrollments e JOIN pipeline_stages s ON s.id = e.entry_stage_id"
    )
    assert stage == [{"key": "follow-up"}]


def test_re_enroll_restarts_only_finished_enrollments(applied, db, tmp_path):
    emails = ["won", "lost", "idle", "active", "stopped"]
    path = write(tmp_path, "Email\n" + "".join(f"{e}@x.com\n" for e in emails))
    imported(applied, path, "--pipeline", "adwords")
    conn = __import__("sqlite3").connect(db)
    with conn:
        for e in emails:
            conn.execute(
                "UPDATE enrollments SET status = ?, started_at = 'x', finished_at = 'y'"
                " WHERE lead_id = (SELECT id FROM leads WHERE email = ?)",
                (e, f"{e}@x.com"),
            )
            conn.execute("UPDATE leads SET status = ? WHERE email = ?", (e, f"{e}@x.com"))
    conn.close()
    again = imported(applied, path, "--pipeline", "adwords", "--json")
    assert json.loads(again.stdout)["queued"] == 0
    result = imported(applied, path, "--pipeline", "adwords", "--re-enroll", "--json")
    summary = json.loads(result.stdout)
    assert (summary["queued"], summary["re_enrolled"], summary["already_enrolled"]) == (3, 3, 2)
    states = rows(
        db,
        "SELECT l.email, e.status, l.status lead_status, e.finished_at FROM enrollments e"
        " JOIN leads l ON l.id = e.lead_id ORDER BY e.id",
    )
    assert [(s["email"], s["status"], s["lead_status"]) for s in states] == [
        ("won@x.com", "queued", "queued"),
        ("lost@x.com", "queued", "queued"),
        ("idle@x.com", "queued", "queued"),
        ("active@x.com", "active", "active"),
        ("stopped@x.com", "stopped", "stopped"),
    ]
    assert [s["finished_at"] for s in states[:3]] == [None, None, None]
    assert rows(db, "SELECT count(*) n FROM enrollments")[0]["n"] == 5


def test_do_not_contact_leads_are_imported_but_never_enrolled(applied, db, tmp_path):
    text = "Email,Do Not Contact\nann@x.com,yes\nbob@x.com,no\n"
    result = imported(applied, write(tmp_path, text), "--pipeline", "adwords")
    assert "1 queued for enrollment" in result.stdout and "1 do-not-contact" in result.stdout
    assert [(r["email"], r["do_not_contact"], r["status"]) for r in leads(db)] == [
        ("ann@x.com", 1, None),
        ("bob@x.com", 0, "queued"),
    ]
    # Importing the lead again with "no" never clears an opt-out.
    imported(
        applied, write(tmp_path, "Email,Do Not Contact\nann@x.com,no\n"), "--pipeline", "adwords"
    )
    assert leads(db)[0]["do_not_contact"] == 1


def test_leads_list_json_matches_the_rows(applied, db, tmp_path):
    imported(applied, EXAMPLES / "leads-acme.csv", "--pipeline", "adwords")
    applied("leads", "import", EXAMPLES / "leads-globex.csv", "--account", "globex")
    result = applied(
        "leads", "list", "--account", "acme", "--limit", "5", "--offset", "1", "--json"
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    expected = rows(db, "SELECT * FROM leads WHERE account_id = 1 ORDER BY id LIMIT 5 OFFSET 1")
    assert [(x["id"], x["email"], x["phone"], x["status"]) for x in listed] == [
        (r["id"], r["email"], r["phone"], r["status"]) for r in expected
    ]
    assert listed[0]["name"] == f"{expected[0]['first_name']} {expected[0]['last_name']}"
    assert listed[0]["enrollments"] == [
        {"pipeline": "adwords", "stage": "inquired", "state": "queued"}
    ]
    by_pipeline = json.loads(applied("leads", "list", "--pipeline", "adwords", "--json").stdout)
    assert len(by_pipeline) == 25
    queued = applied("leads", "list", "--status", "queued", "--limit", "1000", "--json")
    assert len(json.loads(queued.stdout)) == 25
    globex = json.loads(applied("leads", "list", "--account", "globex", "--json").stdout)
    assert len(globex) == 10 and all(g["enrollments"] == [] for g in globex)


def test_leads_list_shows_the_open_stage_of_a_started_enrollment(applied, db, tmp_path):
    imported(applied, write(tmp_path, GOOD), "--pipeline", "adwords")
    conn = __import__("sqlite3").connect(db)
    with conn:
        conn.execute("UPDATE enrollments SET status = 'active'")
        conn.execute(
            "INSERT INTO lead_stages (lead_id, enrollment_id, pipeline_stage_id, entered_at)"
            " SELECT 1, 1, id, '2027-03-01T14:00:00Z' FROM pipeline_stages WHERE key = 'follow-up'"
        )
    conn.close()
    [lead] = json.loads(applied("leads", "list", "--json").stdout)
    assert lead["enrollments"] == [{"pipeline": "adwords", "stage": "follow-up", "state": "active"}]
    table = applied("leads", "list")
    assert table.exit_code == 0 and "ann@example.com" in table.stdout


def test_leads_list_rejects_an_unknown_status_as_a_usage_error(applied, db):
    before = dump(db)
    result = applied("leads", "list", "--status", "activ")
    assert result.exit_code == 2, result.output
    message = flat(result.stderr)
    assert "--status: unknown status 'activ'" in message
    assert "queued, active, idle, won, lost, stopped, failed" in message
    assert dump(db) == before


@pytest.mark.parametrize(
    "spec, message", [("Foo", "write it as 'Column=field'"), ("Phone=fax", "unknown field 'fax'")]
)
def test_a_malformed_map_option_is_a_usage_error(applied, db, tmp_path, spec, message):
    before = dump(db)
    result = applied("leads", "import", write(tmp_path, GOOD), "--account", "acme", "--map", spec)
    assert result.exit_code == 2, result.output
    assert f"--map: '{spec}': {message}" in flat(result.stderr)
    assert dump(db) == before


@pytest.mark.parametrize("command", [["leads", "import"], ["leads", "list"], ["status"]])
def test_commands_have_help_with_an_example(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0 and "Example: pipectl" in result.stdout


def test_an_empty_custom_cell_is_an_empty_field_so_the_send_still_renders(cli, db, tmp_path):
    from .scenario import T0, outbox, write_yaml

    pipelines = """\
  - key: intro
    account: acme
    stages:
      - key: first
        actions:
          - email: {subject: "Hello", body: "From {{ lead.company_name }}"}
"""
    assert cli("apply", write_yaml(tmp_path, pipelines)).exit_code == 0
    text = "Email,Company Name\nann@x.com,Acme\nbob@x.com,\n"
    result = imported(cli, write(tmp_path, text), "--pipeline", "intro")
    assert result.exit_code == 0, result.output
    assert cli("tick", "--now", T0, "-q").exit_code == 0
    sql = "SELECT status, last_error FROM lead_stage_actions ORDER BY lead_id"
    assert [(a["status"], a["last_error"]) for a in rows(db, sql)] == [("done", None)] * 2
    bodies = [p.read_text().replace("\r", "") for p in outbox(tmp_path)]
    assert len(bodies) == 2 and "From Acme" in bodies[0] and "From \n" in bodies[1]


def test_an_empty_cell_keeps_an_existing_value_and_adds_a_missing_key(applied, db, tmp_path):
    imported(applied, write(tmp_path, "Email,Company\nann@x.com,Acme\n"))
    result = imported(applied, write(tmp_path, "Email,Company,Size\nann@x.com,,\nann@x.com,,\n"))
    assert result.exit_code == 0, result.output
    assert "0 inserted, 1 updated, 0 unchanged" in result.stdout
    assert json.loads(leads(db)[0]["fields"]) == {"company": "Acme", "size": ""}
    again = imported(applied, write(tmp_path, "Email,Company,Size\nann@x.com,,\n"))
    assert "0 inserted, 0 updated, 1 unchanged" in again.stdout
    later = imported(applied, write(tmp_path, "Email,Size\nann@x.com,10\nann@x.com,\n"))
    assert "1 updated" in later.stdout
    assert json.loads(leads(db)[0]["fields"]) == {"company": "Acme", "size": "10"}
