"""parse.py: what each real-world mail is, the new text in it, and broken mail read anyway."""

from __future__ import annotations

import time

import pytest

from pipectl.inbound.parse import html_to_text, parse_message
from tests import mail_samples as samples
from tests.mail_samples import LEAD, SENT_ID


def parse(raw: bytes, uid: int = 3, internal_date: str | None = "2026-11-30T20:00:00Z"):
    return parse_message(raw, folder="INBOX", uidvalidity=7, uid=uid, internal_date=internal_date)


def test_gmail_reply_is_a_reply_with_only_the_new_text():
    m = parse(samples.gmail_reply())
    assert (m.kind, m.channel, m.source) == ("reply", "email", "imap")
    assert m.body == "Sounds good, let's talk Tuesday at 10."
    assert m.sender == LEAD
    assert m.references == (SENT_ID,)
    assert m.external_id == "<CAF=gmail.reply.1@mail.gmail.com>"
    assert m.received_at == "2026-11-30T18:02:11Z"  # its Date, in UTC
    assert "ann@acme.test" in m.recipients


def test_outlook_reply_in_html_loses_the_quoted_thread_and_is_not_an_auto_reply():
    m = parse(samples.outlook_reply())
    # X-Auto-Response-Suppress is on every Outlook mail: alone it does not make an auto-reply.
    assert m.kind == "reply"
    assert m.body.startswith("Yes, send me the pricing.")
    assert "Quick question" not in m.body and "From:" not in m.body


@pytest.mark.parametrize(
    "text, quoted",
    [
        ("Gerne, ruf mich an.", "Am Mo., 30. Nov. 2026 um 09:14 Uhr schrieb Ann <ann@acme.test>:"),
        ("D'accord, appelez-moi.", "Le lun. 30 nov. 2026 à 09:14, Ann <ann@acme.test> a écrit :"),
        ("Claro, hablemos.", "El lun, 30 nov 2026 a las 9:14, Ann (<ann@acme.test>) escribió:"),
    ],
)
def test_quoted_history_is_removed_in_other_languages(text, quoted):
    raw = samples.plain_mail(text=f"{text}\n\n{quoted}\n> Hi Bob,\n> Quick question?\n")
    assert parse(raw).body == text


@pytest.mark.parametrize("sample", [samples.exchange_auto_reply, samples.gmail_vacation])
def test_out_of_office_answers_are_auto_replies(sample):
    m = parse(sample())
    assert m.kind == "auto_reply"
    assert m.sender == LEAD and m.references[0] == SENT_ID


@pytest.mark.parametrize(
    "extra",
    [
        "Auto-Submitted: auto-generated",
        "X-Autorespond: yes",
        "Precedence: junk",
        "Precedence: list",
        "List-Id: Buyers <buyers.lists.buyer.test>",
        "X-Auto-Response-Suppress: All",
    ],
)
def test_auto_responder_headers(extra):
    subject = "Automatic reply: Hello" if "Suppress" in extra else "Hello"
    assert parse(samples.plain_mail(subject=subject, extra=extra)).kind == "auto_reply"


def test_auto_submitted_no_is_a_person():
    assert parse(samples.plain_mail(extra="Auto-Submitted: no")).kind == "reply"


@pytest.mark.parametrize(
    "sample, status, diagnostic",
    [
        (samples.postfix_dsn, "5.1.1", "550 5.1.1 <bob@buyer.test>: Recipient address rejected"),
        (samples.exim_dsn, "5.0.0", "550 5.1.1 The email account that you tried to reach"),
        (samples.microsoft_ndr, "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
        (samples.gmail_dsn, "5.1.1", "550-5.1.1 The email account that you tried to reach"),
    ],
)
def test_hard_bounces_name_the_original_the_recipient_and_the_status(sample, status, diagnostic):
    m = parse(sample())
    # Every DSN also carries Auto-Submitted: a bounce is a bounce all the same.
    assert m.kind == "bounce"
    assert m.bounced_message_id == SENT_ID  # from the returned headers, not the outer ones
    assert m.failed_recipient == LEAD
    assert m.status == status
    assert m.diagnostic.startswith(diagnostic)
    assert "\n" not in m.diagnostic


def test_delayed_dsn_is_a_soft_bounce():
    m = parse(samples.postfix_delayed())
    assert (m.kind, m.status, m.failed_recipient) == ("soft_bounce", "4.4.1", LEAD)
    assert m.bounced_message_id == SENT_ID


def test_a_successful_delivery_report_is_not_a_reply():
    raw = samples.postfix_dsn().replace(b"Action: failed", b"Action: delivered")
    raw = raw.replace(b"Status: 5.1.1", b"Status: 2.0.0")
    assert parse(raw).kind == "auto_reply"


def test_unsubscribe_mail_and_a_keyword_answer_are_opt_outs():
    unsubscribe = parse(samples.unsubscribe_mail())
    assert unsubscribe.kind == "opt_out"
    assert "unsubscribe@acme.test" in unsubscribe.recipients
    keyword = parse(samples.opt_out_reply())
    assert (keyword.kind, keyword.body) == ("opt_out", "Unsubscribe.")


def test_a_reply_that_mentions_stopping_is_still_a_reply():
    raw = samples.plain_mail(text="Please don't stop, this is useful. Call me.")
    assert parse(raw).kind == "reply"


def test_no_message_id_gets_folder_uidvalidity_and_uid():
    assert parse(samples.no_message_id(), uid=42).external_id == "INBOX/7/42"


def test_no_date_uses_when_the_server_received_it():
    assert parse(samples.no_date()).received_at == "2026-11-30T20:00:00Z"


def test_a_date_far_in_the_future_is_not_believed():
    raw = samples.plain_mail(date="Sat, 1 Jan 2099 00:00:00 +0000")
    assert parse(raw).received_at == "2026-11-30T20:00:00Z"


def test_unknown_charset_is_read_with_replacement_characters():
    m = parse(samples.unknown_charset())
    assert m.kind == "reply"
    assert m.body.startswith("Interesting") and m.body.endswith("offer, call me.")
    assert m.subject.startswith("Qapla")


def test_broken_mime_is_still_a_message():
    m = parse(samples.broken_mime())
    assert (m.kind, m.external_id, m.sender) == ("reply", "<broken.1@buyer.test>", LEAD)


def test_garbage_bytes_are_still_a_message():
    m = parse(b"\x00\xff\xfe not mail at all \r\n\r\n\x80\x81", uid=9, internal_date=None)
    assert m.external_id == "INBOX/7/9"
    assert m.kind == "reply" and m.received_at.endswith("Z")


def test_a_10_mb_attachment_is_skipped_quickly():
    started = time.perf_counter()
    m = parse(samples.big_attachment())
    assert m.body == "Our requirements are attached."
    assert time.perf_counter() - started < 5


def test_a_1_mb_header_keeps_the_newest_references():
    m = parse(samples.huge_header())
    assert m.body == "Hi there"
    assert len(m.references) == 50 and m.references[0] == "<ref29999.abcdefghij@buyer.test>"


def test_html_to_text_drops_scripts_styles_and_blockquotes():
    html = (
        "<html><head><style>p{}</style></head><body><p>Yes&nbsp;please</p>"
        "<script>x()</script><blockquote>old</blockquote><p>Bob</p></body></html>"
    )
    assert html_to_text(html) == "Yes please\n\nBob"


def test_x_auto_response_suppress_with_an_ordinary_subject_is_a_person():
    raw = samples.plain_mail(subject="RE: Hello", extra="X-Auto-Response-Suppress: All")
    assert parse(raw).kind == "reply"


@pytest.mark.parametrize(
    "header",
    [
        "________________________________\nFrom: Ann Seller <ann@acme.test>\n"
        "Sent: Monday, November 30, 2026 9:14 AM\nTo: Bob Buyer <bob@buyer.test>\n"
        "Subject: Quick question",
        "-----Original Message-----\nFrom: Ann Seller <ann@acme.test>\n"
        "Sent: Monday, November 30, 2026 9:14 AM\nSubject: Quick question",
        "Von: Ann Seller <ann@acme.test>\nGesendet: Montag, 30. November 2026 09:14\n"
        "An: Bob Buyer <bob@buyer.test>\nBetreff: Quick question",
    ],
)
def test_outlook_plain_text_header_blocks_are_removed(header):
    text = f"Yes, send me the pricing.\n\n{header}\n\nHi Bob,\nDo you have 15 minutes?\nAnn\n"
    assert parse(samples.plain_mail(text=text)).body == "Yes, send me the pricing."


def test_a_dsn_without_the_returned_message_names_it_by_x_original_message_id():
    m = parse(samples.gmail_dsn(returned=False))
    assert (m.kind, m.bounced_message_id, m.failed_recipient) == ("bounce", SENT_ID, LEAD)
