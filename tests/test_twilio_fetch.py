"""TwilioFetcher against a Twilio-shaped server: inbound texts once, statuses, failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pipectl.inbound import SourceError
from pipectl.inbound.twilio import TwilioFetcher
from tests.twilio_server import ACCOUNT_SID, AUTH_TOKEN, NUMBER, twilio_server

pytestmark = pytest.mark.slow  # a real HTTP server, timeouts included

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-30T18:00:00Z"


@pytest.fixture
def twilio():
    with twilio_server() as (url, state):
        yield url, state


def fetcher(url: str, **config) -> TwilioFetcher:
    settings = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": NUMBER,
                "base_url": url, **config}  # fmt: skip
    return TwilioFetcher("acme", settings, timeout=5)


def fetch(url: str, cursors=None, **config):
    return list(fetcher(url, **config).fetch(cursors or {}, now=NOW_TEXT))


def test_inbound_texts_oldest_first_with_kind_and_sender(twilio):
    url, state = twilio
    first = state.receive("+15550111111", "Yes, call me", NOW - timedelta(hours=3))
    stop = state.receive("+15550122222", "STOP", NOW - timedelta(hours=2))
    state.receive("+15550133333", "to another number", NOW - timedelta(hours=1), to="+15559999999")

    found = fetch(url)

    assert [(m.external_id, m.kind, m.sender, m.body) for m, _ in found] == [
        (first, "reply", "+15550111111", "Yes, call me"),
        (stop, "opt_out", "+15550122222", "STOP"),
    ]
    assert found[0][0].received_at == "2026-11-30T15:00:00Z"
    assert (found[0][0].channel, found[0][0].source) == ("sms", "twilio")
    method, path = state.requests[0]
    assert method == "GET" and f"To=%2B{NUMBER[1:]}" in path and "DateSent%3E%3D=2026-11-16" in path


def test_outbound_texts_in_the_list_are_not_inbound(twilio):
    url, state = twilio
    httpx.post(f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
               data={"To": NUMBER, "From": "+15550199999", "Body": "hi"},
               auth=(ACCOUNT_SID, AUTH_TOKEN))  # fmt: skip
    assert fetch(url) == []


def test_pages_are_followed_and_nothing_is_read_twice(twilio):
    url, state = twilio
    sids = [
        state.receive(f"+1555020{i:04d}", f"text {i}", NOW - timedelta(minutes=250 - i))
        for i in range(250)
    ]
    found = fetch(url)
    assert [m.external_id for m, _ in found] == sids  # 3 pages of 100, oldest first
    assert len([r for r in state.requests if "Messages.json" in r[1]]) == 3

    cursors = {"inbound": found[-1][1]}
    assert fetch(url, cursors) == []
    later = state.receive("+15550300000", "one more", NOW - timedelta(minutes=1))
    assert [m.external_id for m, _ in fetch(url, cursors)] == [later]


def test_texts_in_the_same_second_as_the_cursor_are_neither_lost_nor_repeated(twilio):
    url, state = twilio
    second = NOW - timedelta(minutes=5)
    a = state.receive("+15550111111", "first", second)
    cursors = {"inbound": fetch(url)[-1][1]}
    b = state.receive("+15550122222", "same second, after the sync", second)
    found = fetch(url, cursors)
    assert [m.external_id for m, _ in found] == [b]
    position = found[-1][1].position
    assert position == " ".join(["2026-11-30T17:55:00Z", *sorted([a, b])])
    assert fetch(url, {"inbound": found[-1][1]}) == []


def test_statuses_of_sent_texts(twilio):
    url, state = twilio
    api = f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    sent = [
        httpx.post(api, data={"To": f"+1555040000{i}", "From": NUMBER, "Body": "hi"},
                   auth=(ACCOUNT_SID, AUTH_TOKEN)).json()["sid"]
        for i in range(3)
    ]  # fmt: skip
    assert [m["status"] for m in state.outbound()] == ["queued"] * 3
    state.finish(sent[0], "delivered")
    state.finish(sent[1], "undelivered", 30003, "Unreachable destination handset")
    state.finish(sent[2], "failed", 21610, "Attempt to send to unsubscribed recipient")

    found = list(fetcher(url).statuses([*sent, "SM" + "f" * 32]))

    assert [(s.provider_id, s.status, s.error_code) for s in found] == [
        (sent[0], "delivered", None),
        (sent[1], "undelivered", "30003"),
        (sent[2], "failed", "21610"),
    ]  # the unknown sid (404) is skipped
    assert found[1].error_message == "Unreachable destination handset"


def test_wrong_token_is_a_source_error_without_the_token(twilio):
    url, _ = twilio
    with pytest.raises(SourceError) as error:
        fetch(url, auth_token="wrong-token-1234")
    text = str(error.value)
    assert text.startswith(f"account acme: twilio://{ACCOUNT_SID}/{NUMBER}: ")
    assert "authentication refused: HTTP 401 (Twilio 20003: Authenticate)" in text
    assert "wrong-token-1234" not in text and AUTH_TOKEN not in text


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_source_errors(twilio, status):
    url, state = twilio
    state.fail(status)
    with pytest.raises(SourceError, match=f"HTTP {status}"):
        fetch(url)


def test_garbage_is_a_source_error(twilio):
    url, state = twilio
    state.fail(200, b"<html>not json</html>")
    with pytest.raises(SourceError, match="not JSON"):
        fetch(url)


def test_server_down_is_a_source_error():
    with twilio_server() as (url, _):
        pass  # stopped: nothing listens there now
    with pytest.raises(SourceError, match="ConnectError"):
        fetch(url)


def test_a_failure_on_a_later_page_yields_nothing_and_the_next_sync_reads_all(twilio):
    url, state = twilio
    for i in range(150):
        state.receive(f"+1555020{i:04d}", f"text {i}", NOW - timedelta(minutes=200 - i))
    state.fail_request(2, 502)  # the second page
    found = []
    with pytest.raises(SourceError, match="HTTP 502"):
        found.extend(fetcher(url).fetch({}, now=NOW_TEXT))
    # The list is newest first: yielding oldest first needs every page, so nothing was yielded
    # and no cursor moved past a text that was never read.
    assert found == []
    assert len(fetch(url)) == 150


def test_name_and_kind_are_known_before_any_request():
    f = TwilioFetcher("acme", {"account_sid": "AC1", "auth_token": "t", "from": NUMBER})
    assert (f.kind, f.name) == ("twilio", f"twilio://AC1/{NUMBER}")


def test_a_server_that_never_answers_times_out_as_a_source_error():
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    started = time.monotonic()
    try:
        f = TwilioFetcher("acme", {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                   "from": NUMBER, "base_url": url}, timeout=1)  # fmt: skip
        with pytest.raises(SourceError, match="timed out"):
            list(f.fetch({}, now=NOW_TEXT))
    finally:
        server.close()
    assert time.monotonic() - started < 3


def test_many_statuses_come_from_the_list_of_sent_texts_not_one_request_each(twilio):
    url, state = twilio
    api = f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    with httpx.Client(auth=(ACCOUNT_SID, AUTH_TOKEN)) as client:
        sent = [
            client.post(api, data={"To": f"+1212555{i:04d}", "From": NUMBER, "Body": "hi"}).json()[
                "sid"
            ]
            for i in range(40)
        ]
    for i, sid in enumerate(sent):
        state.finish(
            sid, "undelivered" if i % 10 == 0 else "delivered", 30003 if i % 10 == 0 else None
        )
    other = "SM" + "e" * 32  # sent from another number (a messaging service): asked one by one
    state.requests.clear()

    found = {s.provider_id: s for s in fetcher(url).statuses([*sent, other])}

    assert set(found) == set(sent)
    assert [found[sid].error_code for sid in sent[::10]] == ["30003"] * 4
    assert found[sent[1]].status == "delivered"
    gets = [path for method, path in state.requests if method == "GET"]
    assert len(gets) == 2  # one page of the list, then the one it did not hold (404)
    assert "From=%2B15550100000" in gets[0] and gets[1].endswith(f"/Messages/{other}.json")
