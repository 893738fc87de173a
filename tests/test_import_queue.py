"""The enrollment queue as imports fill it: first queued, first admitted."""

from __future__ import annotations

import time

from .conftest import rows
from .scenario import T0, write_yaml

DRIP = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
          - wait: 1d
          - move: won
      - {key: won, outcome: won}
"""


def leads_csv(tmp_path, name: str, *emails: str):
    path = tmp_path / name
    path.write_text("Email\n" + "".join(f"{e}\n" for e in emails))
    return path


def import_(cli, path, *args: str) -> None:
    result = cli("leads", "import", path, "--account", "acme", "--pipeline", "drip", *args)
    assert result.exit_code == 0, result.output


def tick(cli, now: str) -> None:
    assert cli("tick", "--now", now, "-q").exit_code == 0


def states(db) -> dict[str, str]:
    return {
        r["email"]: r["status"]
        for r in rows(
            db,
            "SELECT l.email, e.status FROM enrollments e JOIN leads l ON l.id = e.lead_id",
        )
    }


def test_a_re_enrolled_lead_queues_behind_leads_queued_before_it(cli, db, tmp_path):
    assert cli("apply", write_yaml(tmp_path, DRIP, "    limits: {active_leads: 1}")).exit_code == 0
    import_(cli, leads_csv(tmp_path, "a.csv", "ann@x.com"))
    tick(cli, T0)
    tick(cli, "2027-03-02T15:00:00Z")  # a day later: ann's run is over
    assert states(db) == {"ann@x.com": "won"}
    import_(cli, leads_csv(tmp_path, "bc.csv", "bob@x.com", "cat@x.com"))
    time.sleep(1.05 - time.time() % 1)  # the next second: queued times are to the second
    import_(cli, leads_csv(tmp_path, "a.csv", "ann@x.com"), "--re-enroll")
    assert states(db) == {"ann@x.com": "queued", "bob@x.com": "queued", "cat@x.com": "queued"}
    tick(cli, "2027-03-03T15:00:00Z")  # one slot: the lead queued first takes it
    assert states(db) == {"ann@x.com": "queued", "bob@x.com": "active", "cat@x.com": "queued"}
    tick(cli, "2027-03-04T16:00:00Z")
    assert states(db) == {"ann@x.com": "queued", "bob@x.com": "won", "cat@x.com": "active"}
    tick(cli, "2027-03-05T17:00:00Z")
    assert states(db) == {"ann@x.com": "active", "bob@x.com": "won", "cat@x.com": "won"}
