"""`--db postgresql://...` as a user meets it: a clear error when the server cannot be
reached, the password never shown, and the same commands through PIPECTL_DB."""

from __future__ import annotations

import os
import subprocess
import sys

from .backends import new_schema
from .channel_servers import free_port
from .conftest import rows


def pipectl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipectl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


def test_a_server_that_does_not_answer_is_named_without_its_password():
    url = f"postgresql://sales:hunter2@127.0.0.1:{free_port()}/sales"
    result = pipectl("--db", url, "status")
    assert result.returncode == 1
    assert "postgresql://sales:***@127.0.0.1" in result.stderr
    assert "cannot connect" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_pipectl_db_names_a_postgresql_database_for_every_command(tmp_path):
    for url in new_schema():
        created = pipectl("init", env={"PIPECTL_DB": url})
        assert created.returncode == 0, created.stderr
        assert created.stdout.strip() == f"database ready: {url}"
        status = pipectl("status", "--json", env={"PIPECTL_DB": url})
        assert status.returncode == 0, status.stderr
        tables = {
            r["table_name"]
            for r in rows(
                url,
                "SELECT table_name FROM"
                " information_schema.tables WHERE table_schema = current_schema()",
            )
        }
        assert {"leads", "lead_stage_actions", "runners", "report_counts"} <= tables


def test_several_processes_opening_a_new_database_at_once_create_it_once():
    for url in new_schema():
        starting = [
            subprocess.Popen(
                [sys.executable, "-m", "pipectl", "--db", url, "status", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        for p in starting:
            _, stderr = p.communicate(timeout=60)
            assert p.returncode == 0, stderr
        meta = rows(url, "SELECT key, value FROM meta ORDER BY key")
        assert [m["key"] for m in meta] == ["instance", "schema_version"]
