"""A loopback HTTP server that answers as Twilio's Messages API documents.

Create (`POST .../Messages.json`, form fields To, From, Body: 201 with status `queued`), fetch
(`GET .../Messages/{sid}.json`), list (`GET .../Messages.json` with To, From, DateSent>=,
DateSent<=, PageSize: newest first, in pages linked by `next_page_uri`), RFC 2822 dates,
HTTP basic auth with the account sid and auth token (401 with Twilio's error 20003 otherwise),
and Twilio's JSON error bodies (404 20404). Tests add inbound texts with `receive`, set a sent
text's final status with `finish`, and make the next answers fail with `fail`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "twilio-test-token-5d2c"  # a test server's token; never a real one
NUMBER = "+15550100000"
API = "/2010-04-01/Accounts"


def rfc2822(when: datetime) -> str:
    """Twilio's date format: `Mon, 30 Nov 2026 17:14:05 +0000`."""
    return format_datetime(when.astimezone(UTC)).replace("-0000", "+0000")


class TwilioState:
    """The account's messages, the requests seen, and scripted failures."""

    def __init__(self, sid: str = ACCOUNT_SID, token: str = AUTH_TOKEN):
        self.sid, self.token = sid, token
        self.messages: list[dict] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.failures: list[tuple[int, dict | bytes]] = []
        self.failing: dict[int, int] = {}  # request number (from 1) -> HTTP status
        self.lock = threading.Lock()

    def _message(self, *, direction: str, to: str, from_: str, body: str, when: datetime,
                 status: str) -> dict:  # fmt: skip
        sid = "SM" + secrets.token_hex(16)
        date = rfc2822(when)
        uri = f"{API}/{self.sid}/Messages/{sid}.json"
        message = {
            "account_sid": self.sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": date,
            "date_sent": date if status not in ("queued", "accepted") else None,
            "date_updated": date,
            "direction": direction,
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
            "_when": when,  # kept for sorting; not sent
        }
        with self.lock:
            self.messages.append(message)
        return message

    def receive(self, from_: str, body: str, when: datetime | None = None, to: str = NUMBER) -> str:
        """A text a person sent to the account's number; returns its sid."""
        when = when or datetime.now(UTC)
        return self._message(
            direction="inbound", to=to, from_=from_, body=body, when=when, status="received"
        )["sid"]

    def finish(self, sid: str, status: str, error_code: int | None = None,
               error_message: str | None = None) -> None:  # fmt: skip
        """A sent text's final status, as the carrier reported it."""
        with self.lock:
            for m in self.messages:
                if m["sid"] == sid:
                    m.update(status=status, error_code=error_code, error_message=error_message)
                    m["date_sent"] = m["date_sent"] or m["date_created"]
                    return
        raise KeyError(sid)

    def fail(self, status: int, body: dict | bytes | None = None, times: int = 1) -> None:
        """The next `times` requests answer `status` (Twilio's error JSON unless `body`)."""
        if body is None:
            body = _error(20500 if status >= 500 else 20429, "Service unavailable", status)
        with self.lock:
            self.failures += [(status, body)] * times

    def fail_request(self, number: int, status: int) -> None:
        """The `number`-th request from now (1 is the next one) answers `status`."""
        with self.lock:
            self.failing[len(self.requests) + number] = status

    def outbound(self) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["direction"] != "inbound"]

    def listing(self, query: dict[str, str]) -> list[dict]:
        """The messages a list query selects, newest first."""
        with self.lock:
            found = list(self.messages)
        for key, field in (("To", "to"), ("From", "from")):
            if key in query:
                found = [m for m in found if m[field] == query[key]]
        for key, keep in (("DateSent>", lambda d, v: d >= v), ("DateSent<", lambda d, v: d <= v)):
            value = query.get(key + "=")
            if value:
                found = [m for m in found if keep(m["_when"].strftime("%Y-%m-%d"), value)]
        return sorted(found, key=lambda m: m["_when"], reverse=True)


def _error(code: int, message: str, status: int) -> dict:
    """Twilio's error body."""
    more = f"https://www.twilio.com/docs/errors/{code}"
    return {"code": code, "message": message, "more_info": more, "status": status}


def _public(message: dict) -> dict:
    return {k: v for k, v in message.items() if not k.startswith("_")}


@contextmanager
def twilio_server(  # noqa: C901  (every route of the fake API in one handler, as a test reads it)
    state: TwilioState | None = None,
) -> Iterator[tuple[str, TwilioState]]:
    """A running Twilio-shaped API on 127.0.0.1; yields its base URL and state."""
    state = state or TwilioState()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status: int, body: dict | bytes) -> None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def authorized(self) -> bool:
            expected = base64.b64encode(f"{state.sid}:{state.token}".encode()).decode()
            if self.headers.get("Authorization") == f"Basic {expected}":
                return True
            body = _error(20003, "Authenticate", 401)
            body["detail"] = "Your AccountSid or AuthToken was incorrect."
            self.answer(401, body)
            return False

        def prelude(self) -> bool:
            with state.lock:
                state.requests.append((self.command, self.path))
                failure = state.failures.pop(0) if state.failures else None
                status = state.failing.pop(len(state.requests), None)
                if status and not failure:
                    failure = (status, _error(20500, "Service unavailable", status))
            if failure:
                self.answer(*failure)
                return False
            return self.authorized()

        def not_found(self) -> None:
            message = f"The requested resource {self.path} was not found"
            self.answer(404, _error(20404, message, 404))

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.prelude():
                return
            path = urlparse(self.path).path
            if path != f"{API}/{state.sid}/Messages.json":
                return self.not_found()
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            message = state._message(
                direction="outbound-api", to=form.get("To", ""), from_=form.get("From", ""),
                body=form.get("Body", ""), when=datetime.now(UTC), status="queued",
            )  # fmt: skip
            self.answer(201, _public(message))

        def do_GET(self):
            if not self.prelude():
                return
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            prefix = f"{API}/{state.sid}/Messages"
            if url.path == f"{prefix}.json":
                return self.answer(200, self.page(url.path, query))
            if url.path.startswith(prefix + "/") and url.path.endswith(".json"):
                sid = url.path[len(prefix) + 1 : -5]
                with state.lock:
                    found = [m for m in state.messages if m["sid"] == sid]
                return self.answer(200, _public(found[0])) if found else self.not_found()
            self.not_found()

        def page(self, path: str, query: dict[str, str]) -> dict:
            size = min(int(query.get("PageSize", 50)), 1000)
            number = int(query.get("Page", 0))
            selected = state.listing(query)
            chunk = selected[number * size : (number + 1) * size]
            base = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}

            def uri(n: int) -> str:
                extra = {"Page": str(n), "PageToken": f"PASM{secrets.token_hex(8)}"} if n else {}
                return f"{path}?{urlencode({**base, 'PageSize': str(size), **extra})}"

            more = (number + 1) * size < len(selected)
            return {
                "first_page_uri": uri(0),
                "end": number * size + max(len(chunk) - 1, 0),
                "previous_page_uri": uri(number - 1) if number else None,
                "messages": [_public(m) for m in chunk],
                "uri": f"{path}?{urlencode(query)}",
                "page_size": size,
                "start": number * size,
                "next_page_uri": uri(number + 1) if more else None,
                "page": number,
            }

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
