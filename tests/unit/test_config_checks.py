"""The whole-pipeline checks on a finished Config, built by hand: no YAML, no files."""

from __future__ import annotations

from pathlib import Path

from pipectl.config import Action, Config, Pipeline, Stage
from pipectl.config.checks import check, check_loops, check_references


def move(target: str, line: int) -> Action:
    return Action("move", {"stage": target, "on_failure": "stop"}, line, {"stage": line})


def wait(line: int) -> Action:
    return Action("wait", {"seconds": 60, "on_failure": "stop"}, line)


def reply_wait(line: int, **targets: str) -> Action:
    params = {"timeout": 60, "on_reply": None, "on_timeout": None, **targets}
    return Action("wait_for_reply", params, line, {name: line + 1 for name in targets})


def pipeline(*stages: Stage, **options: object) -> Pipeline:
    return Pipeline(key="p", account="acme", name="P", stages=stages, **options)  # type: ignore[arg-type]


def test_a_move_to_a_missing_stage_names_the_stages_there_are_at_its_line():
    p = pipeline(Stage("a", "A", actions=(move("nowhere", 7),)), Stage("b", "B"))
    assert check_references(p) == [
        (7, "pipeline 'p' stage 'a' move: no stage 'nowhere' in this pipeline; use one of: a, b")
    ]


def test_on_failure_may_say_stop_or_continue_but_on_reply_may_not():
    p = pipeline(
        Stage("a", "A", on_failure="continue", lines={"on_failure": 4}),
        on_failure="stop",
        on_reply="stop",
        lines={"on_failure": 2, "on_reply": 3},
    )
    assert check_references(p) == [
        (3, "pipeline 'p' on_reply: no stage 'stop' in this pipeline; use one of: a")
    ]


def test_wait_for_reply_targets_are_checked_at_their_own_lines():
    p = pipeline(Stage("a", "A", actions=(reply_wait(10, on_reply="a", on_timeout="gone"),)))
    assert check_references(p) == [
        (
            11,
            "pipeline 'p' stage 'a' wait_for_reply on_timeout: no stage 'gone' in this pipeline;"
            " use one of: a",
        )
    ]


def test_stages_moving_to_each_other_with_no_wait_are_one_loop_at_the_closing_move():
    p = pipeline(
        Stage("a", "A", actions=(move("b", 5),)),
        Stage("b", "B", actions=(move("c", 8),)),
        Stage("c", "C", actions=(move("a", 11),)),
    )
    assert check_loops(p) == [
        (11, "pipeline 'p': stages a -> b -> c -> a move in a loop with no wait; add a wait")
    ]


def test_a_wait_before_the_move_breaks_the_loop():
    p = pipeline(
        Stage("a", "A", actions=(move("b", 5),)),
        Stage("b", "B", actions=(wait(8), move("a", 9))),
    )
    assert check_loops(p) == []


def test_a_stage_moving_to_itself_at_once_is_a_loop():
    p = pipeline(Stage("a", "A", actions=(move("a", 3),)))
    assert check_loops(p) == [
        (3, "pipeline 'p': stages a -> a move in a loop with no wait; add a wait")
    ]


def test_check_covers_every_pipeline_of_the_config():
    bad = pipeline(Stage("a", "A", actions=(move("x", 4),)))
    good = Pipeline(key="q", account="acme", name="Q", stages=(Stage("a", "A"),))
    config = Config(path=Path("p.yaml"), pipelines=(good, bad))
    assert [line for line, _ in check(config)] == [4]
