"""The report as CSV: one figure per row (long format), so a spreadsheet can pivot it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

HEADER = ("account", "pipeline", "since", "until", "section", "name", "figure", "value")


def csv_text(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows(report))
    return buffer.getvalue()


def rows(report: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """(account, pipeline, since, until, section, name, figure, value) for every figure;
    a rate with nothing to divide by is an empty cell."""
    for e in report["pipelines"]:
        head = (e["account"], e["pipeline"], e["period"]["since"] or "", e["period"]["until"] or "")
        for row in _pipeline_rows(e, report["by"]):
            yield (*head, *row)
    for u in report["unmatched"]:
        for kind, n in u.items():
            if kind != "account":
                yield (u["account"], "", "", "", "unmatched_replies", "", kind, n)


def _pipeline_rows(e: dict[str, Any], by: str) -> Iterator[tuple[Any, ...]]:
    """(section, name, figure, value) for one pipeline."""
    yield ("pipeline", "", "enrolled", e["enrolled"])
    yield ("pipeline", "", "queued", e["queued"])
    for s in e["stages"]:
        for figure in ("entered", "in_stage_now", "left", "ended"):
            yield ("stage", s["stage"], figure, s[figure])
        for to, n in s["left_for"].items():
            yield ("stage", s["stage"], f"left_for:{to}", n)
    for channel, figures in e["sends"].items():
        for figure, n in figures.items():
            yield ("sends", channel, figure, n)
    for kind, n in e["replies"].items():
        yield ("replies", "", kind, n)
    for figure, n in e["leads"].items():
        yield ("leads", "", figure, n)
    yield ("outcomes", "", "won", e["won"])
    yield ("outcomes", "", "lost", e["lost"])
    for rate, value in e["rates"].items():
        yield ("rates", "", rate, "" if value is None else value)
    for row in e["activity"]:
        for figure, n in row.items():
            if figure != "period":
                yield (f"activity_{by}", row["period"], figure, n)
