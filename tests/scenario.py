"""Set up a pipeline and leads the way a user does: a YAML file, `apply`, a CSV, `import`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .channel_servers import SmtpRecorder, SmtpServer, free_port
from .conftest import rows

T0 = "2027-03-01T14:00:00Z"

HEADER = """\
version: 1
accounts:
  - key: acme
    name: Acme Roofing
    timezone: UTC
    country: US
{acme_extra}
  - key: beta
    name: Beta Solar
    timezone: UTC
    country: US
{beta_extra}
channels:
  email: {{transport: outbox, from: "Acme Sales <sales@acme.example>"}}
  sms: {{transport: outbox, from: "+15550100000"}}
pipelines:
"""


# One email, then won: the pipeline most process and fault tests need.
ONE_EMAIL = """\
  - key: drip
    account: acme
    name: Drip
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Hello"}
          - move: won
      - {key: won, outcome: won}
"""


# One text, then won: the SMS twin of ONE_EMAIL.
ONE_TEXT = """\
  - key: texts
    account: acme
    name: Texts
    stages:
      - key: intro
        actions:
          - sms: "Hi {{ lead.first_name }}"
          - move: won
      - {key: won, outcome: won}
"""


def write_yaml(tmp_path: Path, pipelines: str, acme_extra: str = "", beta_extra: str = "") -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        HEADER.format(acme_extra=acme_extra, beta_extra=beta_extra) + pipelines, encoding="utf-8"
    )
    return path


def smtp_channel(port: int, timeout: int = 10) -> str:
    """An account's `channels:` override sending email to a test SMTP server on 127.0.0.1."""
    return (
        "    channels:\n"
        f"      email: {{transport: smtp, host: 127.0.0.1, port: {port}, security: none,"
        f' timeout: {timeout}, from: "Acme <sales@acme.example>"}}'
    )


def write_csv(tmp_path: Path, name: str, count: int, domain: str = "example.com") -> Path:
    path = tmp_path / name
    lines = ["Email,First Name,Company Name"]
    lines += [f"lead{i}@{domain},Lead{i},Company {i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def setup(cli, tmp_path: Path, pipelines: str, leads: dict[tuple[str, str], int], **extra) -> None:
    """Apply the pipelines and import `count` leads per (account, pipeline)."""
    result = cli("apply", write_yaml(tmp_path, pipelines, **extra))
    assert result.exit_code == 0, result.output
    for (account, pipeline), count in leads.items():
        csv = write_csv(tmp_path, f"{account}-{pipeline}.csv", count, domain=f"{account}.example")
        result = cli("leads", "import", csv, "--account", account, "--pipeline", pipeline)
        assert result.exit_code == 0, result.output


def statuses(db: Path, account: str | None = None) -> dict[str, int]:
    """Action rows by status."""
    where = "WHERE account_id = (SELECT id FROM accounts WHERE key = ?)" if account else ""
    params = (account,) if account else ()
    return {
        r["status"]: r["n"]
        for r in rows(
            db,
            f"SELECT status, count(*) AS n FROM lead_stage_actions {where} GROUP BY status",
            *params,
        )
    }


def outbox(tmp_path: Path) -> list[Path]:
    box = tmp_path / "outbox"
    return sorted(p for p in box.iterdir() if not p.name.startswith(".")) if box.exists() else []


def pipectl(db: Path, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run pipectl as a separate process, as cron does."""
    return subprocess.run(
        [sys.executable, "-m", "pipectl", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
        **kw,
    )


def spawn(db: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipectl", "--db", str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        **kw,
    )


def summary(result) -> dict:
    return json.loads(result.stdout)


class SlowSmtp(SmtpRecorder):
    """Takes `delay` seconds to accept each message, like a congested relay."""

    delay: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def serve(recorder: SmtpRecorder) -> SmtpServer:
    """A running SMTP server on a free port of 127.0.0.1 with this handler; stop() it."""
    server = SmtpServer(recorder, free_port())
    server.start()
    return server


def start_smtp(delay: float) -> tuple[SmtpServer, SlowSmtp]:
    recorder = SlowSmtp()
    recorder.delay = delay
    return serve(recorder), recorder


def wait_for(predicate, timeout: float = 20, process=None) -> None:
    """Poll until `predicate()`; fail on timeout, or if `process` ended first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        assert process is None or process.poll() is None, "the process ended first"
        time.sleep(0.005)
