"""`pipectl status`: leads per account and state, from the database file."""

from __future__ import annotations

import json
from pathlib import Path

from .test_import import EXAMPLES, applied, flat  # noqa: F401  (fixture)


def test_status_json_counts_leads_by_state_per_account(applied, db):  # noqa: F811
    applied(
        "leads", "import", EXAMPLES / "leads-acme.csv", "--account", "acme", "--pipeline", "adwords"
    )
    applied(
        "leads", "import", EXAMPLES / "leads-globex.csv", "--account", "globex",
        "--pipeline", "solar-webinar",
    )  # fmt: skip
    result = applied("status", "--json")
    assert result.exit_code == 0, result.output
    by_account = {entry["account"]: entry for entry in json.loads(result.stdout)["accounts"]}
    assert by_account["acme"]["leads"] == 25
    assert by_account["acme"]["leads_by_state"] == {"queued": 25}
    assert by_account["acme"]["pipelines"] == {"adwords": {"queued": 25}}
    assert by_account["globex"]["leads_by_state"] == {"not_enrolled": 1, "queued": 9}
    assert by_account["globex"]["do_not_contact"] == 1


def test_status_for_one_account_and_as_a_table(applied, tmp_path: Path):  # noqa: F811
    applied("leads", "import", EXAMPLES / "leads-acme.csv", "--account", "acme")
    only = json.loads(applied("status", "--account", "acme", "--json").stdout)["accounts"]
    assert [e["account"] for e in only] == ["acme"]
    assert only[0]["leads_by_state"] == {"not_enrolled": 25}
    table = applied("status", "--account", "acme")
    assert table.exit_code == 0 and "acme (Acme Roofing): 25 leads" in table.stdout
    assert "WARNING: no tick has ever run" in table.stdout


def test_status_of_an_unknown_account_is_an_error(applied):  # noqa: F811
    result = applied("status", "--account", "nope")
    assert result.exit_code == 1 and "no account 'nope'" in result.stderr


def test_status_with_a_bad_now_is_a_usage_error(applied):  # noqa: F811
    result = applied("status", "--now", "yesterday")
    assert result.exit_code == 2, result.output
    assert "--now: invalid time 'yesterday': use ISO-8601 like 2027-03-01T14:00:00Z" in flat(
        result.stderr
    )
