"""The bounce parser (campaigns/feedback/dsn.py) on bounces built here: RFC 3464 reports, an
ARF complaint, qmail and Exim plain-text bounces, and messages it must refuse."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

import pytest

from campaigns.feedback import dsn
from tests.campaigns.feedback import samples

UUID = uuid.UUID("6f1c1b1e-51e8-4c3a-9d0b-0c5e2f9a7b11")


def test_rfc3464_failed_5xx_is_a_hard_bounce_with_the_original_message():
    raw = samples.dsn(
        recipients=[samples.failed("Ada@Example.net", "5.1.1")],
        headers=samples.original_headers(message_uuid=UUID, message_id=f"<{UUID}@c.example>"),
    )
    parsed = dsn.parse_bounce(raw)
    assert parsed.format == "rfc3464"
    [recipient] = parsed.recipients
    assert (recipient.address, recipient.kind, recipient.bounce_type) == (
        "Ada@Example.net",
        "bounced",
        "hard",
    )
    assert recipient.status == "5.1.1"
    assert recipient.action == "failed"
    assert recipient.diagnostic == "550 5.1.1 mailbox trouble"
    assert recipient.remote_mta == "mx.example.net"
    assert parsed.original_message_id == f"<{UUID}@c.example>"
    assert parsed.uuid_headers == (str(UUID),)
    assert parsed.verp_addresses == (samples.RETURN_PATH,)
    assert parsed.subject == "Undelivered Mail Returned to Sender"


def test_rfc3464_failed_4xx_is_a_soft_bounce_and_delayed_a_deferral():
    raw = samples.dsn(
        recipients=[
            samples.failed("full@example.net", "4.2.2"),
            {"Final-Recipient": "rfc822; slow@example.net", "Action": "delayed", "Status": "4.4.1"},
            {"Final-Recipient": "rfc822; ok@example.net", "Action": "delivered", "Status": "2.0.0"},
        ]
    )
    kinds = {r.address: (r.kind, r.bounce_type) for r in dsn.parse_bounce(raw).recipients}
    assert kinds == {
        "full@example.net": ("bounced", "soft"),
        "slow@example.net": ("deferred", ""),
        "ok@example.net": ("delivered", ""),
    }


def test_the_returned_message_may_be_whole_and_the_status_only_in_the_diagnostic():
    raw = samples.dsn(
        recipients=[
            {
                "Final-Recipient": "rfc822;<gone@example.net>",
                "Action": "failed",
                "Diagnostic-Code": "smtp; 550 no such user here",
            }
        ],
        headers=samples.original_headers(to="gone@example.net", message_uuid=UUID),
        returned="message",
    )
    parsed = dsn.parse_bounce(raw)
    [recipient] = parsed.recipients
    assert (recipient.address, recipient.bounce_type, recipient.status) == (
        "gone@example.net",
        "hard",
        "",
    )
    assert parsed.uuid_headers == (str(UUID),)


def test_failed_without_any_code_is_hard_and_original_recipient_is_a_fallback():
    raw = samples.dsn(
        recipients=[{"Original-Recipient": "rfc822; x@example.net", "Action": "failed"}],
        returned="none",
    )
    [recipient] = dsn.parse_bounce(raw).recipients
    assert (recipient.address, recipient.bounce_type) == ("x@example.net", "hard")


def test_global_delivery_status_rfc6533():
    [recipient] = dsn.parse_bounce(samples.global_dsn("ü@exämple.net")).recipients
    assert recipient.address == "ü@exämple.net"
    assert recipient.bounce_type == "hard"


def test_arf_complaint():
    raw = samples.arf(rcpt="ada@example.net", headers=samples.original_headers(message_uuid=UUID))
    parsed = dsn.parse_bounce(raw)
    assert parsed.format == "arf"
    [recipient] = parsed.recipients
    assert (recipient.address, recipient.kind) == ("ada@example.net", "complained")
    assert parsed.uuid_headers == (str(UUID),)


def test_arf_not_spam_is_not_a_complaint():
    with pytest.raises(dsn.UnreadableBounce, match="not-spam"):
        dsn.parse_bounce(samples.arf(kind="not-spam"))


def test_qmail_failure_notice():
    headers = samples.original_headers(to="old@example.net", message_id=f"<{UUID}@c.example>")
    parsed = dsn.parse_bounce(
        samples.qmail("old@example.net", "550 5.1.1 <old@example.net>: user unknown", headers)
    )
    assert parsed.format == "non-standard"
    [recipient] = parsed.recipients
    assert (recipient.address, recipient.bounce_type, recipient.status) == (
        "old@example.net",
        "hard",
        "5.1.1",
    )
    assert parsed.original_message_id == f"<{UUID}@c.example>"


def test_exim_bounce_with_auto_submitted_header_and_a_temporary_error():
    headers = samples.original_headers(to="full@example.net", message_uuid=UUID)
    parsed = dsn.parse_bounce(samples.exim("full@example.net", "452 4.2.2 Mailbox full", headers))
    [recipient] = parsed.recipients
    assert (recipient.address, recipient.bounce_type, recipient.status) == (
        "full@example.net",
        "soft",
        "4.2.2",
    )
    assert parsed.uuid_headers == (str(UUID),)
    assert "Mailbox full" in recipient.diagnostic


def test_a_bounce_without_a_status_code_but_with_clear_words_is_hard():
    parsed = dsn.parse_bounce(
        samples.qmail(
            "nobody@example.net", "Sorry, no mailbox here by that name (user unknown)", ""
        )
    )
    assert parsed.recipients[0].bounce_type == "hard"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: b"", "empty"),
        (lambda: _plain("Lunch?", "ada@example.net"), "not recognised as a bounce"),
        (
            lambda: _plain("Out of office", "ada@example.net", auto="auto-replied"),
            "automatic reply",
        ),
        (
            lambda: _plain("Undeliverable: hello", "MAILER-DAEMON@mx.example.net"),
            "names no failed recipient",
        ),
        (
            lambda: samples.dsn(recipients=[{"Action": "failed", "Status": "5.1.1"}]),
            "without a recipient block",
        ),
        (
            lambda: samples.qmail("x@example.net", "it did not work", ""),
            "no status code",
        ),
        (lambda: b"\xff\xfe garbage \x00 not a message", "not recognised"),
    ],
)
def test_unreadable_messages_say_why(build, reason):
    with pytest.raises(dsn.UnreadableBounce, match=reason):
        dsn.parse_bounce(build())


def _plain(subject: str, sender: str, *, auto: str = "") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = samples.RETURN_PATH
    message["Subject"] = subject
    if auto:
        message["Auto-Submitted"] = auto
    message.set_content("Hello.\n")
    return message.as_bytes()


def test_summary_of_anything():
    assert dsn.summary(b"Subject: =?utf-8?q?R=C3=A9ponse?=\r\nFrom: a@b\r\n\r\n")["subject"] == (
        "Réponse"
    )
    assert dsn.summary(b"")["subject"] == ""
