"""`pipectl report` over a database built by real ticks and replies, checked figure by figure.

The campaign (account time zone America/New_York, T0 = 2027-03-01T14:00Z, 09:00 there):
six leads get the intro email at T0; l1 replies at T0+2h (moves to responded, then won),
l2 texts STOP at 2027-03-02T03:00Z (22:00 on 03-01 in New York); at 03-03 15:00Z the other
four time out into follow-up: three texts go out, l5 has no phone and fails; at 03-04 16:00Z
the three are moved to lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .conftest import dump, rows

ROOT = Path(__file__).resolve().parent.parent
YAML = """\
version: 1
accounts:
  - {key: acme, name: Acme Roofing, timezone: America/New_York, country: US}
  - {key: beta, name: Beta Solar, timezone: UTC, country: US}
channels:
  email: {transport: outbox, from: "Acme Sales <sales@acme.example>"}
  sms: {transport: outbox, from: "+15550100000"}
pipelines:
  - key: drip
    account: acme
    name: Spring <Drip> & Co
    on_reply: responded
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - wait_for_reply: {timeout: 2d, on_timeout: follow-up}
      - key: follow-up
        actions:
          - sms: "Did you see our email?"
          - wait: 1d
          - move: lost
      - key: responded
        actions:
          - wait: 1h
          - move: won
      - {key: won, outcome: won}
      - {key: lost, outcome: lost}
  - key: quiet
    account: beta
    name: Quiet
    stages:
      - key: only
        actions:
          - email: {subject: "Hi", body: "Hello"}
  - key: texts
    account: beta
    name: Text first
    stages:
      - key: only
        actions:
          - sms: "Hi"
          - email: {subject: "Hi", body: "Hello"}
          - sms: "Bye"
"""
LEADS = """\
Email,First Name,Phone
l0@x.example,L0,+12125550100
l1@x.example,L1,+12125550101
l2@x.example,L2,+12125550102
l3@x.example,L3,+12125550103
l4@x.example,L4,+12125550104
l5@x.example,L5,
"""


@pytest.fixture
def campaign(cli, tmp_path: Path):
    """The campaign above, run through apply, import, tick, reply, tick, tick."""
    (tmp_path / "pipelines.yaml").write_text(YAML, encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    steps = [
        ("apply", "pipelines.yaml"),
        ("leads", "import", "leads.csv", "--account", "acme", "--pipeline", "drip"),
        ("tick", "--now", "2027-03-01T14:00:00Z"),
        ("reply", "--account", "acme", "--email", "l1@x.example", "--body", "Yes please",
         "--at", "2027-03-01T16:00:00Z"),
        ("reply", "--account", "acme", "--phone", "+12125550102", "--channel", "sms",
         "--body", "STOP", "--at", "2027-03-02T03:00:00Z"),
        ("tick", "--now", "2027-03-03T15:00:00Z"),
        ("tick", "--now", "2027-03-04T16:00:00Z"),
    ]  # fmt: skip
    for step in steps:
        result = cli(*step)
        assert result.exit_code == 0, (step, result.output)
    return cli


def report_json(cli, *args: str) -> dict:
    result = cli("report", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_report_json_has_every_figure_of_the_campaign(campaign) -> None:
    report = report_json(campaign, "--pipeline", "drip")
    (p,) = report["pipelines"]
    assert (p["account"], p["pipeline"], p["name"]) == ("acme", "drip", "Spring <Drip> & Co")
    assert p["period"] == {"since": None, "until": None, "timezone": "America/New_York"}
    assert p["enrolled"] == 6
    assert p["queued"] == 0
    stages = {s["stage"]: s for s in p["stages"]}
    assert list(stages) == ["intro", "follow-up", "responded", "won", "lost"]
    assert {k: stages["intro"][k] for k in ("entered", "in_stage_now", "left", "ended")} == {
        "entered": 6,
        "in_stage_now": 0,
        "left": 6,
        "ended": 1,  # l2 opted out
    }
    assert stages["intro"]["left_for"] == {"follow-up": 4, "responded": 1}
    assert stages["follow-up"]["left_for"] == {"lost": 3}
    assert (stages["follow-up"]["entered"], stages["follow-up"]["ended"]) == (4, 1)  # l5 failed
    assert stages["responded"]["left_for"] == {"won": 1}
    assert (stages["won"]["entered"], stages["won"]["in_stage_now"]) == (1, 1)
    assert (stages["lost"]["entered"], stages["lost"]["in_stage_now"]) == (3, 3)
    zero = {"delivered": 0, "bounced": 0, "undelivered": 0}
    assert p["sends"] == {
        "email": {"sent": 6, **zero, "failed": 0},
        "sms": {"sent": 3, **zero, "failed": 1},
    }
    assert p["replies"] == {
        "reply": 1,
        "auto_reply": 0,
        "opt_out": 1,
        "bounce": 0,
        "soft_bounce": 0,
    }
    assert p["leads"] == {"emailed": 6, "contacted": 6, "replied": 1, "opted_out": 1}
    assert (p["won"], p["lost"]) == (1, 3)
    assert p["rates"] == {
        "reply_rate": 0.1667,
        "bounce_rate": 0.0,
        "opt_out_rate": 0.1667,
        "win_rate": 0.25,
    }
    # Days in New York: the STOP at 03:00Z on 03-02 is the evening of 03-01 there.
    day = {a["period"]: a for a in p["activity"]}
    assert list(day) == ["2027-03-01", "2027-03-02", "2027-03-03", "2027-03-04"]
    assert day["2027-03-01"] == {
        "period": "2027-03-01",
        "enrolled": 6,
        "sent": 6,
        "replies": 1,
        "opt_outs": 1,
        "bounced": 0,
        "failed": 0,
        "won": 0,
        "lost": 0,
    }
    assert not any(v for k, v in day["2027-03-02"].items() if k != "period")
    assert (day["2027-03-03"]["sent"], day["2027-03-03"]["failed"]) == (3, 1)
    assert (day["2027-03-03"]["won"], day["2027-03-04"]["lost"]) == (1, 3)


def test_report_of_a_period_counts_only_what_happened_in_it(campaign) -> None:
    # 2027-03-03 in New York: 05:00Z on 03-03 to 05:00Z on 03-04.
    (p,) = report_json(campaign, "--pipeline", "drip", "--since", "2027-03-03", "--until",
                       "2027-03-03")["pipelines"]  # fmt: skip
    assert p["period"] == {
        "since": "2027-03-03T05:00:00Z",
        "until": "2027-03-04T05:00:00Z",
        "timezone": "America/New_York",
    }
    assert p["enrolled"] == 0
    assert p["sends"]["email"]["sent"] == 0
    assert (p["sends"]["sms"]["sent"], p["sends"]["sms"]["failed"]) == (3, 1)
    stages = {s["stage"]: s for s in p["stages"]}
    assert (stages["intro"]["entered"], stages["intro"]["left_for"]) == (0, {"follow-up": 4})
    assert (stages["follow-up"]["entered"], stages["follow-up"]["ended"]) == (4, 1)
    assert (p["won"], p["lost"]) == (1, 0)
    # Nothing emailed, nobody contacted first in the period: no rate, not 0%.
    assert p["rates"] == {
        "reply_rate": None,
        "bounce_rate": 0.0,
        "opt_out_rate": None,
        "win_rate": 1.0,
    }
    assert [a["period"] for a in p["activity"]] == ["2027-03-03"]
    # A time is taken as given (UTC): from the STOP on, in UTC days it is 03-02.
    (q,) = report_json(campaign, "--pipeline", "drip", "--since", "2027-03-02T03:00:00Z",
                       "--until", "2027-03-02T04:00:00Z")["pipelines"]  # fmt: skip
    assert (q["replies"]["opt_out"], q["leads"]["opted_out"], q["enrolled"]) == (1, 1, 0)


def test_report_by_week_buckets_weeks_from_monday(campaign) -> None:
    (p,) = report_json(campaign, "--pipeline", "drip", "--by", "week")["pipelines"]
    (week,) = p["activity"]  # 2027-03-01 is a Monday; the whole campaign is one week
    assert week["period"] == "2027-03-01"
    assert (week["enrolled"], week["sent"], week["won"], week["lost"]) == (6, 9, 1, 3)


def test_report_lists_every_pipeline_and_counts_unmatched_replies_apart(campaign, db: Path) -> None:
    # What the inbound sync records for a message that matched no lead (lead_id empty).
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO replies (account_id, lead_id, channel, sender, kind, body, received_at,"
            " source, created_at) VALUES (1, NULL, 'email', 'who@else.example', 'reply', 'hi',"
            " '2027-03-02T12:00:00Z', 'imap', '2027-03-02T12:00:00Z')"
        )
    conn.close()
    (Path(os.getcwd()) / "quiet.csv").write_text("Email\nq1@x.example\nq2@x.example\n")
    imported = campaign("leads", "import", "quiet.csv", "--account", "beta", "--pipeline", "quiet")
    assert imported.exit_code == 0, imported.output
    report = report_json(campaign)
    assert [p["pipeline"] for p in report["pipelines"]] == ["drip", "quiet", "texts"]
    quiet = report["pipelines"][1]
    assert (quiet["enrolled"], quiet["queued"]) == (0, 2)  # no tick has admitted them yet
    assert (quiet["activity"], quiet["rates"]["reply_rate"]) == ([], None)
    assert report["unmatched"][0] == {
        "account": "acme",
        "reply": 1,
        "auto_reply": 0,
        "opt_out": 0,
        "bounce": 0,
        "soft_bounce": 0,
    }
    assert report["pipelines"][0]["replies"]["reply"] == 1  # still only l1's
    assert [p["pipeline"] for p in report_json(campaign, "--account", "beta")["pipelines"]] == [
        "quiet",
        "texts",
    ]


def test_bounce_recorded_by_the_sync_counts_as_bounced_and_in_the_bounce_rate(
    campaign, db: Path
) -> None:
    # What the inbound sync writes for a DSN about l0's intro email: the send failed, its
    # delivery bounced, a bounce reply naming the delivery.
    conn = sqlite3.connect(db)
    with conn:
        (delivery, action) = conn.execute(
            "SELECT d.id, d.lead_stage_action_id FROM deliveries d JOIN leads l"
            " ON l.id = d.lead_id WHERE l.email = 'l0@x.example' AND d.channel = 'email'"
        ).fetchone()
        conn.execute(
            "UPDATE lead_stage_actions SET status = 'failed', last_error = 'bounced: 5.1.1'"
            " WHERE id = ?",
            (action,),
        )
        conn.execute(
            "UPDATE deliveries SET status = 'bounced', status_at = '2027-03-01T14:05:00Z'"
            " WHERE id = ?",
            (delivery,),
        )
        conn.execute(
            "INSERT INTO replies (account_id, lead_id, channel, sender, kind, received_at,"
            " source, delivery_id, created_at) VALUES (1, 1, 'email', 'mailer-daemon@x',"
            " 'bounce', '2027-03-01T14:05:00Z', 'imap', ?, '2027-03-01T14:05:00Z')",
            (delivery,),
        )
    conn.close()
    (p,) = report_json(campaign, "--pipeline", "drip")["pipelines"]
    assert p["sends"]["email"] == {
        "sent": 6,
        "delivered": 0,
        "bounced": 1,
        "undelivered": 0,
        "failed": 0,  # a bounce is not counted twice
    }
    assert p["replies"]["bounce"] == 1
    assert p["rates"]["bounce_rate"] == round(1 / 9, 4)
    assert p["activity"][0]["bounced"] == 1


def test_retried_send_is_counted_once_when_it_fails_again(campaign, db: Path) -> None:
    (failed,) = rows(db, "SELECT id FROM lead_stage_actions WHERE status = 'failed'")
    assert campaign("retry", str(failed["id"])).exit_code == 0
    (p,) = report_json(campaign, "--pipeline", "drip")["pipelines"]
    assert p["sends"]["sms"]["failed"] == 0  # the retry took the failure back
    assert {s["stage"]: s["in_stage_now"] for s in p["stages"]}["follow-up"] == 1
    assert campaign("tick", "--now", "2027-03-05T15:00:00Z").exit_code == 0  # fails again
    (p,) = report_json(campaign, "--pipeline", "drip")["pipelines"]
    assert p["sends"]["sms"]["failed"] == 1
    stages = {s["stage"]: s for s in p["stages"]}
    assert (stages["follow-up"]["in_stage_now"], stages["follow-up"]["ended"]) == (0, 1)


def test_report_csv_has_one_figure_a_row(campaign) -> None:
    result = campaign("report", "--csv", "--pipeline", "drip", "--by", "week")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "account,pipeline,since,until,section,name,figure,value"
    table = list(csv.reader(io.StringIO(result.stdout)))[1:]
    got = {(r[4], r[5], r[6]): r[7] for r in table}
    assert {tuple(r[:4]) for r in table if r[4] != "unmatched_replies"} == {
        ("acme", "drip", "", "")
    }
    assert ["acme", "", "", "", "unmatched_replies", "", "reply", "0"] in table
    assert got[("pipeline", "", "enrolled")] == "6"
    assert got[("pipeline", "", "queued")] == "0"
    assert got[("stage", "intro", "entered")] == "6"
    assert got[("stage", "intro", "left_for:follow-up")] == "4"
    assert got[("stage", "follow-up", "ended")] == "1"
    assert got[("sends", "sms", "failed")] == "1"
    assert got[("sends", "email", "sent")] == "6"
    assert got[("replies", "", "opt_out")] == "1"
    assert got[("outcomes", "", "won")] == "1"
    assert got[("rates", "", "win_rate")] == "0.25"
    assert got[("activity_week", "2027-03-01", "sent")] == "9"
    assert "acme,drip,,,rates,,reply_rate,0.1667" in lines


def test_report_piped_prints_plain_lines(campaign) -> None:
    result = campaign("report", "--pipeline", "drip")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "acme/drip (Spring <Drip> & Co): the start to now (days in America/New_York)" in out
    assert "  enrolled: 6 (0 queued now)" in out
    assert "  stage intro: entered 6, now 0, left 6 (to follow-up 4, to responded 1, ended 1)" in (
        out
    )
    assert "  sms: sent 3, delivered 0, bounced 0, undelivered 0, failed 1" in out
    assert "  inbound: replies 1, auto-replies 0, opt-outs 1, bounces 0, soft bounces 0" in out
    assert "  reply rate: 16.7% (1 of 6 leads emailed replied)" in out
    assert "  win rate: 25.0% (1 won of 4 closed)" in out
    assert "  day 2027-03-04: enrolled 0, sent 0, replies 0, opt-outs 0, bounced 0," in out
    assert "\x1b[" not in out and "█" not in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--account", "nope"), 1, "no account 'nope'"),
        (("--pipeline", "nope"), 1, "no pipeline 'nope'"),
        (("--account", "beta", "--pipeline", "drip"), 1, "belongs to account 'acme'"),
        (("--since", "2027-02-30"), 2, "no such date '2027-02-30'"),
        (("--until", "last tuesday"), 2, "'last tuesday' is neither a date"),
        (("--since", "2027-03-05", "--until", "2027-03-01"), 2, "is after --until"),
        (("--json", "--csv"), 2, "use one of --json and --csv"),
        (("--by", "month"), 2, "month"),
        (("--html", "no/such/dir/r.html"), 1, "no/such/dir/r.html: cannot write the report"),
    ],
)
def test_report_bad_input_says_why_and_changes_nothing(
    campaign, db: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    before = dump(db)
    result = campaign("report", *args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output
    assert dump(db) == before


def test_a_lead_counts_once_as_contacted_and_once_as_emailed_whatever_the_order(
    campaign, tmp_path: Path
) -> None:
    (tmp_path / "texts.csv").write_text("Email,Phone\nt1@x.example,+12125550201\n"
                                        "t2@x.example,+12125550202\n")  # fmt: skip
    assert campaign("leads", "import", "texts.csv", "--account", "beta", "--pipeline",
                    "texts").exit_code == 0  # fmt: skip
    assert campaign("tick", "--now", "2027-03-10T14:00:00Z").exit_code == 0  # text, email, text
    (p,) = report_json(campaign, "--pipeline", "texts")["pipelines"]
    assert (p["sends"]["sms"]["sent"], p["sends"]["email"]["sent"]) == (4, 2)
    assert p["leads"] == {"emailed": 2, "contacted": 2, "replied": 0, "opted_out": 0}
    test_counters_kept_by_triggers_equal_a_recount_from_the_rows(campaign, tmp_path / "pipectl.db")


def test_counters_kept_by_triggers_equal_a_recount_from_the_rows(campaign, db: Path) -> None:
    """The migration's backfill (for databases from before it) and the counters kept as the
    tick writes (by triggers, and by the store for enrolled and entered) agree: recount
    everything from the rows and compare."""
    from pipectl.store.migrations import REPORT_BACKFILL, run_script

    conn = sqlite3.connect(db, isolation_level=None)
    queries = [
        "SELECT * FROM report_counts WHERE n != 0 ORDER BY 1, 2, 3, 4, 5, 6, 7",
        "SELECT * FROM report_firsts ORDER BY 1, 2",
    ]
    kept = [conn.execute(q).fetchall() for q in queries]
    conn.execute("BEGIN")
    for table in ("report_counts", "report_firsts"):
        conn.execute(f"DELETE FROM {table}")
    run_script(conn, REPORT_BACKFILL)
    recounted = [conn.execute(q).fetchall() for q in queries]
    conn.execute("ROLLBACK")
    conn.close()
    assert kept[0] and kept == recounted


# --- the HTML page, in a real browser ----------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (CI is set): .ci/run installs it")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return path


def _browser(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # a real headless browser
def test_report_html_opens_in_a_browser_with_its_figures_and_charts(
    campaign, tmp_path: Path
) -> None:
    chromium = _chromium()
    page = tmp_path / "report.html"
    result = campaign("report", "--html", str(page))
    assert result.exit_code == 0, result.output
    assert f"wrote {page}" in result.stderr
    source = page.read_text(encoding="utf-8")
    # Self-contained: no script, nothing fetched; special characters escaped.
    assert "<script" not in source and "<link" not in source and "src=" not in source
    assert "Spring &lt;Drip&gt; &amp; Co" in source
    assert source.count("<svg") == 4  # drip: funnel and activity; quiet, texts: a funnel each

    dom = _browser(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert "Spring &lt;Drip&gt; &amp; Co" in text
    for figure in ("16.7%", "25.0%", "1 won of 4 closed", "1 of 6 leads emailed replied"):
        assert figure in text
    assert "<td>follow-up</td><td>4</td><td>0</td><td>4</td><td>lost 3</td><td>1</td>" in text
    assert 'aria-label="funnel"' in text and 'aria-label="activity"' in text

    shot = Path(os.environ.get("PIPECTL_REPORT_SCREENSHOT") or tmp_path / "report.png")
    taken = _browser(
        chromium,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1000,1500",
        "--hide-scrollbars",
        page.as_uri(),
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_on_a_terminal_draws_the_funnel_and_the_activity_as_bars(campaign, db: Path) -> None:
    """A real pseudo-terminal, as a person at a shell sees it."""
    import pty
    import sys

    pid, fd = pty.fork()
    if pid == 0:  # the child: pipectl on the terminal
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env.update(COLUMNS="120", TERM="xterm")
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "pipectl", "--db", str(db), "report", "--pipeline", "drip"],
            env,
        )
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    screen = b"".join(chunks).decode("utf-8", errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert "funnel: leads that entered each stage" in screen
    assert "activity per day: sent / replies" in screen
    bars = [line for line in screen.splitlines() if "█" in line]
    assert any("intro" in line for line in bars) and any("lost" in line for line in bars)
    assert any("2027-03-01" in line for line in bars)
    assert "16.7%" in screen and "\x1b[" in screen  # coloured


def test_a_far_until_gives_only_the_days_with_activity(campaign) -> None:
    # --until far ahead built one row per day up to it (8999: three million rows, gigabytes).
    (p,) = report_json(campaign, "--pipeline", "drip", "--until", "8999-12-31")["pipelines"]
    assert p["period"]["until"] == "9000-01-01T05:00:00Z"
    days = [a["period"] for a in p["activity"]]
    assert days == ["2027-03-01", "2027-03-02", "2027-03-03", "2027-03-04"]
    (w,) = report_json(campaign, "--pipeline", "drip", "--since", "1900-01-01", "--by", "week")[
        "pipelines"
    ]
    assert [a["period"] for a in w["activity"]] == ["2027-03-01"]
    lines = campaign("report", "--pipeline", "drip", "--until", "8999-12-31").stdout.splitlines()
    assert len([line for line in lines if line.startswith("  day ")]) == 4


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--until", "9999-12-31"),
        ("--until", "9000-01-01"),
        ("--since", "0001-01-01"),
        ("--since", "1899-12-31"),
        ("--since", "0001-01-01T00:00:00Z"),
        ("--until", "9999-12-31T23:59:59Z"),
        ("--until", "8999-12-31T23:00:00-05:00"),
    ],
)
def test_report_refuses_dates_out_of_1900_to_8999(
    campaign, db: Path, option: str, value: str
) -> None:
    before = dump(db)
    result = campaign("report", option, value)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.replace("│", " ").split())  # the box may wrap it
    assert f"{option}: {value!r} is out of range" in message, message
    assert "from 1900-01-01 to 8999-12-31" in message, message
    assert "Traceback" not in result.output
    assert dump(db) == before
