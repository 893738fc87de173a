"""Checks that need a whole pipeline: every stage reference names a stage, and no stages move
a lead round in a loop. They run on the finished Config, after reading, so each reads alone."""

from __future__ import annotations

from collections.abc import Iterator

from .model import Config, Pipeline

Problem = tuple[int, str]  # (line, message)
WAITS = ("wait", "wait_for_reply")


def check(config: Config) -> list[Problem]:
    """Every problem of every pipeline: references first, then loops, pipeline by pipeline."""
    problems: list[Problem] = []
    for pipeline in config.pipelines:
        problems += check_references(pipeline)
        problems += check_loops(pipeline)
    return problems


def references(pipeline: Pipeline) -> Iterator[tuple[int, str, str, bool]]:
    """Each stage reference as (line, target, what, whether stop/continue are allowed)."""
    what = f"pipeline '{pipeline.key}'"
    if "on_failure" in pipeline.lines:
        yield pipeline.lines["on_failure"], pipeline.on_failure, f"{what} on_failure", True
    if pipeline.on_reply is not None:
        yield pipeline.lines["on_reply"], pipeline.on_reply, f"{what} on_reply", False
    for stage in pipeline.stages:
        stage_what = f"{what} stage '{stage.key}'"
        if stage.on_failure is not None:
            yield stage.lines["on_failure"], stage.on_failure, f"{stage_what} on_failure", True
        for action in stage.actions:
            if action.type == "wait_for_reply":
                for name in ("on_reply", "on_timeout"):
                    target = action.params.get(name)
                    if target is not None:
                        line = action.lines.get(name, action.line)
                        yield line, target, f"{stage_what} wait_for_reply {name}", False
            elif action.type == "move" and action.params.get("stage") is not None:
                line = action.lines.get("stage", action.line)
                yield line, action.params["stage"], f"{stage_what} move", False


def check_references(pipeline: Pipeline) -> list[Problem]:
    """`on_failure`, `on_reply`, `on_timeout` and `move` name a stage of this pipeline."""
    stage_keys = {s.key for s in pipeline.stages}
    problems = []
    for line, target, what, allow_stop in references(pipeline):
        if target in stage_keys or (allow_stop and target in ("stop", "continue")):
            continue
        choices = (["stop", "continue"] if allow_stop else []) + sorted(stage_keys)
        problems.append(
            (
                line,
                f"{what}: no stage '{target}' in this pipeline; use one of: {', '.join(choices)}",
            )
        )
    return problems


def check_loops(pipeline: Pipeline) -> list[Problem]:
    """Stages that move to each other with no wait between them would send a lead round
    and round within one tick: each such loop is a problem at the move that closes it."""
    instant: dict[str, tuple[str, int]] = {}  # stage -> (target, line) of its first move
    for stage in pipeline.stages:
        for action in stage.actions:
            if action.type in WAITS:
                break
            if action.type == "move":
                instant[stage.key] = (action.params["stage"], action.line)
                break
    problems: list[Problem] = []
    reported: set[str] = set()
    for start in instant:
        path, key = [start], start
        while key in instant and instant[key][0] not in path:
            key = instant[key][0]
            path.append(key)
        target, line = instant.get(key, ("", 0))
        if key in instant and target == start and not reported & set(path):
            reported |= set(path)
            loop = " -> ".join([*path, start])
            problems.append(
                (line, f"pipeline '{pipeline.key}': stages {loop} move in a loop with no wait;"
                 " add a wait")
            )  # fmt: skip
    return problems
