"""`leads import` of files larger than one batch (IMPORT_BATCH rows are merged and written at a
time): every promise holds across batch boundaries."""

from __future__ import annotations

import json

import pytest

from pipectl.store.lead_import_sql import IMPORT_BATCH

from .conftest import dump, rows
from .test_import import YAML, imported, write

pytestmark = pytest.mark.slow  # imports large generated files

SIZE = 2 * IMPORT_BATCH + 1_500  # three batches


@pytest.fixture
def applied(cli, tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(YAML)
    assert cli("apply", path).exit_code == 0
    return cli


def big_csv(size: int = SIZE, replace: dict[int, str] | None = None) -> str:
    """`size` leads, line n (from 2) being lead n-2; `replace` swaps whole lines by number."""
    lines = ["Email,First Name,Phone,Company"]
    lines += [f"lead{i}@x.com,Lead{i},,Company {i}" for i in range(size)]
    for line, text in (replace or {}).items():
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


def count(db, sql: str = "SELECT count(*) n FROM leads", *params) -> int:
    return rows(db, sql, *params)[0]["n"]


def test_a_bad_row_after_the_first_batch_imports_nothing_and_names_its_line(applied, db, tmp_path):
    assert imported(applied, write(tmp_path, "Email\nfirst@x.com\n", "first.csv")).exit_code == 0
    before = dump(db)
    bad_line = IMPORT_BATCH + 2_003
    path = write(tmp_path, big_csv(replace={bad_line: "not-an-email,Bad,,"}))
    result = imported(applied, path, "--pipeline", "adwords")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"leads.csv:{bad_line}: invalid email 'not-an-email'" in result.stderr
    assert "1 invalid row; nothing imported" in result.stderr
    assert dump(db) == before
    skipped = imported(applied, path, "--pipeline", "adwords", "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert f"1 invalid row skipped (lines {bad_line})" in skipped.stdout
    assert count(db) == 1 + SIZE - 1
    assert count(db, "SELECT count(*) n FROM enrollments WHERE status = 'queued'") == SIZE - 1


def test_invalid_rows_in_every_batch_are_all_reported_with_their_lines(applied, db, tmp_path):
    bad = [3, IMPORT_BATCH + 7, SIZE]
    path = write(tmp_path, big_csv(replace={n: f"bad{n}@@x.com,B,," for n in bad}))
    result = imported(applied, path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["invalid"] == 3 and report["invalid_lines"] == bad
    assert [r["line"] for r in report["invalid_rows"]] == bad
    assert count(db) == 0


def test_an_unreadable_opt_out_value_in_a_later_batch_rolls_back_the_earlier_ones(
    applied, db, tmp_path
):
    text = big_csv().replace("Company\n", "Company,GDPR Consent\n", 1)
    lines = text.splitlines()
    lines[IMPORT_BATCH + 10] += ",granted"
    result = imported(applied, write(tmp_path, "\n".join(lines) + "\n"), "--skip-invalid")
    assert result.exit_code == 1
    assert f"leads.csv:{IMPORT_BATCH + 11}: column 'GDPR Consent'" in result.stderr
    assert count(db) == 0


def test_rows_of_one_lead_in_different_batches_merge_and_a_later_opt_out_counts(
    applied, db, tmp_path
):
    stored = "Email,First Name,Phone\nstored@x.com,Old,\nsolo@x.com,,(212) 555-0142\n"
    assert imported(applied, write(tmp_path, stored, "stored.csv")).exit_code == 0
    later = IMPORT_BATCH + 100
    text = big_csv(
        replace={
            later: "lead5@x.com,Renamed,,Company 5",  # lead 5 again, in the second batch
            later + 1: "stored@x.com,New,,",  # a stored lead, first named in batch two
            later + 2: ",,(212) 555-0142,Merged by phone",  # the stored lead with that phone
            SIZE: "lead7@x.com,,,",  # lead 7 again, in the third batch
        }
    )
    text = text.replace("Company\n", "Company,Unsubscribed\n", 1)
    text = text.replace("lead7@x.com,,,\n", "lead7@x.com,,,,yes\n")
    result = imported(applied, write(tmp_path, text), "--pipeline", "adwords", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    new = SIZE - 4  # four lines name other leads: two stored, two repeat leads 5 and 7
    assert report["inserted"] == new
    assert (report["updated"], report["unchanged"], report["merged"]) == (2, 0, 2)
    assert report["do_not_contact"] == 1 and report["queued"] == new - 1 + 2
    lead5, lead7 = (
        rows(db, "SELECT * FROM leads WHERE email = ?", f"lead{n}@x.com")[0] for n in (5, 7)
    )
    assert (
        lead5["first_name"] == "Renamed" and json.loads(lead5["fields"])["company"] == "Company 5"
    )
    assert (lead7["do_not_contact"], lead7["status"]) == (1, None)
    solo = rows(db, "SELECT * FROM leads WHERE email = 'solo@x.com'")[0]
    assert json.loads(solo["fields"])["company"] == "Merged by phone"
    assert rows(db, "SELECT first_name FROM leads WHERE email = 'stored@x.com'") == [
        {"first_name": "New"}
    ]
    # Queued in the order the file first names each lead, stored ones included.
    queue = [
        r["email"]
        for r in rows(
            db,
            "SELECT l.email FROM enrollments e JOIN leads l ON l.id = e.lead_id ORDER BY e.id",
        )
    ]
    assert len(queue) == report["queued"] and "lead7@x.com" not in queue
    at = queue.index("stored@x.com")
    assert queue[at - 1 : at + 2] == [
        f"lead{later - 3}@x.com",
        "stored@x.com",
        "solo@x.com",
    ]
    assert {r["status"] for r in rows(db, "SELECT status FROM leads WHERE do_not_contact = 0")} == {
        "queued"
    }


def test_dry_run_of_a_large_file_reports_what_the_import_does_and_changes_nothing(
    applied, db, tmp_path
):
    assert imported(applied, write(tmp_path, big_csv(IMPORT_BATCH + 10), "a.csv")).exit_code == 0
    before = dump(db)
    path = write(tmp_path, big_csv())
    dry = imported(applied, path, "--pipeline", "adwords", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert dump(db) == before
    real = imported(applied, path, "--pipeline", "adwords", "--json")
    assert {**json.loads(dry.stdout), "dry_run": False} == json.loads(real.stdout)
    assert json.loads(real.stdout)["unchanged"] == IMPORT_BATCH + 10
