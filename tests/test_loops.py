"""Leads never go round in circles: loops of stages are refused by validate, and a loop the
YAML cannot show (through on_failure) is stopped by the tick."""

from __future__ import annotations

from .conftest import rows
from .scenario import T0, setup, write_yaml

LOOP = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: a
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - move: b
      - key: b
        actions:
          - move: a
"""


def test_validate_refuses_stages_that_move_in_a_loop_with_no_wait(cli, tmp_path):
    path = write_yaml(tmp_path, LOOP)
    result = cli("validate", path)
    assert result.exit_code == 1
    line = path.read_text().splitlines().index("          - move: a") + 1
    assert f"{path}:{line}: pipeline 'drip': stages a -> b -> a move in a loop with no wait" in (
        result.stderr
    )


def test_a_loop_with_a_wait_is_a_sequence_and_is_accepted(cli, tmp_path):
    with_wait = LOOP.replace("          - move: a", "          - wait: 1d\n          - move: a")
    assert cli("validate", write_yaml(tmp_path, with_wait)).exit_code == 0


def test_an_on_failure_loop_is_stopped_by_the_tick(cli, db, tmp_path):
    pipeline = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: a
        on_failure: a
        actions:
          - sms: "Hi"
"""
    setup(cli, tmp_path, pipeline, {("acme", "drip"): 1})  # the leads have no phone
    result = cli("tick", "--now", T0, "--json")
    assert result.exit_code == 0
    entered = rows(db, "SELECT count(*) AS n FROM lead_stages")[0]["n"]
    assert entered == 20  # then it stops
    last = rows(db, "SELECT last_error FROM lead_stage_actions ORDER BY id DESC LIMIT 1")[0]
    assert "entered 20 stages within a minute" in last["last_error"]
    assert rows(db, "SELECT status FROM enrollments")[0]["status"] == "failed"


def test_leads_of_a_pipeline_removed_with_force_finish_on_its_stages(cli, db, tmp_path):
    pipeline = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: a
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - wait: 1h
          - move: done
      - {key: done, outcome: lost}
"""
    setup(cli, tmp_path, pipeline, {("acme", "drip"): 2})
    cli("tick", "--now", T0)
    other = pipeline.replace("key: drip", "key: other")
    assert cli("apply", write_yaml(tmp_path, other)).exit_code == 1  # leads are in it
    assert cli("apply", write_yaml(tmp_path, other), "--force").exit_code == 0
    cli("tick", "--now", "2027-03-01T15:00:00Z")
    states = rows(
        db,
        "SELECT e.status FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id "
        "WHERE p.key = 'drip'",
    )
    assert [s["status"] for s in states] == ["lost", "lost"]
