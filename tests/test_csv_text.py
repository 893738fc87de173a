"""Hand-edited and European spreadsheet exports through every CSV command (`leads import`,
`leads enroll --file`, `suppressions import`, `replies import`): a quote opened and never
closed, text after a closing quote, Excel's `sep=;` line, semicolons, Latin-1 text."""

from __future__ import annotations

import pytest

from .conftest import dump, rows
from .test_import import applied, imported, leads, write  # noqa: F401 (a fixture)

UNCLOSED = 'Email,First Name,Notes\nann@x.com,Ann,"Call after 5\nbob@x.com,Bob,\ncy@x.com,Cy,\n'


def test_an_unclosed_quote_refuses_the_file_naming_its_row(applied, db, tmp_path):  # noqa: F811
    """Read leniently, the quote swallowed every row after it into Ann's notes, and the
    import said `1 row; 1 inserted` with exit 0: Bob and Cy were lost without a word."""
    before = dump(db)
    path = write(tmp_path, UNCLOSED)
    result = imported(applied, path, "--pipeline", "adwords")
    assert result.exit_code == 1, result.output
    assert f"{path}:2: a quoted value starts on this row and is never closed" in result.stderr
    assert "Traceback" not in result.output
    assert dump(db) == before
    skipping = imported(applied, path, "--pipeline", "adwords", "--skip-invalid")
    assert skipping.exit_code == 1 and dump(db) == before  # no row can be trusted after it


def test_an_unclosed_quote_after_the_first_batch_imports_nothing(applied, db, tmp_path):  # noqa: F811
    """The import writes in batches of 5,000 as it streams; the bad row comes after the first
    batch was written, and the file is still all or nothing."""
    lines = ["Email,First Name,Notes"] + [f"lead{i}@x.com,L{i}," for i in range(6000)]
    lines[5501] = 'lead5500@x.com,L5500,"said: call me'
    path = write(tmp_path, "\n".join(lines) + "\n")
    before = dump(db)
    result = imported(applied, path, "--pipeline", "adwords")
    assert result.exit_code == 1, result.output
    assert f"{path}:5502: a quoted value starts on this row and is never closed" in result.stderr
    assert leads(db) == [] and dump(db) == before


def test_text_after_a_closing_quote_refuses_the_file_naming_its_row(applied, db, tmp_path):  # noqa: F811
    before = dump(db)
    path = write(tmp_path, 'Email,First Name\nann@x.com,Ann\nbob@x.com,"Bob" Jr\n')
    result = imported(applied, path)
    assert result.exit_code == 1, result.output
    assert f"{path}:3: text follows a closing quote" in result.stderr
    assert dump(db) == before


@pytest.mark.parametrize("command", ["import", "enroll"])
def test_a_latin1_file_with_excels_sep_line_is_refused_without_a_traceback(
    applied,  # noqa: F811
    db,
    tmp_path,
    command,
):
    """European Excel writes Windows-1252 with a `sep=;` first line; reading that line
    decoded the file's first block and the decode error escaped as a traceback."""
    path = write(tmp_path, b"sep=;\r\nE-Mail;Vorname;Nachname\r\nkarl@x.de;Karl;M\xfcller\r\n")
    before = dump(db)
    args = ["--file", str(path), "--pipeline", "adwords"] if command == "enroll" else [str(path)]
    result = applied("leads", command, *args, "--account", "acme")
    assert result.exit_code == 1, result.output
    assert f"{path}:3: not UTF-8 text (byte 0xfc); save the file as CSV UTF-8" in result.stderr
    assert "Traceback" not in result.output
    assert dump(db) == before


def test_suppressions_import_reads_semicolons_and_excels_sep_line(applied, db, tmp_path):  # noqa: F811
    """`leads import` read them; a provider's European export of bounces did not load."""
    semicolons = write(tmp_path, "\ufeffEmail;Reason\r\ns1@x.com;hard bounce\r\n", "a.csv")
    sep_line = write(tmp_path, "sep=;\nEmail;Reason\ns2@x.com;spam, reported\n", "b.csv")
    for path in (semicolons, sep_line):
        result = applied("suppressions", "import", path, "--account", "acme")
        assert result.exit_code == 0, result.output
    assert rows(db, "SELECT address, reason, detail FROM suppressions ORDER BY address") == [
        {"address": "s1@x.com", "reason": "bounce", "detail": "hard bounce"},
        {"address": "s2@x.com", "reason": "complaint", "detail": "spam, reported"},
    ]


def test_replies_import_reads_semicolons_and_excels_sep_line(applied, db, tmp_path):  # noqa: F811
    assert imported(applied, write(tmp_path, "Email\nann@x.com\n"), "--pipeline", "adwords")
    path = write(
        tmp_path,
        "sep=;\r\nFrom;Body;Received At\r\nann@x.com;Yes, call me;2027-03-01T13:00:00Z\r\n",
        "replies.csv",
    )
    result = applied("replies", "import", path, "--account", "acme")
    assert result.exit_code == 0, result.output
    assert "1 reply: 1 matched" in result.stdout
    assert rows(db, "SELECT body, received_at FROM replies") == [
        {"body": "Yes, call me", "received_at": "2027-03-01T13:00:00Z"}
    ]


@pytest.mark.parametrize("command", ["suppressions", "replies"])
def test_suppressions_and_replies_import_refuse_an_unclosed_quote(
    applied,  # noqa: F811
    db,
    tmp_path,
    command,
):
    text = 'Email,Body,Reason\na@x.com,"Please stop,bounce\nb@x.com,hi,bounce\n'
    path = write(tmp_path, text, "in.csv")
    before = dump(db)
    result = applied(command, "import", path, "--account", "acme")
    assert result.exit_code == 1, result.output
    assert f"{path}:2: a quoted value starts on this row and is never closed" in result.stderr
    assert "Traceback" not in result.output
    assert dump(db) == before


def test_an_unclosed_quote_in_the_header_names_the_header_line(applied, db, tmp_path):  # noqa: F811
    path = write(tmp_path, 'Email,"First Name\nann@x.com,Ann\nbob@x.com,Bob\n')
    result = imported(applied, path)
    assert result.exit_code == 1, result.output
    assert f"{path}:1: a quoted value starts on this row and is never closed" in result.stderr
