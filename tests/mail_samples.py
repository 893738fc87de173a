"""Mail as real systems send it: replies, auto-replies, DSNs and broken messages, as raw bytes.

Each builder takes the addresses and the Message-ID of the send it answers, so the same sample
serves parse tests, IMAP tests and the end-to-end sync. Header layouts follow what Gmail,
Outlook/Exchange Online, Postfix and Exim really write (names and addresses are made up).
"""

from __future__ import annotations

import base64

SENT_ID = "<pipectl.41.a1b2c3@acme.test>"
OURS = "ann@acme.test"
LEAD = "bob@buyer.test"


def _crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def gmail_reply(
    *,
    sender: str = LEAD,
    to: str = OURS,
    answers: str = SENT_ID,
    text: str = "Sounds good, let's talk Tuesday at 10.",
    message_id: str = "<CAF=gmail.reply.1@mail.gmail.com>",
    date: str = "Mon, 30 Nov 2026 10:02:11 -0800",
) -> bytes:
    """Gmail's web client: multipart/alternative, the thread quoted under 'On ... wrote:'."""
    return _crlf(f"""
Delivered-To: {to}
Received: by 2002:a05:6a10:1234:b0:5c1:aaaa with SMTP id x12csp1234567pxb;
        Mon, 30 Nov 2026 10:02:12 -0800 (PST)
MIME-Version: 1.0
References: {answers}
In-Reply-To: {answers}
From: Bob Buyer <{sender}>
Date: {date}
Message-ID: {message_id}
Subject: Re: Quick question about your pipeline
To: Ann Seller <{to}>
Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60718"

--000000000000a1b2c3d4e5f60718
Content-Type: text/plain; charset="UTF-8"

{text}

On Mon, Nov 30, 2026 at 9:14 AM Ann Seller <{to}> wrote:

> Hi Bob,
>
> Do you have 15 minutes this week to talk about your sales pipeline?
>
> Ann
>

--000000000000a1b2c3d4e5f60718
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<div dir=3D"ltr">{text}</div><br><div class=3D"gmail_quote"><div dir=3D"ltr" =
class=3D"gmail_attr">On Mon, Nov 30, 2026 at 9:14 AM Ann Seller &lt;<a href=3D=
"mailto:{to}">{to}</a>&gt; wrote:<br></div><blockquote class=3D"gmail_quote" =
style=3D"margin:0px 0px 0px 0.8ex">Hi Bob,<br><br>Do you have 15 minutes this =
week?<br><br>Ann</blockquote></div>

--000000000000a1b2c3d4e5f60718--
""")


def outlook_reply(
    *,
    sender: str = LEAD,
    to: str = OURS,
    answers: str = SENT_ID,
    text: str = "Yes, send me the pricing.",
) -> bytes:
    """Outlook (Microsoft 365): HTML only here, the thread under a divRplyFwdMsg header block,
    Thread-Index and X-Auto-Response-Suppress set as on every Outlook mail."""
    html = f"""<html><head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<style type="text/css" style="display:none;"> P {{margin-top:0;margin-bottom:0;}} </style>
</head>
<body dir="ltr">
<div style="font-family: Aptos, Calibri, Helvetica, sans-serif; font-size: 12pt;">{text}</div>
<div style="font-family: Aptos, Calibri, Helvetica, sans-serif; font-size: 12pt;"><br></div>
<div style="font-family: Aptos, Calibri, Helvetica, sans-serif; font-size: 12pt;">Bob</div>
<div id="appendonsend"></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Ann Seller &lt;{to}&gt;<br>
<b>Sent:</b> Monday, November 30, 2026 9:14 AM<br>
<b>To:</b> Bob Buyer &lt;{sender}&gt;<br>
<b>Subject:</b> Quick question about your pipeline</font>
<div>&nbsp;</div></div>
<div>Hi Bob,<br>Do you have 15 minutes this week?<br>Ann</div>
</body>
</html>"""
    encoded = base64.encodebytes(html.encode()).decode()
    return _crlf(f"""
Received: from PH0PR11MB4965.namprd11.prod.outlook.com (2603:10b6:510:34::7) by
 SJ0PR11MB5939.namprd11.prod.outlook.com with HTTPS; Mon, 30 Nov 2026 18:20:41 +0000
From: Bob Buyer <{sender}>
To: Ann Seller <{to}>
Subject: RE: Quick question about your pipeline
Thread-Topic: Quick question about your pipeline
Thread-Index: AQHbQ2n7xJk2bN0m2kSlq0n3oW2p1g==
Date: Mon, 30 Nov 2026 18:20:40 +0000
Message-ID: <PH0PR11MB49651A2B3C4D5E6F7A8B9C0DA@PH0PR11MB4965.namprd11.prod.outlook.com>
References: {answers}
In-Reply-To: {answers}
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: base64
MIME-Version: 1.0

{encoded}""")


def exchange_auto_reply(*, sender: str = LEAD, to: str = OURS, answers: str = SENT_ID) -> bytes:
    """Exchange Online's automatic reply (out of office), as the Mailbox Rules Agent sends it."""
    return _crlf(f"""
From: Bob Buyer <{sender}>
To: Ann Seller <{to}>
Subject: Automatic reply: Quick question about your pipeline
Thread-Topic: Quick question about your pipeline
Thread-Index: AQHbQ2n7xJk2bN0m2kSlq0n3oW2p1rKzAAAB
Date: Mon, 30 Nov 2026 17:14:05 +0000
Message-ID: <b5d66930e76243eb8bddd885ad3fafdd@SJ0PR11MB5939.namprd11.prod.outlook.com>
In-Reply-To: {answers}
References: {answers}
Content-Language: en-US
X-MS-Has-Attach:
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: {sender}
X-MS-TNEF-Correlator:
x-ms-exchange-parent-message-id: {answers}
auto-submitted: auto-generated
x-ms-exchange-generated-message-source: Mailbox Rules Agent
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

I am out of the office until December 7 with limited access to email. For =
urgent matters please contact sales@buyer.test.

Bob
""")


def gmail_vacation(*, sender: str = LEAD, to: str = OURS, answers: str = SENT_ID) -> bytes:
    """Gmail's vacation responder: Auto-Submitted: auto-replied, Precedence: bulk, X-Autoreply."""
    return _crlf(f"""
Delivered-To: {to}
MIME-Version: 1.0
From: Bob Buyer <{sender}>
Date: Mon, 30 Nov 2026 09:15:02 -0800
References: {answers}
In-Reply-To: {answers}
Precedence: bulk
X-Autoreply: yes
Auto-Submitted: auto-replied
Message-ID: <CAJ=vacation.1@mail.gmail.com>
Subject: Re: Quick question about your pipeline
To: {to}
Content-Type: multipart/alternative; boundary="0000000000001122334455667788"

--0000000000001122334455667788
Content-Type: text/plain; charset="UTF-8"

Thanks for your email. I'm on vacation until Monday and will reply when I'm back.

--0000000000001122334455667788
Content-Type: text/html; charset="UTF-8"

<div dir="ltr">Thanks for your email. I'm on vacation until Monday and will reply when I'm back.</div>

--0000000000001122334455667788--
""")


def _original(to: str, message_id: str) -> str:
    return f"""Return-Path: <{OURS}>
Received: from [127.0.0.1] (localhost [127.0.0.1])
	by mail.acme.test (Postfix) with ESMTPSA id 4F1A2B3C4D
	for <{to}>; Mon, 30 Nov 2026 17:14:00 +0000 (UTC)
From: Ann Seller <{OURS}>
To: {to}
Subject: Quick question about your pipeline
Date: Mon, 30 Nov 2026 17:14:00 +0000
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 7bit
"""


def postfix_dsn(*, failed: str = LEAD, message_id: str = SENT_ID, to: str = OURS) -> bytes:
    """Postfix's bounce: notification, delivery-status and the returned message (RFC 3464)."""
    return _crlf(f"""
Return-Path: <>
Delivered-To: {to}
Received: by mail.acme.test (Postfix)
	id 9C8B7A6F5E; Mon, 30 Nov 2026 17:14:03 +0000 (UTC)
Date: Mon, 30 Nov 2026 17:14:03 +0000 (UTC)
From: MAILER-DAEMON@mail.acme.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4F1A2B3C4D.1606756443/mail.acme.test"
Content-Transfer-Encoding: 8bit
Message-Id: <20261130171403.9C8B7A6F5E@mail.acme.test>

This is a MIME-encapsulated message.

--4F1A2B3C4D.1606756443/mail.acme.test
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mail.acme.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

                   The mail system

<{failed}>: host mx.buyer.test[192.0.2.25] said: 550 5.1.1 <{failed}>:
    Recipient address rejected: User unknown in virtual mailbox table (in
    reply to RCPT TO command)

--4F1A2B3C4D.1606756443/mail.acme.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test
X-Postfix-Queue-ID: 4F1A2B3C4D
X-Postfix-Sender: rfc822; {OURS}
Arrival-Date: Mon, 30 Nov 2026 17:14:00 +0000 (UTC)

Final-Recipient: rfc822; {failed}
Original-Recipient: rfc822;{failed}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.buyer.test
Diagnostic-Code: smtp; 550 5.1.1 <{failed}>: Recipient address rejected: User
    unknown in virtual mailbox table

--4F1A2B3C4D.1606756443/mail.acme.test
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

{_original(failed, message_id)}
Hi Bob,

Do you have 15 minutes this week to talk about your sales pipeline?

--4F1A2B3C4D.1606756443/mail.acme.test--
""")


def postfix_delayed(*, failed: str = LEAD, message_id: str = SENT_ID, to: str = OURS) -> bytes:
    """Postfix's 'Delayed Mail (still being retried)': Action delayed, 4.x.x, headers only."""
    return _crlf(f"""
Return-Path: <>
Date: Mon, 30 Nov 2026 21:14:05 +0000 (UTC)
From: MAILER-DAEMON@mail.acme.test (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="5A6B7C8D9E.1606770845/mail.acme.test"
Message-Id: <20261130211405.5A6B7C8D9E@mail.acme.test>

This is a MIME-encapsulated message.

--5A6B7C8D9E.1606770845/mail.acme.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.acme.test.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

<{failed}>: connect to mx.buyer.test[192.0.2.25]:25: Connection timed out

--5A6B7C8D9E.1606770845/mail.acme.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test
X-Postfix-Queue-ID: 5A6B7C8D9E
Arrival-Date: Mon, 30 Nov 2026 17:14:00 +0000 (UTC)

Final-Recipient: rfc822; {failed}
Original-Recipient: rfc822;{failed}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.buyer.test[192.0.2.25]:25: Connection
    timed out
Will-Retry-Until: Sat, 5 Dec 2026 17:14:00 +0000 (UTC)

--5A6B7C8D9E.1606770845/mail.acme.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{_original(failed, message_id)}
--5A6B7C8D9E.1606770845/mail.acme.test--
""")


def exim_dsn(*, failed: str = LEAD, message_id: str = SENT_ID, to: str = OURS) -> bytes:
    """Exim 4's bounce: X-Failed-Recipients, a DSN part with Status 5.0.0, returned headers."""
    return _crlf(f"""
Return-path: <>
Envelope-to: {to}
Delivery-date: Mon, 30 Nov 2026 17:14:04 +0000
Received: from Debian-exim by mx1.acme.test with local (Exim 4.96)
	id 1kjmnb-0004Xy-2Q
	for {to}; Mon, 30 Nov 2026 17:14:04 +0000
X-Failed-Recipients: {failed}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mx1.acme.test>
To: {to}
Content-Type: multipart/report; report-type=delivery-status; boundary=1606756444-eximdsn-1804289383
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1kjmnb-0004Xy-2Q@mx1.acme.test>
Date: Mon, 30 Nov 2026 17:14:04 +0000

--1606756444-eximdsn-1804289383
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {failed}
    host mx.buyer.test [192.0.2.25]
    SMTP error from remote mail server after RCPT TO:<{failed}>:
    550 5.1.1 The email account that you tried to reach does not exist.

--1606756444-eximdsn-1804289383
Content-type: message/delivery-status

Reporting-MTA: dns; mx1.acme.test

Action: failed
Final-Recipient: rfc822;{failed}
Status: 5.0.0
Remote-MTA: dns; mx.buyer.test
Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach does not exist.

--1606756444-eximdsn-1804289383
Content-type: text/rfc822-headers

{_original(failed, message_id)}
--1606756444-eximdsn-1804289383--
""")


def microsoft_ndr(*, failed: str = LEAD, message_id: str = SENT_ID, to: str = OURS) -> bytes:
    """Microsoft 365's non-delivery report: HTML notification, then the DSN and the original."""
    return _crlf(f"""
From: Microsoft Outlook
	<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.onmicrosoft.com>
To: <{to}>
Date: Mon, 30 Nov 2026 17:14:06 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="a2b1c0d9-e8f7-4a6b-9c8d-7e6f5a4b3c2d"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <a9b8c7d6-e5f4-4321-8765-abcdef012345@SJ0PR11MB5939.namprd11.prod.outlook.com>
In-Reply-To: {message_id}
References: {message_id}
Thread-Index: AQHbQ2n7xJk2bN0m2kSlq0n3oW2p1rKzAAAC
Subject: Undeliverable: Quick question about your pipeline
Auto-Submitted: auto-replied
X-MS-PublicTrafficType: Email
MIME-Version: 1.0

--a2b1c0d9-e8f7-4a6b-9c8d-7e6f5a4b3c2d
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="b3c2d1e0-f9a8-4b7c-8d9e-0f1a2b3c4d5e"

--b3c2d1e0-f9a8-4b7c-8d9e-0f1a2b3c4d5e
Content-Type: text/plain; charset="us-ascii"

Your message to {failed} couldn't be delivered.
{failed.split("@")[0]} wasn't found at {failed.split("@")[1]}.
Ann          Office 365          {failed.split("@")[0]}
Action Required                                    Recipient
Unknown To address

--b3c2d1e0-f9a8-4b7c-8d9e-0f1a2b3c4d5e
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your message to <a href="mailto:{failed}">{failed}</a> couldn't be delivered.</p>
</body></html>

--b3c2d1e0-f9a8-4b7c-8d9e-0f1a2b3c4d5e--

--a2b1c0d9-e8f7-4a6b-9c8d-7e6f5a4b3c2d
Content-Type: message/delivery-status

Reporting-MTA: dns;SJ0PR11MB5939.namprd11.prod.outlook.com
Received-From-MTA: dns;PH0PR11MB4965.namprd11.prod.outlook.com
Arrival-Date: Mon, 30 Nov 2026 17:14:02 +0000

Final-Recipient: rfc822;{failed}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {failed} not
 found by SMTP address lookup
X-Display-Name: {failed}

--a2b1c0d9-e8f7-4a6b-9c8d-7e6f5a4b3c2d
Content-Type: message/rfc822

{_original(failed, message_id)}
Hi Bob,

--a2b1c0d9-e8f7-4a6b-9c8d-7e6f5a4b3c2d--
""")


def gmail_dsn(
    *, failed: str = LEAD, message_id: str = SENT_ID, to: str = OURS, returned: bool = True
) -> bytes:
    """Gmail's 'Delivery Status Notification (Failure)': HTML and an icon first, the DSN with
    X-Original-Message-ID, then (with `returned`) the original message."""
    original = (
        f"""--00000000000022bb3305f1e2c3d4
Content-Type: message/rfc822

{_original(failed, message_id)}
Hi Bob,

"""
        if returned
        else ""
    )
    return _crlf(f"""
Delivered-To: {to}
Return-Path: <>
Received: by 2002:a05:7300:5388:b0:eb:e5f0:2a5c with SMTP id f8csp1234567dyi;
        Mon, 30 Nov 2026 09:14:07 -0800 (PST)
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {to}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {message_id}
In-Reply-To: {message_id}
X-Failed-Recipients: {failed}
Message-ID: <5f8e3c2a.170a0220.1b2c3.abcdGMR@mx.google.com>
Date: Mon, 30 Nov 2026 09:14:07 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="00000000000022bb3305f1e2c3d4"; report-type=delivery-status

--00000000000022bb3305f1e2c3d4
Content-Type: multipart/related; boundary="00000000000022cc3305f1e2c3e5"

--00000000000022cc3305f1e2c3e5
Content-Type: multipart/alternative; boundary="00000000000022dd3305f1e2c3f6"

--00000000000022dd3305f1e2c3f6
Content-Type: text/plain; charset="UTF-8"


** Address not found **

Your message wasn't delivered to {failed} because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

--00000000000022dd3305f1e2c3f6
Content-Type: text/html; charset="UTF-8"

<html><body><h1>Address not found</h1><p>Your message wasn't delivered to <a>{failed}</a>.</p></body></html>

--00000000000022dd3305f1e2c3f6--
--00000000000022cc3305f1e2c3e5
Content-Type: image/png; name="icon.png"
Content-Disposition: attachment; filename="icon.png"
Content-Transfer-Encoding: base64
Content-ID: <icon.png>

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==
--00000000000022cc3305f1e2c3e5--
--00000000000022bb3305f1e2c3d4
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; {to}
Arrival-Date: Mon, 30 Nov 2026 09:14:06 -0800 (PST)
X-Original-Message-ID: {message_id}

Final-Recipient: rfc822; {failed}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.buyer.test. (192.0.2.25, the server for the domain buyer.test.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
 550-5.1.1 double-checking the recipient's email address for typos or
 550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser
Last-Attempt-Date: Mon, 30 Nov 2026 09:14:07 -0800 (PST)

{original}--00000000000022bb3305f1e2c3d4--
""")


def unsubscribe_mail(*, sender: str = LEAD, to: str = "unsubscribe@acme.test") -> bytes:
    """What a mail client sends for a List-Unsubscribe mailto: subject 'unsubscribe'."""
    return _crlf(f"""
From: {sender}
To: {to}
Subject: unsubscribe
Date: Mon, 30 Nov 2026 11:00:00 -0800
Message-ID: <unsub.20261130190000.1@buyer.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

This message was automatically generated by Gmail.
""")


def opt_out_reply(*, sender: str = LEAD, to: str = OURS, answers: str = SENT_ID) -> bytes:
    """A person answering 'Unsubscribe.' above the quoted thread."""
    return gmail_reply(
        sender=sender,
        to=to,
        answers=answers,
        text="Unsubscribe.",
        message_id="<CAF=gmail.unsub.1@mail.gmail.com>",
    )


def plain_mail(
    *,
    sender: str = LEAD,
    to: str = OURS,
    subject: str = "Hello",
    text: str = "Hi there",
    message_id: str | None = "<plain.1@buyer.test>",
    date: str | None = "Mon, 30 Nov 2026 12:00:00 +0000",
    extra: str = "",
) -> bytes:
    """A minimal text/plain message; `None` leaves a header out."""
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    if date:
        lines.append(f"Date: {date}")
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    if extra:
        lines.append(extra.strip("\n"))
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", text, ""]
    return _crlf("\n".join(lines))


# -- broken ones -------------------------------------------------------------------------------


def broken_mime(*, sender: str = LEAD) -> bytes:
    """A multipart with no closing boundary and a part with a garbage header block."""
    return _crlf(f"""
From: {sender}
To: {OURS}
Subject: Re: Quick question
Date: Mon, 30 Nov 2026 12:00:00 +0000
Message-ID: <broken.1@buyer.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XYZ

--XYZ
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

Tm90IHJlYWxseSBiYXNlNjQ=!!!
--XYZ
Content-Type text/html
<<<<
""")


def unknown_charset(*, sender: str = LEAD) -> bytes:
    """A body and subject in a charset no codec knows."""
    return (
        f"From: {sender}\r\nTo: {OURS}\r\nSubject: =?x-klingon?Q?Qapla=E9?=\r\n"
        "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nMessage-ID: <charset.1@buyer.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-klingon\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nInteresting \xe9\xff offer, call me.\r\n"
    ).encode("latin-1")


def no_date(*, sender: str = LEAD) -> bytes:
    return plain_mail(sender=sender, date=None, message_id="<nodate.1@buyer.test>")


def no_message_id(*, sender: str = LEAD) -> bytes:
    return plain_mail(sender=sender, message_id=None, text="No id on this one")


def big_attachment(*, sender: str = LEAD, size: int = 10 * 1024 * 1024) -> bytes:
    """A short reply carrying a 10 MB PDF attachment."""
    blob = base64.encodebytes(b"%PDF-1.7\n" + b"\0" * size).decode()
    return _crlf(f"""
From: {sender}
To: {OURS}
Subject: Re: Quick question about your pipeline
Date: Mon, 30 Nov 2026 12:00:00 +0000
Message-ID: <big.1@buyer.test>
In-Reply-To: {SENT_ID}
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="BIG"

--BIG
Content-Type: text/plain; charset=utf-8

Our requirements are attached.

--BIG
Content-Type: application/pdf; name="requirements.pdf"
Content-Disposition: attachment; filename="requirements.pdf"
Content-Transfer-Encoding: base64

{blob}
--BIG--
""")


def huge_header(*, sender: str = LEAD) -> bytes:
    """A 1 MB References header (folded), as a runaway thread produces."""
    refs = "\r\n ".join(f"<ref{i}.abcdefghij@buyer.test>" for i in range(30_000))
    return plain_mail(sender=sender, message_id="<huge.1@buyer.test>", extra=f"References: {refs}")
