"""The report as one self-contained HTML page: inline CSS and SVG, no script, no network,
so it opens anywhere and can be mailed around."""

from __future__ import annotations

from html import escape
from typing import Any

from .text import period_label, rate_lines

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;
color:#1f2933;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 4px}
h3{font-size:15px;margin:18px 0 6px}.dim{color:#616e7c}
section{border-top:2px solid #e4e7eb;margin-top:20px;max-width:980px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{border:1px solid #cbd2d9;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:22px}.card span{font-size:12px;color:#616e7c}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;text-align:right;
border-bottom:1px solid #e4e7eb}td:first-child,th:first-child{text-align:left}
svg text{font:12px system-ui,sans-serif;fill:#1f2933}
"""
FUNNEL_COLOR = "#2680c2"
SENT_COLOR = "#2680c2"
REPLY_COLOR = "#3ebd93"


def html_page(report: dict[str, Any]) -> str:
    """The whole page, every value escaped."""
    body = [
        "<h1>pipectl report</h1>",
        f'<p class="dim">generated {escape(report["generated_at"])}; activity per'
        f" {escape(report['by'])}</p>",
    ]
    if not report["pipelines"]:
        body.append("<p>No pipelines yet.</p>")
    for entry in report["pipelines"]:
        body.append(_pipeline(entry, report["by"]))
    unmatched = [u for u in report["unmatched"] if any(v for k, v in u.items() if k != "account")]
    if unmatched:
        body.append("<section><h2>Replies that matched no lead</h2><table>")
        body.append(_row(["account", "replies", "auto-replies", "opt-outs", "bounces"], "th"))
        for u in unmatched:
            body.append(
                _row([u["account"], u["reply"], u["auto_reply"], u["opt_out"], u["bounce"]])
            )
        body.append("</table></section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>pipectl report</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _pipeline(e: dict[str, Any], by: str) -> str:
    out = [
        "<section>",
        f"<h2>{escape(e['name'])} <span class='dim'>({escape(e['account'])}/"
        f"{escape(e['pipeline'])})</span></h2>",
        f'<p class="dim">{escape(period_label(e))}</p>',
        '<div class="cards">',
        _card("leads enrolled", f"{e['enrolled']:,}", f"{e['queued']:,} queued now"),
        _card("won / lost", f"{e['won']:,} / {e['lost']:,}"),
    ]
    for label, value in rate_lines(e):
        figure, _, detail = value.partition(" ")
        out.append(_card(label, figure, detail.strip("()")))
    out.append("</div>")
    out.append("<h3>Funnel: leads that entered each stage</h3>")
    out.append(_funnel_svg(e["stages"]))
    out.append("<table>")
    out.append(_row(["stage", "entered", "in it now", "left", "went to", "ended"], "th"))
    for s in e["stages"]:
        went = ", ".join(f"{to} {n:,}" for to, n in s["left_for"].items()) or "-"
        name = s["stage"] + (f" ({s['outcome']})" if s["outcome"] else "")
        out.append(_row([name, s["entered"], s["in_stage_now"], s["left"], went, s["ended"]]))
    out.append("</table>")
    out.append("<h3>Sends</h3><table>")
    out.append(_row(["channel", "sent", "delivered", "bounced", "undelivered", "failed"], "th"))
    for channel, f in e["sends"].items():
        out.append(
            _row([channel, f["sent"], f["delivered"], f["bounced"], f["undelivered"], f["failed"]])
        )
    out.append("</table>")
    r = e["replies"]
    out.append("<h3>Replies</h3><table>")
    out.append(_row(["replies", "auto-replies", "opt-outs", "bounces", "soft bounces"], "th"))
    out.append(_row([r["reply"], r["auto_reply"], r["opt_out"], r["bounce"], r["soft_bounce"]]))
    out.append("</table>")
    if e["activity"]:
        out.append(f"<h3>Activity per {escape(by)}: sent and replies</h3>")
        out.append(_activity_svg(e["activity"]))
        out.append("<table>")
        keys = [k for k in e["activity"][0] if k != "period"]
        out.append(_row([by, *(k.replace("_", "-") for k in keys)], "th"))
        for row in e["activity"]:
            out.append(_row([row["period"], *(row[k] for k in keys)]))
        out.append("</table>")
    out.append("</section>")
    return "\n".join(out)


def _card(label: str, figure: str, detail: str = "") -> str:
    extra = f"<span>{escape(detail)}</span>" if detail else ""
    return f'<div class="card"><span>{escape(label)}</span><b>{escape(figure)}</b>{extra}</div>'


def _row(cells: list[Any], tag: str = "td") -> str:
    """A table row; counts with thousands separators."""
    text = [f"{c:,}" if isinstance(c, int) else str(c) for c in cells]
    return "<tr>" + "".join(f"<{tag}>{escape(t)}</{tag}>" for t in text) + "</tr>"


def _funnel_svg(stages: list[dict[str, Any]]) -> str:
    """Horizontal bars, one per stage, scaled to the stage most entered."""
    width, label_w, row_h = 720, 160, 26
    top = max((s["entered"] for s in stages), default=0) or 1
    height = row_h * len(stages) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' role="img" aria-label="funnel">'
    ]
    for i, s in enumerate(stages):
        y = 3 + i * row_h
        w = round((width - label_w - 70) * s["entered"] / top)
        parts.append(
            f'<text x="0" y="{y + 17}">{escape(s["stage"])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}"'
            f' fill="{FUNNEL_COLOR}" rx="2"/>'
            f'<text x="{label_w + w + 6}" y="{y + 17}">{s["entered"]:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _activity_svg(activity: list[dict[str, Any]]) -> str:
    """Sent and replies per bucket as pairs of columns, with a legend."""
    chart_h, bottom, left = 160, 40, 40
    slot = max(14, min(48, 860 // max(len(activity), 1)))
    width = left + slot * len(activity) + 40  # room for the last label
    top = max((max(r["sent"], r["replies"]) for r in activity), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{chart_h + bottom + 20}"'
        ' role="img" aria-label="activity">',
        f'<rect x="{left}" y="4" width="10" height="10" fill="{SENT_COLOR}"/>'
        f'<text x="{left + 14}" y="13">sent</text>'
        f'<rect x="{left + 60}" y="4" width="10" height="10" fill="{REPLY_COLOR}"/>'
        f'<text x="{left + 74}" y="13">replies</text>',
        f'<text x="0" y="{20 + 12}">{top:,}</text><text x="0" y="{20 + chart_h}">0</text>',
        f'<line x1="{left}" y1="{20 + chart_h}" x2="{width}" y2="{20 + chart_h}"'
        ' stroke="#9aa5b1"/>',
    ]
    bar = max(4, (slot - 6) // 2)
    for i, r in enumerate(activity):
        x = left + i * slot + 2
        for j, (value, color) in enumerate(((r["sent"], SENT_COLOR), (r["replies"], REPLY_COLOR))):
            h = round(chart_h * value / top)
            parts.append(
                f'<rect x="{x + j * bar}" y="{20 + chart_h - h}" width="{bar - 1}" height="{h}"'
                f' fill="{color}"><title>{escape(r["period"])}: {value}</title></rect>'
            )
        if len(activity) <= 16 or i % max(1, len(activity) // 8) == 0:
            parts.append(
                f'<text x="{x}" y="{20 + chart_h + 14}" font-size="10">'
                f"{escape(r['period'][5:])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
