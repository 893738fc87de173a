"""Reading an SMS number's inbound texts and the final status of sent texts from Twilio.

List: `GET /2010-04-01/Accounts/{sid}/Messages.json?To=<number>&DateSent>=<day>`, newest first
in pages linked by `next_page_uri`; the inbound ones not read before are yielded oldest first.
`DateSent>=` has a day's precision, so the cursor keeps the time of the newest text read and
the sids read at that very second: nothing is yielded twice, nothing is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from .. import defaults
from ..durations import format_time, parse_time
from ..store.replies_sql import is_opt_out
from . import Cursor, InboundMessage, SourceError, TextStatus

TWILIO_API = defaults.TWILIO_API
FOLDER = "inbound"
FIRST_DAYS = 14  # the first sync reads this far back, like a mailbox whose UIDVALIDITY changed
PAGE_SIZE = 100
MAX_PAGES = 200
MAX_TIMEOUT = defaults.INBOUND_TIMEOUT
MAX_BODY = defaults.INBOUND_BODY
MAX_ONE_BY_ONE = 10  # more sent texts than this: their statuses come from the list
STATUS_DAYS = 4  # the list reaches back this far (sync asks about the last 3 days)


class TwilioFetcher:
    """One Twilio number of one account: texts sent to it, and statuses of texts it sent."""

    kind = "twilio"

    def __init__(self, account: str, config: Mapping[str, Any], *, timeout: float = MAX_TIMEOUT):
        self.account = account
        self.sid = str(config.get("account_sid") or "")
        self.token = str(config.get("auth_token") or "")
        self.number = str(config.get("from") or "")
        self.base = str(config.get("base_url") or TWILIO_API).rstrip("/")
        seconds = max(1.0, min(float(timeout), MAX_TIMEOUT))
        self.timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))
        self.name = f"twilio://{self.sid}/{self.number}"
        self.api = f"{self.base}/2010-04-01/Accounts/{quote(self.sid, safe='')}"

    def fetch(
        self, cursors: Mapping[str, Cursor], *, now: str
    ) -> Iterator[tuple[InboundMessage, Cursor]]:
        """Inbound texts after the cursor, oldest first, each with the cursor that follows it."""
        if not self.number:
            raise self._error("no from number to read inbound texts for (channels.sms.from)")
        cursor = cursors.get(FOLDER)
        since, seen = _read_position(cursor.position if cursor else None)
        if since is None:
            since = format_time(parse_time(now) - timedelta(days=FIRST_DAYS))
        params = {"To": self.number, "DateSent>=": since[:10], "PageSize": str(PAGE_SIZE)}
        texts = []
        with self._client() as client:
            for item in self._pages(client, f"{self.api}/Messages.json", params):
                text = _inbound(item)
                if text is None:
                    continue
                sent_at = text.received_at
                if sent_at < since or (sent_at == since and text.external_id in seen):
                    continue
                texts.append(text)
        texts.sort(key=lambda t: (t.received_at, t.external_id))
        for text in texts:
            if text.received_at != since:
                since, seen = text.received_at, set()
            seen.add(text.external_id)
            yield text, Cursor(folder=FOLDER, position=_position(since, seen))

    def statuses(self, provider_ids: Sequence[str]) -> Iterator[TextStatus]:
        """The status Twilio reports now for each text sent; an unknown sid is skipped.

        Many at once are read from the list of texts sent from the account's number in the
        last days (one request per page of 1,000), the rest one by one."""
        wanted = dict.fromkeys(str(sid) for sid in provider_ids)
        with self._client() as client:
            if len(wanted) > MAX_ONE_BY_ONE and self.number:
                since = (datetime.now(UTC) - timedelta(days=STATUS_DAYS)).strftime("%Y-%m-%d")
                params = {"From": self.number, "DateSent>=": since, "PageSize": "1000"}
                for item in self._pages(client, f"{self.api}/Messages.json", params):
                    sid = str(item.get("sid") or "")
                    if sid in wanted:
                        del wanted[sid]
                        yield _status(sid, item)
                        if not wanted:
                            return
            for sid in list(wanted):
                data = self._get(client, f"{self.api}/Messages/{quote(sid, safe='')}.json")
                if data is not None:
                    yield _status(sid, data)

    # -- HTTP ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        if not self.sid or not self.token:
            raise self._error("needs account_sid and auth_token")
        client = httpx.Client(
            timeout=self.timeout, auth=(self.sid, self.token), follow_redirects=False
        )
        try:
            yield client
        finally:
            client.close()

    def _pages(
        self, client: httpx.Client, url: str, params: dict[str, str]
    ) -> Iterator[dict[str, Any]]:
        """Every message of a list, following next_page_uri."""
        next_url: str | None = url
        query: dict[str, str] | None = params
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            page = self._get(client, next_url, query)
            if page is None or not isinstance(page.get("messages"), list):
                raise self._error(f"GET {_path(next_url)} answered no message list")
            yield from (m for m in page["messages"] if isinstance(m, dict))
            uri = page.get("next_page_uri")
            next_url = f"{self.base}{uri}" if isinstance(uri, str) and uri else None
            query = None  # the next page's URI carries the query
        raise self._error(f"more than {MAX_PAGES} pages of messages")

    def _get(
        self, client: httpx.Client, url: str, params: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """A JSON object; None for a 404; SourceError for anything else that is not 200."""
        try:
            response = client.get(url, params=params)
        except httpx.TimeoutException:
            raise self._error(f"GET {_path(url)} timed out") from None
        except httpx.HTTPError as e:
            raise self._error(f"GET {_path(url)}: {type(e).__name__}: {e}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(f"GET {_path(url)}: {_explain(response)}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._error(f"GET {_path(url)} answered something that is not JSON")
        return data

    def _error(self, what: str) -> SourceError:
        text = f"account {self.account}: {self.name}: {what}"
        if len(self.token) >= 4:
            text = text.replace(self.token, "***")
        return SourceError(text)


def _inbound(item: dict[str, Any]) -> InboundMessage | None:
    """A listed message as an InboundMessage, if it is an inbound text with a sid and a date."""
    if item.get("direction") != "inbound" or not item.get("sid"):
        return None
    try:
        sent = parsedate_to_datetime(str(item.get("date_sent") or item.get("date_created")))
    except (TypeError, ValueError, IndexError):
        return None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    body = str(item.get("body") or "")[:MAX_BODY]
    return InboundMessage(
        channel="sms",
        source="twilio",
        external_id=str(item["sid"]),
        sender=str(item.get("from") or "").strip(),
        kind="opt_out" if is_opt_out(body) else "reply",
        body=body.strip(),
        received_at=format_time(sent),
    )


def _status(sid: str, data: dict[str, Any]) -> TextStatus:
    code = data.get("error_code")
    return TextStatus(
        provider_id=sid,
        status=str(data.get("status") or ""),
        error_code=str(code) if code not in (None, "") else None,
        error_message=str(data["error_message"]) if data.get("error_message") else None,
    )


def _position(time: str, sids: set[str]) -> str:
    return " ".join([time, *sorted(sids)])


def _read_position(position: str | None) -> tuple[str | None, set[str]]:
    """(time of the newest text read, sids read at that second) from a stored position."""
    if not position:
        return None, set()
    time, *sids = position.split()
    try:
        return format_time(parse_time(time)), set(sids)
    except ValueError:
        return None, set()


def _path(url: str) -> str:
    try:
        return httpx.URL(url).path
    except Exception:
        return "?"


def _explain(response: httpx.Response) -> str:
    """`HTTP 401 (Twilio 20003: Authenticate)`, from Twilio's error body when there is one."""
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    detail = ""
    if isinstance(data, dict) and (data.get("code") or data.get("message")):
        detail = f" (Twilio {data.get('code') or ''}: {str(data.get('message') or '')[:200]})"
    if status in (401, 403):
        return f"authentication refused: HTTP {status}{detail}"
    return f"HTTP {status}{detail}"
