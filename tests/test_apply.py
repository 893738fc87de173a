"""pipectl apply: one transaction, a plan, idempotence, removals and the snapshot promise."""

from __future__ import annotations

import email
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from pipectl.errors import NotFound
from pipectl.store import Store

from .conftest import dump, rows
from .scenario import ONE_EMAIL, T0, outbox, write_csv, write_yaml

ROOT = Path(__file__).resolve().parent.parent
FOLLOW_UP_SMS = '- sms: "Hi {{ lead.first_name }}, did you see our email?"'


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """pipelines.example.yaml and its templates copied to the working directory."""
    shutil.copytree(ROOT / "examples" / "templates", tmp_path / "examples" / "templates")
    path = tmp_path / "pipelines.yaml"
    shutil.copy(ROOT / "pipelines.example.yaml", path)
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def plan_of(result) -> dict[tuple[str, str], str]:
    assert result.exit_code == 0, result.stderr
    return {(c["kind"], c["key"]): c["change"] for c in json.loads(result.stdout)["changes"]}


def put_lead_in_stage(db: Path, pipeline: str, stage: str, status: str = "active") -> int:
    """A lead that entered `stage`, with its snapshot copied, as the scheduler would leave it."""
    conn = sqlite3.connect(db)
    now = "2027-03-01T14:00:00Z"
    with conn:
        pipeline_id, account_id = conn.execute(
            "SELECT id, account_id FROM pipelines WHERE key = ?", (pipeline,)
        ).fetchone()
        (stage_id,) = conn.execute(
            "SELECT id FROM pipeline_stages WHERE pipeline_id = ? AND key = ?", (pipeline_id, stage)
        ).fetchone()
        lead_id = conn.execute(
            "INSERT INTO leads (account_id, email, first_name, created_at, updated_at)"
            " VALUES (?, ?, 'Ann', ?, ?)",
            (account_id, f"ann-{stage}@example.com", now, now),
        ).lastrowid
        enrollment_id = conn.execute(
            "INSERT INTO enrollments (lead_id, pipeline_id, account_id, entry_stage_id, status,"
            " queued_at) VALUES (?, ?, ?, ?, ?, ?)",
            (lead_id, pipeline_id, account_id, stage_id, status, now),
        ).lastrowid
        if status == "active":
            lead_stage_id = conn.execute(
                "INSERT INTO lead_stages (lead_id, enrollment_id, pipeline_stage_id, entered_at)"
                " VALUES (?, ?, ?, ?)",
                (lead_id, enrollment_id, stage_id, now),
            ).lastrowid
            conn.execute(
                "INSERT INTO lead_stage_actions (lead_stage_id, lead_id, account_id,"
                " enrollment_id, sequence_number, type, channel, params, status, perform_at)"
                " SELECT ?, ?, ?, ?, sequence_number, type, 'internal', params, 'pending', ?"
                " FROM pipeline_stage_actions WHERE pipeline_stage_id = ?",
                (lead_stage_id, lead_id, account_id, enrollment_id, now, stage_id),
            )
    conn.close()
    return lead_id


def test_example_applies_and_prints_the_plan(cli, db, example):
    result = cli("apply")
    assert result.exit_code == 0, result.stderr
    assert "+ pipeline adwords: created" in result.stdout
    assert "+ stage adwords/follow-up: created" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "applied pipelines.yaml: 15 created, 0 changed, 0 unchanged, 0 removed"
    )
    assert rows(db, "SELECT key, name, timezone, country, active_leads, rates FROM accounts") == [
        {
            "key": "acme",
            "name": "Acme Roofing",
            "timezone": "America/New_York",
            "country": "US",
            "active_leads": 2000,
            "rates": '{"all":[30,60],"email":[200,3600],"sms":[60,3600]}',
        },
        {
            "key": "globex",
            "name": "Globex Solar",
            "timezone": "Europe/London",
            "country": "GB",
            "active_leads": 500,
            "rates": '{"email":[100,3600],"sms":[30,3600]}',
        },
    ]
    stages = rows(
        db,
        "SELECT s.key, s.name, s.position, s.outcome FROM pipeline_stages s"
        " JOIN pipelines p ON p.id = s.pipeline_id WHERE p.key = 'adwords' ORDER BY position",
    )
    assert [(s["key"], s["name"], s["position"], s["outcome"]) for s in stages] == [
        ("inquired", "Inquired", 1, None),
        ("follow-up", "Follow up", 2, None),
        ("responded", "Responded", 3, None),
        ("won", "Won", 4, "won"),
        ("lost", "Lost", 5, "lost"),
    ]
    actions = rows(
        db,
        "SELECT a.sequence_number, a.type, a.params FROM pipeline_stage_actions a"
        " JOIN pipeline_stages s ON s.id = a.pipeline_stage_id WHERE s.key = 'inquired'"
        " ORDER BY a.sequence_number",
    )
    assert [(a["sequence_number"], a["type"]) for a in actions] == [
        (1, "email"),
        (2, "wait_for_reply"),
    ]
    intro = (ROOT / "examples" / "templates" / "intro.txt").read_text()
    assert json.loads(actions[0]["params"])["body"] == intro
    assert json.loads(actions[1]["params"]) == {
        "timeout": 172800,
        "on_reply": None,
        "on_timeout": "follow-up",
        "on_failure": "stop",
    }
    assert rows(db, "SELECT count(*) AS n FROM pipeline_stage_actions") == [{"n": 18}]


def test_second_apply_reports_nothing_changed_and_writes_nothing(cli, db, example):
    assert cli("apply").exit_code == 0
    before = dump(db)
    result = cli("apply")
    assert result.exit_code == 0
    assert result.stdout == (
        "pipelines.yaml: nothing changed (2 accounts, 2 pipelines, 11 stages, 18 actions)\n"
    )
    assert set(plan_of(cli("apply", "--json")).values()) == {"unchanged"}
    assert dump(db) == before


def test_changed_action_reports_its_stage_changed(cli, db, example):
    cli("apply")
    edit(
        example,
        "          - wait: 1d\n          - move: lost",
        "          - wait: 2d\n          - move: lost",
    )
    plan = plan_of(cli("apply", "--json"))
    assert plan[("stage", "adwords/follow-up")] == "changed"
    assert [k for k, v in plan.items() if v != "unchanged"] == [("stage", "adwords/follow-up")]
    params = rows(
        db,
        "SELECT a.params FROM pipeline_stage_actions a JOIN pipeline_stages s"
        " ON s.id = a.pipeline_stage_id WHERE s.key = 'follow-up' AND a.type = 'wait'",
    )
    assert json.loads(params[0]["params"])["seconds"] == 172800


def test_changed_account_and_renamed_stage_show_what_changed(cli, example):
    cli("apply")
    edit(example, "active_leads: 2000", "active_leads: 3000")
    edit(example, "        name: Inquired\n", "        name: New inquiry\n")
    result = cli("apply")
    assert "~ account acme: changed (active_leads)" in result.stdout
    assert "~ stage adwords/inquired: changed (name)" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "applied pipelines.yaml: 0 created, 2 changed, 13 unchanged, 0 removed"
    )


def test_dry_run_prints_the_plan_and_writes_nothing(cli, db, example):
    cli("init")
    before = dump(db)
    result = cli("apply", "--dry-run")
    assert result.exit_code == 0
    assert "+ pipeline solar-webinar: created" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("dry run, nothing written: would apply")
    assert dump(db) == before


def test_removing_a_stage_with_leads_is_refused_unless_forced(cli, db, example):
    cli("apply")
    put_lead_in_stage(db, "adwords", "follow-up")
    snapshot = rows(db, "SELECT * FROM lead_stage_actions")
    edit(example, "on_timeout: follow-up}", "on_timeout: lost}")
    edit(
        example,
        "      - key: follow-up\n        actions:\n          " + FOLLOW_UP_SMS,
        "      - key: gone\n        actions:\n          " + FOLLOW_UP_SMS,
    )
    before = dump(db)

    refused = cli("apply")
    assert refused.exit_code == 1
    assert "stage 'adwords/follow-up' (1 lead in it)" in refused.stderr
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.output
    assert dump(db) == before

    forced = cli("apply", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "- stage adwords/follow-up: removed (kept as removed" in forced.stdout
    stage = rows(db, "SELECT removed_at FROM pipeline_stages WHERE key = 'follow-up'")
    assert stage[0]["removed_at"] is not None
    assert rows(db, "SELECT * FROM lead_stage_actions") == snapshot
    assert plan_of(cli("apply", "--json"))[("stage", "adwords/gone")] == "unchanged"


def test_queued_enrollment_into_a_stage_blocks_its_removal(cli, db, example):
    cli("apply")
    put_lead_in_stage(db, "adwords", "won", status="queued")
    example.write_text(example.read_text().replace("      - {key: won, outcome: won}\n", "", 1))
    result = cli("apply")
    assert result.exit_code == 1
    assert "stage 'adwords/won' (1 lead in it)" in result.stderr


def test_removing_an_unreferenced_stage_deletes_it(cli, db, example):
    cli("apply")
    example.write_text(example.read_text().replace("      - {key: won, outcome: won}\n", "", 1))
    result = cli("apply")
    assert result.exit_code == 0, result.stderr
    assert "- stage adwords/won: removed\n" in result.stdout
    keys = rows(
        db,
        "SELECT s.key FROM pipeline_stages s JOIN pipelines p ON p.id = s.pipeline_id"
        " WHERE p.key = 'adwords' ORDER BY position",
    )
    assert [k["key"] for k in keys] == ["inquired", "follow-up", "responded", "lost"]


def test_leads_keep_their_snapshot_when_the_yaml_changes(cli, db, example):
    cli("apply")
    put_lead_in_stage(db, "adwords", "follow-up")
    snapshot = rows(db, "SELECT * FROM lead_stage_actions ORDER BY id")
    assert "did you see our email?" in snapshot[0]["params"]

    edit(example, "did you see our email?", "are you still interested?")
    plan = plan_of(cli("apply", "--json"))

    assert plan[("stage", "adwords/follow-up")] == "changed"
    current = rows(
        db,
        "SELECT a.params FROM pipeline_stage_actions a JOIN pipeline_stages s"
        " ON s.id = a.pipeline_stage_id WHERE s.key = 'follow-up' AND a.type = 'sms'",
    )
    assert "are you still interested?" in current[0]["params"]
    assert rows(db, "SELECT * FROM lead_stage_actions ORDER BY id") == snapshot


def test_removing_a_pipeline_with_leads_then_restoring_it(cli, db, example):
    cli("apply")
    put_lead_in_stage(db, "solar-webinar", "registered")
    text = example.read_text()
    example.write_text(text[: text.index("  - key: solar-webinar")])

    refused = cli("apply")
    assert refused.exit_code == 1
    assert "pipeline 'solar-webinar' (1 lead in it)" in refused.stderr

    forced = plan_of(cli("apply", "--force", "--json"))
    assert forced[("pipeline", "solar-webinar")] == "removed"
    removed = rows(db, "SELECT removed_at FROM pipelines WHERE key = 'solar-webinar'")
    assert removed[0]["removed_at"] is not None
    with pytest.raises(NotFound, match="known pipelines: adwords$"):
        Store(db).config.pipeline_by_key("solar-webinar")

    example.write_text(text)
    restored = plan_of(cli("apply", "--json"))
    assert restored[("pipeline", "solar-webinar")] == "created"
    assert rows(db, "SELECT removed_at FROM pipelines WHERE key = 'solar-webinar'") == [
        {"removed_at": None}
    ]
    assert Store(db).config.pipeline_by_key("solar-webinar")["name"] == "Solar Savings Webinar"


def test_removing_an_unused_pipeline_and_account_deletes_them(cli, db, example):
    cli("apply")
    text = example.read_text()
    text = text[: text.index("  - key: solar-webinar")]
    text = text[: text.index("  - key: globex")] + text[text.index("# Defaults") :]
    example.write_text(text)
    plan = plan_of(cli("apply", "--json"))
    assert plan[("pipeline", "solar-webinar")] == "removed"
    assert plan[("account", "globex")] == "removed"
    assert rows(db, "SELECT key FROM accounts") == [{"key": "acme"}]
    assert rows(db, "SELECT count(*) AS n FROM pipeline_stages") == [{"n": 5}]


def test_lookups_name_the_known_keys(cli, db, example):
    store = Store(db)
    with pytest.raises(NotFound, match="no accounts yet"):
        store.config.account_by_key("acme")
    cli("apply")
    assert store.config.account_by_key("globex")["name"] == "Globex Solar"
    with pytest.raises(NotFound, match="no account 'acne'; known accounts: acme, globex"):
        store.config.account_by_key("acne")
    pipeline = store.config.pipeline_by_key("adwords")
    assert store.config.stage_by_key(pipeline["id"], "follow-up")["position"] == 2
    with pytest.raises(NotFound, match="stages: inquired, follow-up, responded, won, lost"):
        store.config.stage_by_key(pipeline["id"], "closed")


def test_literal_secret_is_refused_and_nothing_is_written(cli, db, example):
    cli("apply")
    before = dump(db)
    edit(
        example,
        '    transport: outbox\n    from: "Acme',
        '    transport: outbox\n    password: hunter2\n    from: "Acme',
    )
    result = cli("apply")
    assert result.exit_code == 1
    assert "pipelines.yaml:37: channels.email.password must be an environment reference" in (
        result.stderr
    )
    assert "hunter2" not in result.output
    assert dump(db) == before


def test_account_with_leads_is_kept_for_them_and_reported_removed_once(cli, db, example):
    cli("apply")
    put_lead_in_stage(db, "solar-webinar", "registered")
    text = example.read_text()
    text = text[: text.index("  - key: solar-webinar")]
    example.write_text(text[: text.index("  - key: globex")] + text[text.index("# Defaults") :])

    assert cli("apply").exit_code == 1
    forced = cli("apply", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "- account globex: removed (row kept for 1 lead)" in forced.stdout
    assert [r["key"] for r in rows(db, "SELECT key FROM accounts ORDER BY key")] == [
        "acme",
        "globex",
    ]
    again = cli("apply")
    assert again.exit_code == 0
    assert "nothing changed" in again.stdout


# Acme admits one lead at a time; each lead gets two emails a day apart.
TWO_EMAILS = """\
  - key: drip
    account: {account}
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {{subject: "Hi {{{{ lead.first_name }}}}", body: "Hello"}}
          - wait: 1d
          - email: {{subject: "Again", body: "Still there?"}}
          - move: won
      - {{key: won, outcome: won}}
"""


def test_forced_removal_of_a_pipeline_or_account_never_starts_its_queued_leads(cli, db, tmp_path):
    yaml = write_yaml(
        tmp_path,
        TWO_EMAILS.format(account="acme")
        + TWO_EMAILS.format(account="beta").replace("key: drip", "key: beta-drip"),
        acme_extra="    limits: {active_leads: 1}",
    )
    assert cli("apply", yaml).exit_code == 0
    acme = write_csv(tmp_path, "acme.csv", 2, domain="acme.example")
    assert cli("leads", "import", acme, "--account", "acme", "--pipeline", "drip").exit_code == 0
    assert cli("tick", "--now", T0).exit_code == 0  # lead0 starts; lead1 waits for room
    beta = write_csv(tmp_path, "beta.csv", 2, domain="beta.example")
    assert (
        cli("leads", "import", beta, "--account", "beta", "--pipeline", "beta-drip").exit_code == 0
    )
    assert len(outbox(tmp_path)) == 1

    # The acme pipeline and the whole beta account leave the YAML.
    text = yaml.read_text()
    text = text.replace(text[text.index("  - key: beta") : text.index("channels:")], "")
    yaml.write_text(text[: text.index("pipelines:")] + "pipelines: []\n")
    before = dump(db)
    dry = cli("apply", yaml, "--force", "--dry-run")
    assert (
        "- pipeline drip: removed (kept as removed: leads' history refers to it;"
        " 1 lead queued for it will not start (stopped);"
        " 1 lead in it finishes with the actions they entered with)" in dry.stdout
    ), dry.output
    assert (
        "- pipeline beta-drip: removed (kept as removed: leads' history refers to it;"
        " 2 leads queued for it will not start (stopped))" in dry.stdout
    )
    assert dump(db) == before
    forced = cli("apply", yaml, "--force")
    assert forced.exit_code == 0, forced.output
    assert "2 leads queued for it will not start (stopped)" in forced.stdout

    for now in ("2027-03-02T14:00:05Z", "2027-03-02T14:01:00Z", "2027-03-03T14:01:00Z"):
        assert cli("tick", "--now", now).exit_code == 0
    sent = [
        (m["To"], m["Subject"])
        for m in (email.message_from_bytes(p.read_bytes()) for p in outbox(tmp_path))
    ]
    # The lead already in the removed pipeline finishes with the actions it entered with;
    # the queued ones never start.
    assert sorted(sent) == [("lead0@acme.example", "Again"), ("lead0@acme.example", "Hi Lead0")]
    assert rows(db, "SELECT email, status FROM leads ORDER BY email") == [
        {"email": "lead0@acme.example", "status": "won"},
        {"email": "lead0@beta.example", "status": "stopped"},
        {"email": "lead1@acme.example", "status": "stopped"},
        {"email": "lead1@beta.example", "status": "stopped"},
    ]


def test_queued_leads_into_a_removed_stage_or_left_by_an_older_apply_never_start(cli, db, tmp_path):
    two_stages = TWO_EMAILS.format(account="acme").replace(
        "      - {key: won", "      - key: later\n        actions: [{move: won}]\n      - {key: won"
    )
    yaml = write_yaml(tmp_path, two_stages + ONE_EMAIL.replace("key: drip", "key: other"))
    assert cli("apply", yaml).exit_code == 0
    csv = write_csv(tmp_path, "leads.csv", 1)
    imports = (("drip", "--stage", "later"), ("other",))
    for pipeline, *stage in imports:
        args = ("--account", "acme", "--pipeline", pipeline, *stage)
        assert cli("leads", "import", csv, *args).exit_code == 0

    yaml.write_text(
        yaml.read_text().replace("      - key: later\n        actions: [{move: won}]\n", "")
    )
    forced = cli("apply", yaml, "--force")
    assert (
        "- stage drip/later: removed (kept as removed: leads' history refers to it;"
        " 1 lead queued for it will not start (stopped))" in forced.stdout
    ), forced.output
    # A database where an earlier version's `apply --force` left a queued run in a removed
    # pipeline: the tick ends it instead of starting it.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE pipelines SET removed_at = ? WHERE key = 'other'", (T0,))
    conn.close()
    tick = cli("tick", "--now", T0)
    assert tick.exit_code == 0, tick.output
    assert outbox(tmp_path) == []
    assert rows(db, "SELECT status FROM enrollments ORDER BY id") == [
        {"status": "stopped"},
        {"status": "stopped"},
    ]
    assert rows(db, "SELECT count(*) AS n FROM lead_stages") == [{"n": 0}]


def test_dry_run_that_would_remove_a_stage_with_leads_shows_the_plan_then_refuses(cli, db, example):
    cli("apply")
    put_lead_in_stage(db, "adwords", "follow-up")
    put_lead_in_stage(db, "solar-webinar", "registered")
    edit(example, "on_timeout: follow-up}", "on_timeout: lost}")
    edit(
        example,
        "      - key: follow-up\n        actions:\n          " + FOLLOW_UP_SMS,
        "      - key: gone\n        actions:\n          " + FOLLOW_UP_SMS,
    )
    text = example.read_text()
    example.write_text(text[: text.index("  - key: solar-webinar")])
    before = dump(db)

    result = cli("apply", "--dry-run")
    assert result.exit_code == 1
    assert "  + stage adwords/gone: created" in result.stdout
    assert "  - stage adwords/follow-up: removed (kept as removed" in result.stdout
    assert "  - pipeline solar-webinar: removed (refused: 1 lead in it)" in result.stdout
    assert "dry run, nothing written: would apply" in result.stdout
    assert "stage 'adwords/follow-up' (1 lead in it)" in result.stderr
    assert "pipeline 'solar-webinar' (1 lead in it)" in result.stderr
    assert "--force" in result.stderr and "Traceback" not in result.output

    as_json = cli("apply", "--dry-run", "--json")
    assert as_json.exit_code == 1
    plan = json.loads(as_json.stdout)
    assert plan["dry_run"] is True and len(plan["refused"]) == 2
    assert {"kind": "stage", "key": "adwords/gone", "change": "created", "detail": ""} in (
        plan["changes"]
    )
    assert dump(db) == before
