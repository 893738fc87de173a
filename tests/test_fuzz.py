"""Hostile and random input: every parser either succeeds or raises the product's own error with
a message, never another exception; through the CLI, a failed command leaves the database as it
was."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipectl.config import load_config
from pipectl.durations import format_time, parse_duration, parse_rate, parse_time
from pipectl.errors import CsvError, DurationError, PipectlError
from pipectl.leads import InvalidRow, LeadRecord, open_leads

from .conftest import dump, rows
from .scenario import T0, write_csv, write_yaml

pytestmark = pytest.mark.slow  # hypothesis generates hundreds of files per test

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "pipelines.example.yaml").read_text(encoding="utf-8")
FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text that looks like the real thing more often than random text does.
duration_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789smhdwSMHDW .-+/:_", max_size=16),
    st.from_regex(r"\A\s*\d{1,30}[smhdw](\d{1,3}[smhdw]){0,4}\s*\Z"),
)
rate_text = st.one_of(
    st.text(max_size=24),
    st.from_regex(r"\A\s*-?\d{0,25}\s*/?\s*(second|minute|hour|day|week)?s?\s*\Z"),
)
time_text = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A\d{1,5}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{1,2}(:\d{1,2})?)?[Zz+-]?[0-9:]*\Z"),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=14))])).map(
        lambda d: d.isoformat()
    ),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2}|Z)\Z"),
)


@FAST
@given(duration_text)
def test_parse_duration_returns_seconds_or_a_duration_error(text):
    try:
        seconds = parse_duration(text)
    except DurationError as e:
        assert str(e)
    else:
        assert isinstance(seconds, int) and seconds >= 0
        parse_time(T0) + timedelta(seconds=seconds)  # a wait this long can be scheduled


def test_a_wait_too_long_to_schedule_is_refused_by_validate(cli, db, tmp_path):
    """It used to pass validate, then crash every tick after the send before it, which was
    therefore sent again by every tick."""
    yaml = write_yaml(
        tmp_path,
        "  - key: drip\n    account: acme\n    stages:\n      - key: intro\n        actions:\n"
        "          - email: {subject: Hi, body: Hello, retry: {backoff: 99999999999d}}\n"
        "          - wait: 99999999w\n"
        "          - wait_for_reply: {timeout: 9999999999999999h}\n",
    )
    result = cli("validate", yaml)
    assert result.exit_code == 1
    for line in (22, 23, 24):
        assert f"{yaml}:{line}: " in result.stderr and "too long" in result.stderr, result.stderr


@FAST
@given(rate_text)
def test_parse_rate_returns_a_rate_or_a_duration_error(text):
    try:
        rate = parse_rate(text)
    except DurationError as e:
        assert str(e)
    else:
        assert rate.count > 0 and rate.seconds in (1, 60, 3600, 86400)
        assert str(rate)  # shows again as N/period


@FAST
@given(time_text)
def test_parse_time_returns_utc_or_a_duration_error(text):
    try:
        t = parse_time(text)
    except DurationError as e:
        assert str(e)
    else:
        assert t.utcoffset().total_seconds() == 0
        stored = format_time(t)
        assert len(stored) == 20 and parse_time(stored) == t  # one fixed width, read back


# --- the YAML loader -------------------------------------------------------------------------


def _mutate(text: str, data: st.DataObject) -> str:
    """Delete, duplicate or swap lines, or put random characters somewhere: a damaged file."""
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "chars", "indent"]))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = data.draw(st.integers(0, len(lines) - 1), label="other")
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = " " * data.draw(st.integers(0, 3)) + lines[i].lstrip(" ")
        else:
            junk = data.draw(
                st.text(
                    alphabet=st.sampled_from(list(":{}[]-#&*!|>'\"%@`,? \t\n\\$0x")), max_size=4
                )
                | st.text(max_size=3),
                label="junk",
            )
            pos = data.draw(st.integers(0, len(lines[i])), label="at")
            lines[i] = lines[i][:pos] + junk + lines[i][pos:]
    return "".join(lines)


@pytest.fixture(scope="module")
def yaml_folder():
    """A folder holding the example's templates, so body_file references resolve."""
    folder = Path(tempfile.mkdtemp(prefix="pipectl-fuzz-"))
    shutil.copytree(ROOT / "examples" / "templates", folder / "examples" / "templates")
    yield folder
    shutil.rmtree(folder)


def _load(folder: Path, text: str) -> None:
    path = folder / "pipelines.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except PipectlError as e:
        assert str(e).strip()
        assert all(p.startswith(f"{path}:") for p in e.problems), e.problems


def test_the_example_loads(yaml_folder):
    path = yaml_folder / "pipelines.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_config(path).pipelines


@FAST
@given(data=st.data())
def test_load_config_on_a_mutated_example_succeeds_or_reports_problems(yaml_folder, data):
    _load(yaml_folder, _mutate(EXAMPLE, data))


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["1d", "200/hour", "mon-fri", "09:00-17:00", "${X}", "UTC", "won", "lost"]),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "key",
                    "name",
                    "account",
                    "stages",
                    "actions",
                    "email",
                    "sms",
                    "wait",
                    "move",
                    "outcome",
                    "limits",
                    "rates",
                    "timezone",
                    "country",
                    "subject",
                    "body",
                    "body_file",
                    "retry",
                    "send_window",
                    "on_failure",
                    "on_reply",
                    "channels",
                    "transport",
                    "host",
                    "timeout",
                    "wait_for_reply",
                    "days",
                    "hours",
                    "attempts",
                ]
            )  # fmt: skip
            | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@FAST
@given(accounts=yaml_values, channels=yaml_values, pipelines=yaml_values)
def test_load_config_on_generated_structures_succeeds_or_reports_problems(
    yaml_folder, accounts, channels, pipelines
):
    import yaml

    doc = {"version": 1, "accounts": accounts, "channels": channels, "pipelines": pipelines}
    _load(yaml_folder, yaml.safe_dump(doc, allow_unicode=True))


@FAST
@given(st.text(max_size=200))
def test_load_config_on_random_text_succeeds_or_reports_problems(yaml_folder, text):
    _load(yaml_folder, text)


# --- the CSV parser --------------------------------------------------------------------------

GOOD_CSV = (
    "Email Address,First Name,Last Name,Mobile Phone,Company Name,do_not_contact\r\n"
    'ana@example.com,Ana,Lima,+1 415 555 0100,"Lima, Inc",no\r\n'
    'bo@example.com,Bo,"Li\nMa",(415) 555-0101,Bo Co,yes\r\n'
)


def _parse(folder: Path, data: bytes) -> None:
    path = folder / "leads.csv"
    path.write_bytes(data)
    try:
        for item in open_leads(path, country="US"):
            assert isinstance(item, LeadRecord | InvalidRow)
            if isinstance(item, InvalidRow):
                assert str(item)
    except CsvError as e:
        assert str(e).strip()


@FAST
@given(st.binary(max_size=300))
def test_csv_parser_on_random_bytes_succeeds_or_raises_csv_error(yaml_folder, data):
    _parse(yaml_folder, data)


@FAST
@given(data=st.data())
def test_csv_parser_on_mutated_csv_succeeds_or_raises_csv_error(yaml_folder, data):
    raw = bytearray(GOOD_CSV.encode())
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        pos = data.draw(st.integers(0, len(raw)), label="at")
        kind = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        junk = data.draw(
            st.sampled_from([b'"', b",", b"\r", b"\n", b"\x00", b"\xff", b"\xef\xbb\xbf", b"@"])
            | st.binary(min_size=1, max_size=3)
        )
        if kind == "insert":
            raw[pos:pos] = junk
        elif kind == "delete":
            del raw[pos : pos + len(junk)]
        else:
            raw[pos : pos + len(junk)] = junk
    _parse(yaml_folder, bytes(raw))


csv_cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list('",\r\n@+ ')),
    max_size=12,
)


@FAST
@given(
    header=st.lists(
        st.sampled_from(["Email", "E-mail", "Phone", "First Name", "unsubscribed", "Timezone"])
        | csv_cell,
        min_size=1,
        max_size=5,
    ),
    cells=st.lists(st.lists(csv_cell, max_size=6), max_size=4),
)
def test_csv_parser_on_generated_tables_succeeds_or_raises_csv_error(yaml_folder, header, cells):
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(cells)
    _parse(yaml_folder, buf.getvalue().encode("utf-8", "surrogatepass"))


# --- through the CLI: a failed command changes nothing ---------------------------------------

BAD_YAMLS = [
    EXAMPLE.replace("version: 1", "version: 1\nversion: 2"),
    EXAMPLE.replace("rates:", "rates: [", 1),
    EXAMPLE.replace("sms: 60/hour", "sms: 60/fortnight"),
    EXAMPLE.replace("email: 200/hour", "email: 200/hour\n        email: 1/hour"),
    EXAMPLE.replace("examples/templates/intro.txt", "../../etc/passwd"),
    EXAMPLE.replace("key: acme", "key: \x00acme"),
    "\ufeff\t: ::\n",
]
BAD_CSVS = [
    b"Email,First Name\nnot-an-email,Ana\n",
    b'\xef\xbb\xbfE-mail,Phone\nana@example.com,+1 415 555 0100\n"unterminated\n',
    b"PK\x03\x04 a spreadsheet",
    b"First Name\nAna\n",
    b"Email,Email\nana@example.com,bo@example.com\n",
    b"Email,First Name\nana@example.com,\xff\xfe\n",
]


def test_bad_yamls_and_csvs_through_the_cli_change_nothing(cli, db, tmp_path):
    shutil.copytree(ROOT / "examples" / "templates", tmp_path / "examples" / "templates")
    good = tmp_path / "pipelines.yaml"
    good.write_text(EXAMPLE, encoding="utf-8")
    assert cli("apply", good).exit_code == 0
    csv = write_csv(tmp_path, "ok.csv", 3)
    assert cli("leads", "import", csv, "--account", "acme", "--pipeline", "adwords").exit_code == 0
    before = dump(db)
    for i, text in enumerate(BAD_YAMLS):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(text, encoding="utf-8")
        result = cli("apply", path)
        assert result.exit_code == 1, (text, result.output)
        assert str(path) in result.stderr and "Traceback" not in result.output
        assert dump(db) == before
    for i, data in enumerate(BAD_CSVS):
        path = tmp_path / f"bad{i}.csv"
        path.write_bytes(data)
        result = cli("leads", "import", path, "--account", "acme", "--pipeline", "adwords")
        assert result.exit_code == 1, (data, result.output)
        assert str(path) in result.stderr and "Traceback" not in result.output
        assert dump(db) == before


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\naccounts: " + "[" * 5000 + "]" * 5000 + "\n",
        "version: 1\nx-deep: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
        "version: 1\naccounts:\n  - key: a\n    name: " + "[" * 300 + "]" * 300 + "\n",
    ],
    ids=["lists", "mappings", "a name"],
)
def test_deeply_nested_yaml_is_a_config_error(yaml_folder, text):
    path = yaml_folder / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PipectlError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(
        st.sampled_from(["Email", "Phone", "First Name", "unsubscribed", "Timezone", "id"])
        | csv_cell,
        min_size=1,
        max_size=4,
    ),
    cells=st.lists(st.lists(csv_cell, max_size=5), min_size=1, max_size=3),
    skip_invalid=st.booleans(),
)
def test_leads_import_of_generated_csv_imports_or_changes_nothing(
    cli, db, tmp_path, header, cells, skip_invalid
):
    import csv
    import io

    if not rows(db, "SELECT id FROM pipelines"):  # the first example applies the YAML
        assert cli("apply", write_yaml(tmp_path, ONE_PIPELINE)).exit_code == 0
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(cells)
    path = tmp_path / "generated.csv"
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass"))
    before = dump(db)
    args = ["leads", "import", path, "--account", "acme", "--pipeline", "drip"]
    result = cli(*args, *(["--skip-invalid"] if skip_invalid else []))
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert result.stderr.startswith("error: ") or f"{path}:" in result.stderr
        assert dump(db) == before


ONE_PIPELINE = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
"""


@pytest.mark.parametrize(
    "args",
    [
        ("leads", "show", "99999999999999999999999"),
        ("leads", "stop", "99999999999999999999999"),
        ("retry", "99999999999999999999999"),
        ("leads", "list", "--limit", "99999999999999999999999"),
        ("leads", "list", "--offset", "99999999999999999999999"),
        ("actions", "list", "--limit", "99999999999999999999999"),
    ],
)
def test_an_id_too_big_for_sqlite_is_an_error_message(cli, db, args):
    """It was an OverflowError traceback."""
    assert cli("init").exit_code == 0
    result = cli(*args)
    assert result.exit_code in (1, 2)  # not found, or a usage error
    assert "99999999999999999999999" in result.output or "9223372036854775807" in result.output
