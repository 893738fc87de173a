"""Inbound sync against a real Dovecot on loopback: the first sync of a full mailbox, the
incremental sync with nothing new (its cost must not grow with the mailbox), and the idle tick
with an inbox configured.

Run by bench/run.py; each measurement in its own child process. Also usable alone:

    .venv/bin/python bench/sync_bench.py [--sizes 100,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import BENCH, fresh, pipectl, run_child  # noqa: E402

NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # mail is delivered now: read it all

CONFIG = """\
version: 1
accounts:
  - key: inbox
    country: US
    channels:
      email:
        transport: outbox
        from: "Ann <ann@acme.example>"
        inbox:
          host: 127.0.0.1
          port: {port}
          security: none
          username: ${{IMAP_USER}}
          password: ${{IMAP_PASSWORD}}
pipelines:
  - key: inbox-p
    account: inbox
    stages:
      - key: new
        actions:
          - wait_for_reply: 30d
"""


def messages(count: int):
    """A mix as a sales inbox holds it: replies with quoted threads, out-of-office answers,
    bounces, plain mail; each with its own Message-ID."""
    from tests import mail_samples as s

    for i in range(count):
        sender = f"person{i}@buyer{i % 97}.example"
        kind = i % 10
        if kind < 6:
            yield s.gmail_reply(sender=sender, message_id=f"<reply{i}@mail.gmail.com>")
        elif kind < 8:
            yield s.plain_mail(sender=sender, message_id=f"<plain{i}@buyer.example>")
        elif kind == 8:
            yield s.exchange_auto_reply(sender=sender).replace(
                b"b5d66930e76243eb8bddd885ad3fafdd", f"auto{i}".encode()
            )
        else:
            yield s.postfix_dsn(failed=sender).replace(
                b"20261130171403.9C8B7A6F5E", f"dsn{i}".encode()
            )


def measure(sizes: tuple[int, ...], runs: int, workdir: Path, log: Any) -> dict[str, Any]:
    """Every sync figure, or why they could not be taken (no Dovecot here)."""
    from tests.imap_server import DovecotServer, dovecot_missing

    reason = dovecot_missing()
    if reason:
        log(f"sync: skipped, {reason}")
        return {"skipped": reason}
    server = DovecotServer()
    server.start()
    out: dict[str, Any] = {"first": [], "incremental": [], "idle_tick": None}
    try:
        for size in sizes:
            mailbox = server.new_mailbox()
            log(f"sync: {size:,} messages into a mailbox")
            mailbox.deliver(messages(size))
            os.environ["IMAP_USER"], os.environ["IMAP_PASSWORD"] = mailbox.user, mailbox.password
            db = fresh(workdir / f"sync-{size}.db")
            config = workdir / f"sync-{size}.yaml"
            config.write_text(CONFIG.format(port=server.port))
            pipectl(db, "apply", str(config))
            log(f"  first sync of {size:,}")
            first = pipectl(db, "sync", "--now", NOW, "--json")
            [account] = json.loads(first.stdout)
            assert account["fetched"] == size and not account["sources"][0]["error"], account
            out["first"].append(
                {
                    "messages": size,
                    "seconds": round(first.seconds, 2),
                    "messages_per_s": round(size / first.seconds),
                    "counts": {k: v for k, v in account.items() if isinstance(v, int)},
                    "process": first.figures(),
                }
            )
            log(f"  {size / first.seconds:,.0f} messages/s; incremental syncs, nothing new")
            incremental, run = probe(db=str(db), now=NOW, runs=runs)
            out["incremental"].append({"messages": size, **incremental, "process": run.figures()})
            if size == max(sizes):
                log("  idle tick with the inbox configured")
                idle, run = probe_tick(db=str(db), now=NOW, runs=runs)
                out["idle_tick"] = {"messages": size, **idle, "process": run.figures()}
    finally:
        server.stop()
    return out


def probe(**kwargs: Any) -> tuple[dict[str, Any], Any]:
    run = run_child([sys.executable, str(BENCH / "sync_bench.py"), "probe", json.dumps(kwargs)])
    return json.loads(run.stdout.strip().splitlines()[-1]), run


def probe_tick(**kwargs: Any) -> tuple[dict[str, Any], Any]:
    run = run_child([sys.executable, str(BENCH / "sync_bench.py"), "tick", json.dumps(kwargs)])
    return json.loads(run.stdout.strip().splitlines()[-1]), run


def incremental(db: str, now: str, runs: int) -> dict[str, Any]:
    """`sync` with nothing new, in-process, `runs` times: ms each, and the IMAP commands sent."""
    from pipectl.inbound import imap
    from pipectl.inbound.sync import sync
    from pipectl.store import Store

    sent: list[str] = []
    original = imap._ReadOnly._command

    def counted(self, name, *args):
        sent.append(f"{name} {args[0] if name == 'UID' else ''}".strip())
        return original(self, name, *args)

    imap._ReadOnly._command = counted  # type: ignore[method-assign]
    times = []
    for _ in range(runs + 1):
        sent.clear()
        store = Store(db)
        try:
            start = time.perf_counter()
            [account] = sync(store, now=now)
            times.append(time.perf_counter() - start)
        finally:
            store.close()
        total = account.total()
        assert total.fetched == 0 and not total.errors, account.as_dict()
    times = sorted(times[1:])  # the first warms up
    return {
        "runs": runs,
        "best_ms": round(times[0] * 1000, 1),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(times[-1] * 1000, 1),
        "uid_searches": sent.count("UID SEARCH"),
        "uid_fetches": sent.count("UID FETCH"),
        "commands": sent,
    }


def idle_tick(db: str, now: str, runs: int) -> dict[str, Any]:
    """tick() with nothing due and nothing new in the inbox, with and without its sync."""
    from probes import NoopSender

    from pipectl.durations import parse_time
    from pipectl.scheduler.run import tick

    at = parse_time(now)
    result = {}
    for label, seconds in (("with_sync", 15.0), ("without_sync", 0.0)):
        times = []
        for _ in range(runs + 1):
            start = time.perf_counter()
            summary = tick(db, now=at, senders=NoopSender(), sync_seconds=seconds)
            times.append(time.perf_counter() - start)
            assert summary.claimed == 0 and not summary.sync_errors, summary
        times = sorted(times[1:])
        result[f"{label}_median_ms"] = round(statistics.median(times) * 1000, 1)
        result[f"{label}_best_ms"] = round(times[0] * 1000, 1)
    return result


def main() -> None:
    if sys.argv[1:2] in (["probe"], ["tick"]):
        kwargs = json.loads(sys.argv[2])
        result = incremental(**kwargs) if sys.argv[1] == "probe" else idle_tick(**kwargs)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--runs", type=int, default=10)
    opts = parser.parse_args()
    import tempfile

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pipectl-sync-bench-") as tmp:
        result = measure(
            tuple(int(s) for s in opts.sizes.split(",")),
            opts.runs,
            Path(tmp),
            lambda m: print(f"[{time.perf_counter() - started:6.1f} s] {m}", file=sys.stderr),
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
