"""Real servers on 127.0.0.1 for channel tests: an SMTP server (aiosmtpd) and an HTTP server."""

from __future__ import annotations

import email
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool = False

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: records every message; `replies[address]` answers RCPT instead, and
    `mail_reply` (e.g. "553 5.7.1 sender refused") answers every MAIL FROM."""

    received: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    logins: list[tuple[str, str]] = field(default_factory=list)
    mail_froms: list[str] = field(default_factory=list)  # every MAIL FROM, refused or not
    mail_reply: str | None = None
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_froms.append(address)
            reply = self.mail_reply
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            tls = server.transport.get_extra_info("ssl_object") is not None
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls)
            )
            n = len(self.received)
        return f"250 2.0.0 Ok: queued as Q{n:05d}"

    def to(self, address: str) -> list[Received]:
        """Messages delivered to `address`."""
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]


class SmtpServer(Controller):
    """aiosmtpd in a thread that counts the TCP connections it accepted."""

    def __init__(self, recorder: SmtpRecorder, port: int, **smtp_kwargs):
        self.recorder = recorder
        super().__init__(
            recorder, hostname="127.0.0.1", port=port, server_hostname="smtp.test", **smtp_kwargs
        )

    def factory(self) -> SMTP:
        with self.recorder.lock:
            self.recorder.connections += 1
        return super().factory()

    def start(self) -> None:
        super().start()
        with self.recorder.lock:
            self.recorder.connections = 0  # Controller.start connects once to check it is up


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command): (cert, key)."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of TLS, for `smtp_server(tls_context=...)` or `ssl_context=...`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def password_checker(username: str, password: str, recorder: SmtpRecorder):
    """An aiosmtpd authenticator accepting one username and password."""

    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, given = auth_data.login.decode(), auth_data.password.decode()
            with recorder.lock:
                recorder.logins.append((login, given))
            return AuthResult(success=(login, given) == (username, password), handled=False)
        return AuthResult(success=False, handled=False)

    return check


@contextmanager
def smtp_server(
    port: int | None = None, *, auth: tuple[str, str] | None = None, **smtp_kwargs
) -> Iterator[tuple[SmtpServer, SmtpRecorder]]:
    """A running SMTP server on 127.0.0.1; with `auth`, AUTH (over plain text) is required.

    aiosmtpd warns about AUTH without TLS on every connection; tests using `auth` may add
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS").
    """
    recorder = SmtpRecorder()
    if auth:
        smtp_kwargs.update(
            authenticator=password_checker(*auth, recorder),
            auth_required=True,
            auth_require_tls=False,
        )
    server = SmtpServer(recorder, port or free_port(), **smtp_kwargs)
    server.start()
    try:
        yield server, recorder
    finally:
        server.stop()


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class HttpRecorder:
    """Records requests; answers each from `script` (status, headers, body), then `default`;
    `respond(request)`, when set and not None, answers instead."""

    def __init__(self):
        self.requests: list[HttpRequest] = []
        self.respond: Callable[[HttpRequest], tuple[int, dict[str, str], bytes] | None] | None = (
            None
        )
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.default: tuple[int, dict[str, str], bytes] = (
            201,
            {"Content-Type": "application/json"},
            b'{"sid": "SM0001", "id": "wh-1"}',
        )
        self.connections = 0
        self.lock = threading.Lock()

    def answer(self, status: int, body: bytes | dict = b"", **headers: str) -> None:
        """Queue one scripted answer; a dict body is sent as JSON."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers.setdefault("Content_Type", "application/json")
        with self.lock:
            self.script.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, body))


@contextmanager
def http_server() -> Iterator[tuple[str, HttpRecorder]]:
    """A running HTTP/1.1 server on 127.0.0.1; yields its base URL and the recorder."""
    recorder = HttpRecorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            with recorder.lock:
                recorder.connections += 1

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = HttpRequest("POST", self.path, dict(self.headers.items()), body)
            with recorder.lock:
                recorder.requests.append(request)
                answer = recorder.respond(request) if recorder.respond else None
                status, headers, payload = answer or (
                    recorder.script.pop(0) if recorder.script else recorder.default
                )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()
