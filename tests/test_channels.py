"""Channels against real servers on 127.0.0.1: what the server received, and what was raised."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from pipectl.channels import ChannelError, PermanentError, SendAction, TransientError
from pipectl.channels.render import render_message
from pipectl.channels.senders import SenderPool
from tests.channel_servers import (
    free_port,
    http_server,
    server_tls_context,
    smtp_server,
    tls_certificate,
)

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

FROM = "Acme Sales <sales@acme.example>"
ANN = {
    "email": "ann@lead.example",
    "phone": "+15550100001",
    "first_name": "Ann",
    "last_name": "Lee",
}
BOB = {"email": "bob@lead.example", "phone": "+15550100002", "first_name": "Bob", "last_name": "Ng"}


def email_action(
    config: dict, lead: dict | None = None, action_id: int = 1, **params
) -> SendAction:
    params.setdefault("subject", "Thanks for your interest, {{ lead.first_name }}")
    params.setdefault("body", "Hi {{ lead.first_name }} {{ lead.last_name }}, welcome.")
    return SendAction(action_id, 7, "acme", "email", params, lead or ANN, config)


def sms_action(config: dict, lead: dict | None = None, action_id: int = 1, **params) -> SendAction:
    params.setdefault("body", "Hi {{ lead.first_name }}, did you see our email?")
    return SendAction(action_id, 7, "acme", "sms", params, lead or ANN, config)


def smtp_config(port: int, **extra) -> dict:
    return {
        "transport": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": FROM,
        "timeout": 2,
        **extra,
    }


@pytest.fixture
def pool(tmp_path: Path):
    senders = SenderPool(tmp_path / "outbox", env={})
    yield senders
    senders.close()


# --- rendering and SMTP delivery -----------------------------------------------------------


def test_subject_and_body_are_rendered_per_lead(pool):
    with smtp_server() as (server, smtp):
        config = smtp_config(server.port)
        for i, lead in enumerate([ANN, {**BOB, "fields": {"company_name": "Ng & Co"}}], 1):
            action = email_action(config, lead, action_id=i, html="<p>Hi {{ lead.first_name }}</p>")
            assert pool.send(render_message(action)) == f"Q{i:05d}"  # the server's queue id
    ann, bob = smtp.to("ann@lead.example"), smtp.to("bob@lead.example")
    assert len(ann) == len(bob) == 1
    msg = ann[0].message
    assert msg["Subject"] == "Thanks for your interest, Ann"
    assert msg["From"] == FROM and msg["To"] == "ann@lead.example"
    assert msg["Message-ID"] == "<pipectl.1@acme.example>" and msg["Date"]
    assert ann[0].mail_from == "sales@acme.example"
    assert msg.get_body(("plain",)).get_content().strip() == "Hi Ann Lee, welcome."
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hi Ann</p>"
    assert bob[0].message["Subject"] == "Thanks for your interest, Bob"


def test_custom_fields_reach_templates_and_html_escapes_lead_data(pool):
    lead = {**ANN, "first_name": "<b>Ann</b>", "fields": {"company_name": "Ng & Co"}}
    action = email_action(
        {}, lead, body="{{ lead.company_name }}", html="<p>{{ lead.first_name }}</p>"
    )
    message = render_message(action)
    assert message.body == "Ng & Co"
    assert message.html == "<p>&lt;b&gt;Ann&lt;/b&gt;</p>"


def test_reply_to_and_list_unsubscribe_headers(pool):
    with smtp_server() as (server, smtp):
        config = smtp_config(
            server.port,
            reply_to="help@acme.example",
            list_unsubscribe="<mailto:unsubscribe@acme.example>",
        )
        pool.send(render_message(email_action(config)))
    msg = smtp.received[0].message
    assert msg["Reply-To"] == "help@acme.example"
    assert msg["List-Unsubscribe"] == "<mailto:unsubscribe@acme.example>"


def test_auth_with_password_from_environment(tmp_path):
    env = {"SMTP_USER": "sales", "SMTP_PASSWORD": "correct-horse-battery"}
    with smtp_server(auth=("sales", "correct-horse-battery")) as (server, smtp):
        config = smtp_config(server.port, username="${SMTP_USER}", password="${SMTP_PASSWORD}")
        senders = SenderPool(tmp_path, env=env)
        senders.send(render_message(email_action(config)))
        senders.close()
    assert smtp.logins == [("sales", "correct-horse-battery")]
    assert [r.rcpt_tos for r in smtp.received] == [["ann@lead.example"]]


def test_auth_refused_is_transient_hides_the_password_and_a_fix_lets_it_go_out(tmp_path, caplog):
    env = {"SMTP_USER": "sales", "SMTP_PASSWORD": "wrong-password-123"}
    with smtp_server(auth=("sales", "right-password-456")) as (server, smtp):
        config = smtp_config(server.port, username="${SMTP_USER}", password="${SMTP_PASSWORD}")
        senders = SenderPool(tmp_path, env=env)
        message = render_message(email_action(config))
        with pytest.raises(TransientError) as failed:
            senders.send(message)
        env["SMTP_PASSWORD"] = "right-password-456"  # the operator fixes the environment
        senders.send(message)
        senders.close()
    shown = "".join(traceback.format_exception(failed.value)) + repr(failed.value) + caplog.text
    assert "authentication refused (535)" in str(failed.value)
    assert "wrong-password-123" not in shown
    assert smtp.logins[0] == ("sales", "wrong-password-123")
    assert len(smtp.received) == 1


def test_missing_variable_is_transient_and_names_it(pool):
    config = smtp_config(free_port(), username="sales", password="${SMTP_PASSWORD}")
    with pytest.raises(TransientError) as failed:
        pool.send(render_message(email_action(config)))
    assert str(failed.value) == "channel email: environment variable SMTP_PASSWORD is not set"


def test_451_is_transient_550_is_permanent_and_the_connection_survives(pool):
    with smtp_server() as (server, smtp):
        smtp.replies["busy@lead.example"] = "451 4.3.0 try again later"
        smtp.replies["gone@lead.example"] = "550 5.1.1 no such user"
        config = smtp_config(server.port)
        with pytest.raises(TransientError, match="451 4.3.0 try again later"):
            pool.send(render_message(email_action(config, {"email": "busy@lead.example"})))
        with pytest.raises(PermanentError, match="recipient refused: 550 5.1.1 no such user"):
            pool.send(render_message(email_action(config, {"email": "gone@lead.example"})))
        pool.send(render_message(email_action(config)))
    assert [r.rcpt_tos for r in smtp.received] == [["ann@lead.example"]]
    assert smtp.connections == 1


def test_421_is_transient(pool):
    with smtp_server() as (server, smtp):
        smtp.replies["ann@lead.example"] = "421 4.7.0 closing, too busy"
        with pytest.raises(TransientError, match="421"):
            pool.send(render_message(email_action(smtp_config(server.port))))
    assert smtp.received == []


def test_server_down_is_transient_then_up_delivers(pool):
    port = free_port()
    message = render_message(email_action(smtp_config(port)))
    with pytest.raises(TransientError, match="ConnectionRefusedError"):
        pool.send(message)
    with smtp_server(port) as (_, smtp):
        pool.send(message)
    assert [r.rcpt_tos for r in smtp.received] == [["ann@lead.example"]]


def test_silent_server_times_out_as_transient(pool):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        config = smtp_config(listener.getsockname()[1], timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientError, match="timed out"):
            pool.send(render_message(email_action(config)))
    assert time.monotonic() - started < 2


needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")


@needs_openssl
def test_starttls_and_ssl_verify_the_server_certificate(pool, tmp_path):
    cert, key = tls_certificate(tmp_path)
    context = server_tls_context(cert, key)
    with smtp_server(tls_context=context, require_starttls=True) as (server, smtp):
        config = smtp_config(server.port, security="starttls", ca_file=str(cert))
        pool.send(render_message(email_action(config, action_id=1)))
        untrusted = smtp_config(server.port, security="starttls")
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            pool.send(render_message(email_action(untrusted, action_id=2)))
    with smtp_server(ssl_context=context) as (server, implicit):
        config = smtp_config(server.port, security="ssl", ca_file=str(cert))
        pool.send(render_message(email_action(config, action_id=3)))
    assert [(r.tls, r.message["Message-ID"]) for r in smtp.received + implicit.received] == [
        (True, "<pipectl.1@acme.example>"),
        (True, "<pipectl.3@acme.example>"),
    ]


def test_one_connection_per_thread_for_many_messages(tmp_path):
    with smtp_server() as (server, smtp):
        config = smtp_config(server.port)
        senders = SenderPool(tmp_path, env={})

        def work(offset: int) -> None:
            for i in range(10):
                senders.send(render_message(email_action(config, action_id=offset + i)))

        threads = [threading.Thread(target=work, args=(n * 100,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        senders.close()
        assert len(smtp.received) == 40
        assert smtp.connections == 4


def test_without_reuse_every_message_opens_a_connection(tmp_path):
    with smtp_server() as (server, smtp):
        senders = SenderPool(tmp_path, env={}, reuse_connections=False)
        for i in range(5):
            senders.send(render_message(email_action(smtp_config(server.port), action_id=i)))
        assert len(smtp.received) == 5
        assert smtp.connections == 5


def test_reconnects_once_when_the_server_closed_an_idle_connection(pool):
    with smtp_server(timeout=0.2) as (server, smtp):  # aiosmtpd drops idle clients with a 421
        config = smtp_config(server.port)
        pool.send(render_message(email_action(config, action_id=1)))
        time.sleep(0.5)
        pool.send(render_message(email_action(config, action_id=2)))
    assert len(smtp.received) == 2
    assert smtp.connections == 2


def test_repeated_send_carries_the_same_message_id(pool):
    with smtp_server() as (server, smtp):
        action = email_action(smtp_config(server.port), action_id=42)
        pool.send(render_message(action))
        pool.send(render_message(action))
    ids = [r.message["Message-ID"] for r in smtp.received]
    assert ids == ["<pipectl.42@acme.example>"] * 2


def test_header_injection_through_lead_data_adds_no_header(pool):
    lead = {**ANN, "first_name": "Ann\r\nBcc: victim@evil.example\r\nX-Evil: 1"}
    with smtp_server() as (server, smtp):
        pool.send(render_message(email_action(smtp_config(server.port), lead)))
    (received,) = smtp.received
    msg = received.message
    assert received.rcpt_tos == ["ann@lead.example"]
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["To"] == "ann@lead.example"
    assert msg["Subject"] == "Thanks for your interest, Ann Bcc: victim@evil.example X-Evil: 1"


def test_an_address_with_a_line_break_is_refused():
    lead = {**ANN, "email": "ann@lead.example\r\nBcc: victim@evil.example"}
    with pytest.raises(PermanentError, match="email address is not valid"):
        render_message(email_action({}, lead))


# --- templates -----------------------------------------------------------------------------


def test_sandbox_refuses_attribute_tricks():
    action = email_action({}, subject="{{ ''.__class__.__mro__ }}")
    with pytest.raises(PermanentError) as failed:
        render_message(action)
    assert str(failed.value).startswith("template error in subject:")
    assert "unsafe" in str(failed.value)
    assert failed.value.__cause__ is None


def test_sandbox_refuses_templates_that_would_exhaust_memory():
    for source in ("{{ 'x' * 1000000000 }}", "{{ 10 ** 100000000 }}"):
        with pytest.raises(PermanentError, match="template error in body: .*too"):
            render_message(email_action({}, body=source))


def test_lead_data_is_sent_literally_never_evaluated(pool):
    lead = {**ANN, "first_name": "{{ 7*7 }}{% if true %}x{% endif %}"}
    with smtp_server() as (server, smtp):
        pool.send(render_message(email_action(smtp_config(server.port), lead)))
    body = smtp.received[0].message.get_content()
    assert "{{ 7*7 }}{% if true %}x{% endif %}" in body and "49" not in body


def test_undefined_variable_is_a_permanent_template_error():
    with pytest.raises(PermanentError, match="template error in body: .*nickname"):
        render_message(email_action({}, body="Hi {{ nickname }}"))
    # A field this lead lacks is not an error: it renders as nothing.
    assert render_message(email_action({}, body="Hi{{ lead.nickname }}")).body == "Hi"
    # ...but arithmetic on it is, and the error says which field it was.
    with pytest.raises(PermanentError, match="^template error in body: lead.visits is empty for"):
        render_message(email_action({}, body="{{ lead.visits + 1 }}"))


def test_lead_without_the_channels_address_is_permanent():
    with pytest.raises(PermanentError, match="^lead has no email address$"):
        render_message(email_action({}, {"phone": "+15550100001", "first_name": "Ann"}))
    with pytest.raises(PermanentError, match="^lead has no phone number$"):
        render_message(sms_action({}, {"email": "ann@lead.example", "first_name": "Ann"}))


def test_message_id_domain_comes_from_the_from_address():
    assert render_message(email_action({}, action_id=9)).message_id == "<pipectl.9@pipectl.local>"
    configured = render_message(email_action({"from": FROM}, action_id=9))
    assert configured.message_id == "<pipectl.9@acme.example>"


# --- outbox --------------------------------------------------------------------------------


def test_outbox_is_the_default_and_a_repeat_overwrites(tmp_path):
    outbox = tmp_path / "outbox"
    senders = SenderPool(outbox, env={})
    action = email_action({"from": FROM}, action_id=12)
    assert senders.send(render_message(action)) == "00000012-email.eml"
    senders.send(render_message(action))
    senders.send(render_message(sms_action({"from": "+15550100000"}, action_id=13)))
    senders.close()
    assert sorted(p.name for p in outbox.iterdir()) == ["00000012-email.eml", "00000013-sms.json"]
    from email import message_from_bytes, policy

    eml = message_from_bytes((outbox / "00000012-email.eml").read_bytes(), policy=policy.default)
    assert eml["To"] == "ann@lead.example" and eml["Message-ID"] == "<pipectl.12@acme.example>"
    assert eml.get_content().strip() == "Hi Ann Lee, welcome."
    assert json.loads((outbox / "00000013-sms.json").read_text()) == {
        "to": "+15550100001",
        "from": "+15550100000",
        "body": "Hi Ann, did you see our email?",
        "lead_id": 7,
        "action_id": 13,
    }


def test_unknown_transport_is_a_broken_channel(pool):
    with pytest.raises(TransientError, match="channel sms: unknown transport 'pigeon'"):
        pool.send(render_message(sms_action({"transport": "pigeon"})))


# --- SMS: Twilio and webhook ---------------------------------------------------------------

TWILIO_ENV = {"TWILIO_ACCOUNT_SID": "AC0123456789", "TWILIO_AUTH_TOKEN": "tok-very-secret-999"}


def twilio_config(base_url: str, **extra) -> dict:
    return {
        "transport": "twilio",
        "account_sid": "${TWILIO_ACCOUNT_SID}",
        "auth_token": "${TWILIO_AUTH_TOKEN}",
        "from": "+15550100000",
        "base_url": base_url,
        "timeout": 2,
        **extra,
    }


def test_twilio_form_post_with_basic_auth_returns_the_sid(tmp_path):
    with http_server() as (url, http):
        senders = SenderPool(tmp_path, env=TWILIO_ENV)
        sids = [senders.send(render_message(sms_action(twilio_config(url)))) for _ in range(3)]
        senders.close()
    assert sids == ["SM0001"] * 3
    request = http.requests[0]
    assert request.path == "/2010-04-01/Accounts/AC0123456789/Messages.json"
    auth = base64.b64decode(request.headers["Authorization"].removeprefix("Basic ")).decode()
    assert auth == "AC0123456789:tok-very-secret-999"
    assert parse_qs(request.body.decode()) == {
        "To": ["+15550100001"],
        "From": ["+15550100000"],
        "Body": ["Hi Ann, did you see our email?"],
    }
    assert http.connections == 1  # one client, kept alive


def test_twilio_429_carries_retry_after_seconds_and_http_dates(tmp_path):
    with http_server() as (url, http):
        senders = SenderPool(tmp_path, env=TWILIO_ENV)
        http.answer(429, {"message": "Too Many Requests"}, Retry_After="17")
        with pytest.raises(TransientError) as failed:
            senders.send(render_message(sms_action(twilio_config(url))))
        assert failed.value.retry_after == 17
        assert "HTTP 429" in str(failed.value)
        later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
        http.answer(503, b"down", Retry_After=later)
        with pytest.raises(TransientError) as failed:
            senders.send(render_message(sms_action(twilio_config(url))))
        assert 100 < failed.value.retry_after <= 120


def test_twilio_500_is_transient_400_is_permanent_without_the_token(tmp_path):
    with http_server() as (url, http):
        senders = SenderPool(tmp_path, env=TWILIO_ENV)
        http.answer(500, b"internal error")
        with pytest.raises(TransientError, match="HTTP 500: internal error") as failed:
            senders.send(render_message(sms_action(twilio_config(url))))
        assert failed.value.retry_after is None
        echo = {"code": 21211, "message": "bad To; your token tok-very-secret-999"}
        http.answer(400, echo)
        with pytest.raises(PermanentError) as failed:
            senders.send(render_message(sms_action(twilio_config(url))))
    assert "HTTP 400" in str(failed.value) and "21211" in str(failed.value)
    assert "tok-very-secret-999" not in str(failed.value)


def test_twilio_401_is_a_broken_channel(tmp_path):
    with http_server() as (url, http):
        http.answer(401, {"message": "Authenticate"})
        with pytest.raises(TransientError, match="authentication refused: HTTP 401"):
            SenderPool(tmp_path, env=TWILIO_ENV).send(
                render_message(sms_action(twilio_config(url)))
            )


def test_webhook_posts_the_exact_json_with_headers_from_env(tmp_path):
    with http_server() as (url, http):
        config = {
            "transport": "webhook",
            "url": f"{url}/hooks/sms",
            "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},
        }
        senders = SenderPool(tmp_path, env={"HOOK_TOKEN": "hook-secret-77"})
        provider_id = senders.send(render_message(sms_action(config, action_id=31)))
        senders.close()
    (request,) = http.requests
    assert request.path == "/hooks/sms"
    assert request.headers["Authorization"] == "Bearer hook-secret-77"
    assert request.json() == {
        "to": "+15550100001",
        "body": "Hi Ann, did you see our email?",
        "lead_id": 7,
        "action_id": 31,
    }
    assert provider_id == "wh-1"


def test_sms_server_down_is_transient(pool):
    config = {"transport": "webhook", "url": f"http://127.0.0.1:{free_port()}/x", "timeout": 1}
    with pytest.raises(TransientError, match="channel sms: 127.0.0.1: ConnectError"):
        pool.send(render_message(sms_action(config)))


def test_sms_missing_variable_names_it(pool):
    with pytest.raises(TransientError) as failed:
        pool.send(render_message(sms_action(twilio_config("http://127.0.0.1:9"))))
    assert str(failed.value) == "channel sms: environment variable TWILIO_ACCOUNT_SID is not set"


def test_only_secrets_are_hidden_from_errors_not_hosts_or_usernames():
    from pipectl.channels.resolve import resolve_config

    env = {
        "SMTP_HOST": "smtp.acme.example",
        "SMTP_USER": "sales-team",
        "SMTP_PASSWORD": "pw-0123456789",
        "HOOK_TOKEN": "hook-tok-4455",
        "HOOK_USER": "hookuser",
        "HOOK_PW": "hook-pw-8899",
        "HOOK_URL": "https://hooks.example/send?key=full-url-key-7",
        "API": "api.example",
    }
    config = {
        "host": "${SMTP_HOST}",
        "port": 587,
        "username": "${SMTP_USER}",
        "password": "${SMTP_PASSWORD}",
        "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},
        "url": "https://${HOOK_USER}:${HOOK_PW}@${API}/v1/${HOOK_USER}?t=${HOOK_TOKEN}",
        "backup_url": "${HOOK_URL}",
        "smtp_password": "literal-in-yaml",
    }
    resolved = resolve_config("email", config, env)
    text = " ".join(map(str, resolved.config.values())) + " " + " ".join(env.values())
    shown = resolved.scrub(text)
    for visible in ("smtp.acme.example", "sales-team", "@api.example/v1/", "hooks.example/send?"):
        assert visible in shown
    secrets = ("pw-0123456789", "hook-tok-4455", "hook-pw-8899", "full-url-key-7", "hookuser")
    for secret in secrets:
        assert secret in text and secret not in shown
    assert "literal-in-yaml" not in shown and "Bearer hook" not in shown


# --- whose fault: the channel's (held) or the lead's (retried or failed) ---------------------


def test_sender_refused_login_refused_and_server_down_are_the_channels(pool, tmp_path):
    with smtp_server() as (server, smtp):
        smtp.mail_reply = "553 5.7.1 sender address rejected"
        with pytest.raises(ChannelError, match="sender refused: 553 5.7.1 sender address"):
            pool.send(render_message(email_action(smtp_config(server.port))))
    env = {"SMTP_PASSWORD": "wrong-password-123"}
    with smtp_server(auth=("sales", "right-password-456")) as (server, _):
        config = smtp_config(server.port, username="sales", password="${SMTP_PASSWORD}")
        with pytest.raises(ChannelError, match=r"authentication refused \(535\)"):
            SenderPool(tmp_path, env=env).send(render_message(email_action(config)))
    with pytest.raises(ChannelError, match="ConnectionRefusedError"):
        pool.send(render_message(email_action(smtp_config(free_port()))))
    with pytest.raises(ChannelError, match="SMTP_PASSWORD is not set"):
        pool.send(render_message(email_action(smtp_config(1, password="${SMTP_PASSWORD}"))))


def test_recipient_errors_are_the_leads_not_the_channels(pool):
    with smtp_server() as (server, smtp):
        smtp.replies["busy@lead.example"] = "451 4.3.0 try again later"
        config = smtp_config(server.port)
        with pytest.raises(TransientError) as busy:
            pool.send(render_message(email_action(config, {"email": "busy@lead.example"})))
        assert not isinstance(busy.value, ChannelError)


def test_webhook_404_and_503_are_the_channels_400_and_500_the_leads(pool):
    with http_server() as (url, http):
        config = {"transport": "webhook", "url": f"{url}/hooks/sms", "timeout": 2}
        http.answer(404, b"no such hook")
        with pytest.raises(ChannelError, match="HTTP 404: no such hook"):
            pool.send(render_message(sms_action(config)))
        http.answer(503, b"maintenance", Retry_After="30")
        with pytest.raises(ChannelError, match="HTTP 503") as down:
            pool.send(render_message(sms_action(config)))
        assert down.value.retry_after == 30
        http.answer(400, b"invalid number")
        with pytest.raises(PermanentError, match="HTTP 400: invalid number"):
            pool.send(render_message(sms_action(config)))
        http.answer(500, b"oops")
        with pytest.raises(TransientError) as broke:
            pool.send(render_message(sms_action(config)))
        assert not isinstance(broke.value, ChannelError)


def test_twilio_errors_about_to_fail_the_lead_about_from_hold_the_channel(tmp_path):
    with http_server() as (url, http):
        senders = SenderPool(tmp_path, env=TWILIO_ENV)
        http.answer(400, {"code": 21211, "message": "The 'To' number is not a valid phone number"})
        with pytest.raises(PermanentError, match="21211"):
            senders.send(render_message(sms_action(twilio_config(url))))
        http.answer(400, {"code": 21606, "message": "The 'From' phone number is not valid"})
        with pytest.raises(ChannelError, match="21606"):
            senders.send(render_message(sms_action(twilio_config(url))))
