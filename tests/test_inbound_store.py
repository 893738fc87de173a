"""What arrives by itself is matched, recorded once and acted on (the store, fed messages).

The messages are what the fetchers yield (pipectl.inbound.InboundMessage); the database is a
real file set up through the CLI, and each test checks the rows a user would query.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipectl.inbound import Cursor, InboundMessage, TextStatus
from pipectl.store import Store

from .conftest import rows
from .scenario import T0, write_yaml

LATER = "2027-03-01T15:00:00Z"

PIPELINES = """\
  - key: nurture
    account: acme
    name: Nurture
    stages:
      - key: inquired
        on_failure: bounced
        actions:
          - email: {subject: "Hi {{ lead.first_name }}", body: "Interested?"}
          - wait_for_reply: {timeout: 2d, on_reply: responded, on_timeout: lost}
      - key: responded
        actions:
          - wait: 1d
      - key: bounced
        actions:
          - wait: 1d
      - {key: lost, outcome: lost}
  - key: events
    account: acme
    name: Events
    stages:
      - key: invited
        actions:
          - email: {subject: "Our event", body: "Come along"}
          - wait_for_reply: {timeout: 2d, on_reply: going}
      - key: going
        actions:
          - wait: 1d
  - key: texts
    account: acme
    name: Texts
    stages:
      - key: texted
        actions:
          - sms: "Hi {{ lead.first_name }}"
          - wait: 1d
          - email: {subject: "By email", body: "Still here"}
"""

LEADS = """\
Email,First Name,Mobile Phone
ann@example.com,Ann,(212) 555-0123
bob@example.com,Bob,(201) 555-0199
"""


@pytest.fixture
def store(cli, tmp_path: Path, db: Path):
    """Ann and Bob in `nurture` and `events`, each sent its first email at T0."""
    assert cli("apply", write_yaml(tmp_path, PIPELINES)).exit_code == 0
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    for pipeline in ("nurture", "events"):
        result = cli("leads", "import", "leads.csv", "--account", "acme", "--pipeline", pipeline)
        assert result.exit_code == 0, result.output
    assert cli("tick", "--now", T0, "--no-sync").exit_code == 0
    s = Store(db)
    yield s
    s.close()


def message(**kw) -> InboundMessage:
    values = dict(
        channel="email",
        source="imap",
        external_id="<reply-1@mail.example>",
        sender="ann@example.com",
        kind="reply",
        body="Yes, call me",
        received_at=LATER,
    )
    values.update(kw)
    return InboundMessage(**values)  # type: ignore[arg-type]


def sent(db: Path, email: str, pipeline: str) -> dict:
    """The delivery of the lead's email in that pipeline."""
    return rows(
        db,
        "SELECT d.* FROM deliveries d JOIN lead_stage_actions a ON a.id = d.lead_stage_action_id"
        " JOIN enrollments e ON e.id = a.enrollment_id JOIN pipelines p ON p.id = e.pipeline_id"
        " JOIN leads l ON l.id = d.lead_id WHERE l.email = ? AND p.key = ?",
        email,
        pipeline,
    )[0]


def stage_of(db: Path, email: str, pipeline: str) -> str:
    return rows(
        db,
        "SELECT s.key FROM lead_stages ls JOIN pipeline_stages s ON s.id = ls.pipeline_stage_id"
        " JOIN enrollments e ON e.id = ls.enrollment_id JOIN pipelines p ON p.id = e.pipeline_id"
        " JOIN leads l ON l.id = ls.lead_id"
        " WHERE l.email = ? AND p.key = ? AND ls.exited_at IS NULL",
        email,
        pipeline,
    )[0]["key"]


def enrollment(db: Path, email: str, pipeline: str) -> str:
    return rows(
        db,
        "SELECT e.status FROM enrollments e JOIN pipelines p ON p.id = e.pipeline_id"
        " JOIN leads l ON l.id = e.lead_id WHERE l.email = ? AND p.key = ?",
        email,
        pipeline,
    )[0]["status"]


def account_id(db: Path) -> int:
    return rows(db, "SELECT id FROM accounts WHERE key = 'acme'")[0]["id"]


def test_a_reply_naming_its_send_moves_only_that_pipeline(store, db):
    events = sent(db, "ann@example.com", "events")
    reply = message(references=(events["message_id"],), sender="assistant@example.com")

    recorded = store.inbound.record_inbound(account_id(db), reply, None, None, LATER)

    assert recorded.new and recorded.matched
    assert stage_of(db, "ann@example.com", "events") == "going"
    assert stage_of(db, "ann@example.com", "nurture") == "inquired"  # untouched
    [row] = rows(db, "SELECT * FROM replies")
    assert row["lead_id"] == events["lead_id"] and row["delivery_id"] == events["id"]
    assert (row["kind"], row["source"], row["sender"]) == ("reply", "imap", "assistant@example.com")
    assert row["external_id"] == "<reply-1@mail.example>"


def test_a_reference_without_angle_brackets_matches_too(store, db):
    events = sent(db, "ann@example.com", "events")
    bare = events["message_id"].strip("<>")
    reply = message(references=("<unknown@elsewhere>", bare))
    store.inbound.record_inbound(account_id(db), reply, None, None, LATER)
    assert stage_of(db, "ann@example.com", "events") == "going"
    assert stage_of(db, "ann@example.com", "nurture") == "inquired"


def test_a_reply_matched_by_address_acts_as_pipectl_reply(store, db):
    reply = message(sender="ANN@Example.com", references=("<not-ours@elsewhere>",))
    store.inbound.record_inbound(account_id(db), reply, None, None, LATER)
    assert stage_of(db, "ann@example.com", "events") == "going"
    assert stage_of(db, "ann@example.com", "nurture") == "responded"
    [row] = rows(db, "SELECT lead_id, delivery_id FROM replies")
    assert row["delivery_id"] is None and row["lead_id"] is not None


def test_a_message_matching_nothing_is_kept_unmatched(store, db):
    stranger = message(sender="someone@else.example")
    recorded = store.inbound.record_inbound(account_id(db), stranger, None, None, LATER)
    assert recorded.new and not recorded.matched
    [row] = rows(db, "SELECT lead_id, kind, sender, effect FROM replies")
    assert row["lead_id"] is None and row["sender"] == "someone@else.example"
    assert store.inbound.list_replies(unmatched=True)[0]["sender"] == "someone@else.example"
    assert enrollment(db, "ann@example.com", "nurture") == "active"


def test_the_same_message_twice_is_recorded_and_acted_on_once(store, db):
    aid = account_id(db)
    source = store.sync_sources.sync_source(aid, "imap", "imap://team@imap.example:993")
    first = store.inbound.record_inbound(aid, message(), Cursor("INBOX", 7, 41), source, LATER)
    again = store.inbound.record_inbound(aid, message(), Cursor("INBOX", 7, 42), source, LATER)
    assert first.new and not again.new
    assert len(rows(db, "SELECT * FROM replies")) == 1
    assert rows(db, "SELECT folder, uidvalidity, last_uid FROM sync_cursors") == [
        {"folder": "INBOX", "uidvalidity": 7, "last_uid": 42}
    ]


def test_a_reply_typed_by_hand_and_then_read_from_the_mailbox_steers_once(cli, store, db):
    result = cli("reply", "--account", "acme", "--email", "ann@example.com", "--at", LATER)
    assert result.exit_code == 0, result.output
    assert stage_of(db, "ann@example.com", "nurture") == "responded"
    # The lead is now waiting a day in `responded`; the same reply must not move it again.
    store.inbound.record_inbound(account_id(db), message(), None, None, "2027-03-01T15:05:00Z")
    replies = rows(db, "SELECT source, effect FROM replies ORDER BY id")
    assert [r["source"] for r in replies] == ["manual", "imap"]
    assert "not acted on again" in replies[1]["effect"]
    assert stage_of(db, "ann@example.com", "nurture") == "responded"


def test_a_reply_read_from_the_mailbox_and_then_typed_by_hand_steers_once(cli, store, db):
    events = sent(db, "ann@example.com", "events")
    store.inbound.record_inbound(
        account_id(db), message(references=(events["message_id"],)), None, None, LATER
    )
    assert stage_of(db, "ann@example.com", "events") == "going"
    result = cli(
        "reply", "--account", "acme", "--email", "ann@example.com", "--at", "2027-03-01T15:10:00Z"
    )
    assert result.exit_code == 0, result.output
    assert "not acted on again" in result.stdout
    assert stage_of(db, "ann@example.com", "nurture") == "inquired"  # the named send's only


def test_a_cursor_never_goes_back(store, db):
    aid = account_id(db)
    source = store.sync_sources.sync_source(aid, "imap", "imap://team@imap.example:993")
    store.inbound.record_inbound(aid, message(), Cursor("INBOX", 7, 50), source, LATER)
    late = message(external_id="<older@mail.example>")
    store.inbound.record_inbound(aid, late, Cursor("INBOX", 7, 49), source, LATER)
    assert store.sync_sources.sync_cursors(source)["INBOX"].last_uid == 50
    store.inbound.record_inbound(
        aid, message(external_id="<new@x>"), Cursor("INBOX", 8, 3), source, LATER
    )
    assert store.sync_sources.sync_cursors(source)["INBOX"] == Cursor("INBOX", 8, 3)


def test_an_auto_reply_is_recorded_and_changes_nothing(store, db):
    events = sent(db, "ann@example.com", "events")
    auto = message(kind="auto_reply", references=(events["message_id"],), body="Out of office")
    store.inbound.record_inbound(account_id(db), auto, None, None, LATER)
    assert stage_of(db, "ann@example.com", "events") == "invited"
    assert (
        rows(db, "SELECT status FROM lead_stage_actions WHERE type = 'wait_for_reply'")
        == [{"status": "awaiting_reply"}] * 4
    )
    [row] = rows(db, "SELECT kind, lead_id FROM replies")
    assert row["kind"] == "auto_reply" and row["lead_id"] is not None


def test_an_opt_out_stops_everything_and_suppresses_the_leads_addresses(store, db):
    store.inbound.record_inbound(
        account_id(db), message(kind="opt_out", body="unsubscribe"), None, None, LATER
    )
    assert rows(db, "SELECT do_not_contact FROM leads WHERE email = 'ann@example.com'") == [
        {"do_not_contact": 1}
    ]
    assert enrollment(db, "ann@example.com", "nurture") == "stopped"
    assert enrollment(db, "ann@example.com", "events") == "stopped"
    assert rows(db, "SELECT channel, address, reason FROM suppressions ORDER BY channel") == [
        {"channel": "email", "address": "ann@example.com", "reason": "opt_out"},
        {"channel": "sms", "address": "+12125550123", "reason": "opt_out"},
    ]


def test_an_opt_out_from_a_stranger_still_suppresses_the_sender(store, db):
    stranger = message(kind="opt_out", sender="Someone@Else.example", body="STOP")
    store.inbound.record_inbound(account_id(db), stranger, None, None, LATER)
    assert rows(db, "SELECT address, reason FROM suppressions") == [
        {"address": "someone@else.example", "reason": "opt_out"}
    ]


def bounce(**kw) -> InboundMessage:
    values = dict(
        kind="bounce",
        sender="mailer-daemon@mx.example",
        external_id="<dsn-1@mx.example>",
        body="",
        status="5.1.1",
        diagnostic="smtp; 550 5.1.1 user unknown",
        failed_recipient="ann@example.com",
    )
    values.update(kw)
    return message(**values)


def test_a_bounce_fails_its_send_suppresses_and_follows_on_failure(store, db):
    nurture = sent(db, "ann@example.com", "nurture")
    dsn = bounce(bounced_message_id=nurture["message_id"], failed_recipient=None)

    recorded = store.inbound.record_inbound(account_id(db), dsn, None, None, LATER)

    assert recorded.new and recorded.matched
    [action] = rows(
        db, "SELECT status, last_error FROM lead_stage_actions WHERE id = ?",
        nurture["lead_stage_action_id"],
    )  # fmt: skip
    assert action["status"] == "failed"
    assert "5.1.1" in action["last_error"] and "user unknown" in action["last_error"]
    delivery = rows(db, "SELECT status, status_detail FROM deliveries WHERE id = ?", nurture["id"])
    assert delivery[0]["status"] == "bounced" and "5.1.1" in delivery[0]["status_detail"]
    assert rows(db, "SELECT channel, address, reason FROM suppressions") == [
        {"channel": "email", "address": "ann@example.com", "reason": "bounce"}
    ]
    assert stage_of(db, "ann@example.com", "nurture") == "bounced"  # the stage's on_failure
    assert stage_of(db, "ann@example.com", "events") == "invited"  # another pipeline: as it was
    [row] = rows(db, "SELECT kind, delivery_id, lead_id FROM replies")
    assert row == {"kind": "bounce", "delivery_id": nurture["id"], "lead_id": nurture["lead_id"]}


def test_a_bounce_without_the_message_id_is_matched_by_the_failed_recipient(store, db):
    latest = max(
        (sent(db, "bob@example.com", p) for p in ("nurture", "events")), key=lambda d: d["id"]
    )
    store.inbound.record_inbound(
        account_id(db), bounce(failed_recipient="BOB@example.com"), None, None, LATER
    )
    assert rows(db, "SELECT status FROM deliveries WHERE id = ?", latest["id"]) == [
        {"status": "bounced"}
    ]
    assert rows(db, "SELECT address FROM suppressions") == [{"address": "bob@example.com"}]


def test_a_second_bounce_for_the_same_send_changes_nothing_more(store, db):
    nurture = sent(db, "ann@example.com", "nurture")
    aid = account_id(db)
    store.inbound.record_inbound(
        aid, bounce(bounced_message_id=nurture["message_id"]), None, None, LATER
    )
    entered = rows(db, "SELECT count(*) AS n FROM lead_stages")[0]["n"]
    second = bounce(bounced_message_id=nurture["message_id"], external_id="<dsn-2@mx.example>")
    recorded = store.inbound.record_inbound(aid, second, None, None, LATER)
    assert recorded.new
    assert rows(db, "SELECT count(*) AS n FROM lead_stages")[0]["n"] == entered
    assert "already bounced" in rows(db, "SELECT effect FROM replies ORDER BY id DESC")[0]["effect"]


def test_a_bounce_after_the_lead_left_the_stage_fails_the_send_only(store, db):
    nurture = sent(db, "ann@example.com", "nurture")
    aid = account_id(db)
    store.inbound.record_inbound(
        aid, message(references=(nurture["message_id"],)), None, None, LATER
    )
    assert stage_of(db, "ann@example.com", "nurture") == "responded"
    store.inbound.record_inbound(
        aid, bounce(bounced_message_id=nurture["message_id"]), None, None, LATER
    )
    assert stage_of(db, "ann@example.com", "nurture") == "responded"
    assert rows(
        db, "SELECT status FROM lead_stage_actions WHERE id = ?", nurture["lead_stage_action_id"]
    ) == [{"status": "failed"}]


def test_a_delayed_bounce_is_recorded_only(store, db):
    nurture = sent(db, "ann@example.com", "nurture")
    delayed = bounce(kind="soft_bounce", status="4.4.7", bounced_message_id=nurture["message_id"])
    store.inbound.record_inbound(account_id(db), delayed, None, None, LATER)
    assert rows(db, "SELECT status FROM deliveries WHERE id = ?", nurture["id"]) == [
        {"status": "sent"}
    ]
    assert rows(db, "SELECT * FROM suppressions") == []
    assert stage_of(db, "ann@example.com", "nurture") == "inquired"
    assert rows(db, "SELECT kind FROM replies") == [{"kind": "soft_bounce"}]


def test_an_sms_reply_is_matched_by_the_senders_number(store, db):
    text = message(channel="sms", source="twilio", external_id="SM1", sender="+12015550199")
    store.inbound.record_inbound(account_id(db), text, None, None, LATER)
    assert stage_of(db, "bob@example.com", "nurture") == "responded"
    assert stage_of(db, "ann@example.com", "nurture") == "inquired"


def texted(cli, db: Path, store: Store) -> dict:
    """Ann's text sent (provider id set as a Twilio send would); returns its delivery."""
    result = cli(
        "leads", "enroll", "--account", "acme", "--pipeline", "texts", "--lead", "ann@example.com"
    )
    assert result.exit_code == 0, result.output
    assert cli("tick", "--now", LATER, "--no-sync").exit_code == 0
    [d] = rows(db, "SELECT * FROM deliveries WHERE channel = 'sms'")
    store.database.conn.execute(
        "UPDATE deliveries SET provider_id = 'SM42' WHERE id = ?", (d["id"],)
    )
    return d


def test_a_text_the_provider_could_not_deliver_fails_its_send(cli, store, db):
    d = texted(cli, db, store)
    aid = account_id(db)
    assert store.delivery_status.texts_awaiting_status(aid, LATER) == ["SM42"]
    changed = store.delivery_status.record_text_status(
        aid, TextStatus("SM42", "undelivered", "30003", "Unreachable destination handset"), LATER
    )
    assert changed == "undelivered"
    [action] = rows(
        db,
        "SELECT status, last_error FROM lead_stage_actions WHERE id = ?",
        d["lead_stage_action_id"],
    )
    assert action["status"] == "failed" and "30003" in action["last_error"]
    assert enrollment(db, "ann@example.com", "texts") == "failed"  # on_failure: stop
    assert rows(db, "SELECT * FROM suppressions") == []  # 30003 is no opt-out
    assert store.delivery_status.texts_awaiting_status(aid, LATER) == []


def test_error_21610_suppresses_the_number_for_texts_only(cli, store, db):
    d = texted(cli, db, store)
    aid = account_id(db)
    store.delivery_status.record_text_status(
        aid, TextStatus("SM42", "failed", "21610", "Unsubscribed recipient"), LATER
    )
    assert rows(db, "SELECT channel, address, reason FROM suppressions") == [
        {"channel": "sms", "address": "+12125550123", "reason": "provider"}
    ]
    assert rows(
        db,
        "SELECT do_not_contact, email_opt_out, sms_opt_out FROM leads"
        " WHERE email = 'ann@example.com'",
    ) == [{"do_not_contact": 0, "email_opt_out": 0, "sms_opt_out": 1}]  # email may go on
    # Run again, Ann's text is skipped as an opt-out (not failed as suppressed, which would
    # stop the run) and the email after it goes.
    result = cli(
        "leads", "enroll", "--account", "acme", "--pipeline", "texts",
        "--lead", "ann@example.com", "--re-enroll", "--include-failed",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert cli("tick", "--now", "2027-03-02T15:00:00Z", "--no-sync").exit_code == 0
    assert cli("tick", "--now", "2027-03-03T15:01:00Z", "--no-sync").exit_code == 0
    assert [
        (r["type"], r["status"])
        for r in rows(
            db,
            "SELECT a.type, a.status FROM lead_stage_actions a JOIN enrollments e"
            " ON e.id = a.enrollment_id JOIN pipelines p ON p.id = e.pipeline_id"
            " WHERE p.key = 'texts' AND a.id > ? ORDER BY a.id",
            d["lead_stage_action_id"] + 2,
        )
    ] == [("sms", "skipped"), ("wait", "done"), ("email", "done")]


def test_a_delivered_text_is_marked_delivered(cli, store, db):
    d = texted(cli, db, store)
    assert store.delivery_status.record_text_status(
        account_id(db), TextStatus("SM42", "delivered"), LATER
    )
    assert rows(db, "SELECT status FROM deliveries WHERE id = ?", d["id"]) == [
        {"status": "delivered"}
    ]
    assert rows(
        db, "SELECT status FROM lead_stage_actions WHERE id = ?", d["lead_stage_action_id"]
    ) == [{"status": "done"}]


def test_pipectl_reply_stop_suppresses_the_leads_addresses(cli, store, db):
    result = cli("reply", "--account", "acme", "--phone", "(212) 555-0123", "--body", "STOP")
    assert result.exit_code == 0, result.output
    assert {r["address"] for r in rows(db, "SELECT address FROM suppressions")} == {
        "ann@example.com",
        "+12125550123",
    }


def test_replies_import_stop_suppresses_too(cli, store, db, tmp_path):
    (tmp_path / "replies.csv").write_text("From,Body\nbob@example.com,unsubscribe\n")
    result = cli("replies", "import", "replies.csv", "--account", "acme")
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT address, reason FROM suppressions WHERE channel = 'email'") == [
        {"address": "bob@example.com", "reason": "opt_out"}
    ]
