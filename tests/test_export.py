"""`pipectl leads export`: leads with their state and stage, as CSV that imports again."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from pipectl.cli import app

from .conftest import rows
from .scenario import T0
from .test_import import YAML, write

SOURCE = (
    "Email,Name,Mobile Phone,Phone,Time Zone,Company Name,Notes,Email Opt Out,Do Not Call,"
    "Unsubscribed\n"
    'ann@x.com,"Lee, Ann",(212) 555-0101,(212) 555-0199,America/Chicago,"Acme, Inc.",'
    '"two\nlines",no,no,no\n'
    "bob@x.com,Bo Ek,,,,Ünïcode GmbH,,yes,no,no\n"
    ",Cy,(212) 555-0103,,,,,no,yes,no\n"
    "dee@x.com,Dee,,,,,,no,no,yes\n"
)
COLUMNS = (
    "email, phone, first_name, last_name, timezone, do_not_contact, email_opt_out,"
    " sms_opt_out, fields"
)


@pytest.fixture
def imported(cli, db, tmp_path):
    """Four leads imported into acme's adwords pipeline, and one tick run."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(YAML)
    assert cli("apply", path).exit_code == 0
    source = write(tmp_path, SOURCE, "source.csv")
    result = cli("leads", "import", source, "--account", "acme", "--pipeline", "adwords")
    assert result.exit_code == 0, result.output
    globex = write(tmp_path, "Email\nzed@globex.example\n", "globex.csv")
    assert cli("leads", "import", globex, "--account", "globex").exit_code == 0
    assert cli("tick", "--now", T0, "-q").exit_code == 0
    return cli


def leads(db, account: str = "acme") -> list[dict]:
    return rows(
        db,
        f"SELECT {COLUMNS} FROM leads WHERE account_id ="
        " (SELECT id FROM accounts WHERE key = ?) ORDER BY email",
        account,
    )


def test_an_export_imports_into_another_database_as_the_same_leads(imported, db, tmp_path):
    out = tmp_path / "export.csv"
    result = imported("leads", "export", "--account", "acme", "-o", out)
    assert result.exit_code == 0, result.output
    assert "4 leads written" in result.stderr and result.stdout == ""
    other = tmp_path / "other.db"
    runner = CliRunner()
    assert runner.invoke(app, ["--db", str(other), "apply", str(tmp_path / "pipelines.yaml")])
    again = runner.invoke(
        app, ["--db", str(other), "leads", "import", str(out), "--account", "acme"]
    )
    assert again.exit_code == 0, again.output
    assert leads(other) == leads(db)
    assert len(leads(db)) == 4


def test_an_export_imported_again_changes_nothing(imported, db, tmp_path):
    out = tmp_path / "export.csv"
    assert imported("leads", "export", "--account", "acme", "-o", out).exit_code == 0
    before = leads(db)
    result = imported("leads", "import", out, "--account", "acme", "--pipeline", "adwords")
    assert result.exit_code == 0, result.output
    assert "0 inserted, 0 updated, 4 unchanged" in result.stdout
    assert "0 queued for enrollment" in result.stdout
    assert leads(db) == before


FORMULAS = (
    "Email,First Name,Last Name,Phone,Formula,Minus,Quoted,Plain\n"
    "eve@x.com,=1+2,''=x,+12125550142,@SUM(A1),-5,'tis,O'Brien\n"
)


def test_cells_a_spreadsheet_would_run_are_quoted_and_import_back_as_they_were(cli, db, tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(YAML)
    assert cli("apply", path).exit_code == 0
    source = write(tmp_path, FORMULAS, "formulas.csv")
    assert cli("leads", "import", source, "--account", "acme").exit_code == 0
    [stored] = leads(db)
    assert (stored["first_name"], stored["last_name"], stored["phone"]) == (
        "=1+2",
        "'=x",
        "+12125550142",
    )

    out = tmp_path / "export.csv"
    assert cli("leads", "export", "--account", "acme", "-o", out).exit_code == 0
    [row] = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert (row["first_name"], row["last_name"], row["phone"]) == ("'=1+2", "''=x", "+12125550142")
    assert (row["formula"], row["minus"]) == ("'@SUM(A1)", "-5")  # a number runs nothing
    assert (row["quoted"], row["plain"]) == ("'tis", "O'Brien")  # nothing a formula starts with
    jsonl = cli("leads", "export", "--account", "acme", "--format", "jsonl").stdout
    assert json.loads(jsonl)["first_name"] == "=1+2"  # JSON lines as stored

    other = tmp_path / "other.db"
    runner = CliRunner()
    assert runner.invoke(app, ["--db", str(other), "apply", str(path)]).exit_code == 0
    again = runner.invoke(
        app, ["--db", str(other), "leads", "import", str(out), "--account", "acme"]
    )
    assert again.exit_code == 0, again.output
    assert leads(other) == leads(db)
    assert json.loads(leads(other)[0]["fields"]) == {
        "formula": "@SUM(A1)",
        "minus": "-5",
        "quoted": "'tis",
        "plain": "O'Brien",
    }


def test_csv_to_stdout_has_state_stage_and_custom_fields(imported, db):
    result = imported("leads", "export", "--account", "acme", "--pipeline", "adwords")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    by_email = {r["email"]: r for r in table}
    ann = by_email["ann@x.com"]
    assert (ann["first_name"], ann["last_name"], ann["phone"]) == ("Ann", "Lee", "+12125550101")
    assert (ann["pipectl_pipeline"], ann["pipectl_stage"], ann["pipectl_status"]) == (
        "adwords",
        "inquired",
        "idle",  # emailed: nothing left to do in the stage
    )
    assert ann["company_name"] == "Acme, Inc." and ann["notes"] == "two\nlines"
    assert ann["other_phone"] == "(212) 555-0199"
    assert by_email["bob@x.com"]["email_opt_out"] == "yes"
    assert by_email[""]["sms_opt_out"] == "yes"
    assert len(table) == 3  # dee is do-not-contact: never enrolled
    everyone = list(csv.DictReader(io.StringIO(imported("leads", "export").stdout)))
    dee = next(r for r in everyone if r["email"] == "dee@x.com")
    assert dee["do_not_contact"] == "yes" and dee["pipectl_pipeline"] == ""
    assert dee["pipectl_status"] == "" and len(everyone) == 5


def test_filters_and_json_lines(imported, db):
    result = imported("leads", "export", "--format", "jsonl", "--status", "idle")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(x["email"], x["status"], x["stage"]) for x in lines} == {
        ("ann@x.com", "idle", "inquired"),
        ("bob@x.com", "idle", "inquired"),
    }  # Cy has no email address: his run failed
    ann = next(x for x in lines if x["email"] == "ann@x.com")
    assert ann["fields"]["notes"] == "two\nlines" and ann["account"] == "acme"
    everyone = imported("leads", "export", "--format", "jsonl")
    assert len(everyone.stdout.splitlines()) == 5  # globex's lead too
    globex = imported("leads", "export", "--account", "globex", "--format", "jsonl")
    assert [json.loads(x)["email"] for x in globex.stdout.splitlines()] == ["zed@globex.example"]


@pytest.mark.parametrize(
    "args, message", [(["--status", "asleep"], "unknown status"), (["--format", "xml"], "xml")]
)
def test_bad_options_are_usage_errors(imported, args, message):
    result = imported("leads", "export", *args)
    assert result.exit_code == 2 and message in result.output
