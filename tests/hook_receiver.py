"""A webhook receiver on 127.0.0.1, as a team's CRM or n8n would run one.

It checks each request's X-Pipectl-Signature against the shared secret (401 when wrong),
keeps what it accepted in order, and can be told to refuse (`status`), to hang (`hang`
seconds before answering), or be stopped and started again on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .channel_servers import free_port


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class HookReceiver:
    def __init__(self, secret: str | None, port: int | None = None):
        self.secret = secret
        self.port = port or free_port()
        self.requests: list[Request] = []  # every request, accepted or not
        self.accepted: list[dict] = []  # events answered 2xx, in order
        self.status = 200  # the answer to the next requests
        self.retry_after: str | None = None
        self.hang = 0.0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pipectl"

    def verify(self, body: bytes, signature: str | None) -> bool:
        """The check a receiver runs: HMAC-SHA256 of the exact body with the shared secret."""
        if self.secret is None:
            return signature is None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature or "")

    def start(self) -> HookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                verified = receiver.verify(body, self.headers.get("X-Pipectl-Signature"))
                with receiver.lock:
                    receiver.requests.append(
                        Request(self.path, dict(self.headers.items()), body, verified)
                    )
                    status, hang = receiver.status, receiver.hang
                    if not verified:
                        status = 401
                    elif 200 <= status < 300:
                        receiver.accepted.append(json.loads(body))
                if hang:
                    time.sleep(hang)
                self.send_response(status)
                if receiver.retry_after and status >= 300:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
