"""Messages per second to a local aiosmtpd through one SenderPool, with and without reuse.

    .venv/bin/python bench/smtp_bench.py [--messages 2000] [--workers 16]

The SMTP server runs in its own process (so it does not share the GIL with the senders);
it accepts every message and counts connections. Each send renders the templates, as the
tick does.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipectl.channels import SendAction  # noqa: E402
from pipectl.channels.render import render_message  # noqa: E402
from pipectl.channels.senders import SenderPool  # noqa: E402


def serve(port, ready, stop, connections, messages) -> None:
    """The SMTP server process: accepts everything, counts connections and messages."""
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with messages.get_lock():
                messages.value += 1
            return "250 OK"

    class Counting(Controller):
        def factory(self):
            with connections.get_lock():
                connections.value += 1
            return super().factory()

    controller = Counting(Handler(), hostname="127.0.0.1", port=port, server_hostname="bench")
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def run(port: int, count: int, workers: int, reuse: bool, tmp: Path) -> float:
    """Send `count` messages on `workers` threads; returns seconds taken."""
    config = {
        "transport": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Bench <bench@pipectl.example>",
    }
    params = {"subject": "Hello {{ lead.first_name }}", "body": "Hi {{ lead.first_name }}.\n"}
    actions = [
        SendAction(
            i, i, "bench", "email", params, {"email": f"l{i}@x.example", "first_name": "A"}, config
        )
        for i in range(count)
    ]
    pool = SenderPool(tmp, env={}, reuse_connections=reuse)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        list(executor.map(lambda a: pool.send(render_message(a)), actions))
    pool.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    from tests.channel_servers import free_port

    port = free_port()
    ready, stop = mp.Event(), mp.Event()
    connections, messages = mp.Value("i", 0), mp.Value("i", 0)
    server = mp.Process(target=serve, args=(port, ready, stop, connections, messages))
    server.start()
    ready.wait(10)
    try:
        for reuse in (True, False):
            connections.value = messages.value = 0
            with tempfile.TemporaryDirectory() as tmp:
                seconds = run(port, args.messages, args.workers, reuse, Path(tmp))
            label = "with reuse   " if reuse else "without reuse"
            print(
                f"{label}: {args.messages} messages, {args.workers} workers: {seconds:6.2f} s, "
                f"{args.messages / seconds:7.0f} msg/s, "
                f"{connections.value} connections, {messages.value} received"
            )
    finally:
        stop.set()
        server.join(10)


if __name__ == "__main__":
    main()
