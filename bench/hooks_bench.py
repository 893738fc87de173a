"""What webhooks cost the tick: a tick of 10,000 due sends with no hook, with a hook that takes
none of its events, and with a hook that takes every event (10,000 `stage_entered`, written
as the leads are admitted and delivered to a receiver on 127.0.0.1 in the same tick).

    .venv/bin/python bench/hooks_bench.py [--leads 10000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.probes import NoopSender  # noqa: E402
from pipectl.durations import parse_time  # noqa: E402
from pipectl.scheduler.hooks import HookCourier  # noqa: E402
from pipectl.scheduler.run import tick  # noqa: E402

FINISH: list[float] = []  # seconds the tick spent delivering after its sends were done
_finish = HookCourier.finish


def timed_finish(self: HookCourier, deadline: float) -> None:
    started = time.perf_counter()
    _finish(self, deadline)
    FINISH.append(time.perf_counter() - started)


HookCourier.finish = timed_finish  # type: ignore[method-assign]

YAML = """\
version: 1
accounts:
  - {key: acme, name: Acme, timezone: UTC, limits: {concurrency: 64}}
channels:
  email: {transport: outbox, from: "Acme <sales@acme.example>"}
pipelines:
  - key: drip
    account: acme
    stages:
      - key: intro
        actions:
          - email: {subject: "Hi", body: "Hello"}
"""
NOW = "2027-03-01T14:00:00Z"


def receiver() -> tuple[str, list[int]]:
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            count[0] += 1
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/in", count


def pipectl(db: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pipectl", "--db", str(db), *args], check=True, capture_output=True
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=10_000)
    leads = parser.parse_args().leads
    url, received = receiver()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "base.db"
        (work / "p.yaml").write_text(YAML)
        pipectl(base, "apply", str(work / "p.yaml"))
        csv = work / "leads.csv"
        csv.write_text("Email\n" + "".join(f"lead{i}@example.com\n" for i in range(leads)))
        pipectl(base, "leads", "import", str(csv), "--account", "acme", "--pipeline", "drip")
        variants = {
            "no hook": "",
            "a hook taking none of these events": (
                f"hooks:\n  - {{url: '{url}', events: [bounced]}}\n"
            ),
            "a hook taking every event, its receiver down (writing them only)": (
                "hooks:\n  - {url: 'http://127.0.0.1:9/in'}\n"
            ),
            "a hook taking every event": f"hooks:\n  - {{url: '{url}'}}\n",
        }
        for name, hooks in variants.items():
            db = work / f"{len(hooks)}.db"
            shutil.copy(base, db)
            (work / "h.yaml").write_text(YAML + hooks)
            pipectl(db, "apply", str(work / "h.yaml"))
            before = received[0]
            started = time.perf_counter()
            summary = tick(db, now=parse_time(NOW), senders=NoopSender(), sync_seconds=0)
            seconds = time.perf_counter() - started
            print(
                f"{name}: {summary.done:,} sends done, {summary.admitted:,} admitted,"
                f" {summary.hooks_delivered:,} events delivered"
                f" ({received[0] - before:,} received) in {seconds:.2f} s, of which"
                f" {FINISH[-1]:.2f} s delivering after the sends were done"
            )


if __name__ == "__main__":
    main()
