"""Tests for ace.channel.django_email, against a real SMTP server on loopback."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from ace_stubs import make_message
from django.core import mail

from ace import ace
from ace.channel import ChannelSession, ChannelType, channels
from ace.channel.django_email import (
    DjangoEmailChannel,
    DjangoEmailSession,
    breaks_connection,
    smtp_error_to_channel_error,
)
from ace.channel.mixins import BAD_HEADER_NAME, HEADER_NEWLINE, NO_FROM_ADDRESS
from ace.channel.smtp_pipelining import SMTPReplyLost
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.outcome import OutcomeStatus
from ace.presentation import render
from ace.recipient import Recipient
from ace.utils.date import get_current_time

pytestmark = pytest.mark.usefixtures("no_policies")


def rendered_for(message):
    return render(DjangoEmailChannel(), message)


def deliver(message):
    channel = DjangoEmailChannel()
    channel.deliver(message, rendered_for(message))


def test_enabled_and_channel_type():
    assert DjangoEmailChannel.enabled() is True
    assert DjangoEmailChannel.channel_type is ChannelType.EMAIL


def test_loaded_from_the_entry_point(settings):
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    channel = channels().get_default_channel(ChannelType.EMAIL)
    assert isinstance(channel, DjangoEmailChannel)


def test_send_arrives_complete_at_a_real_smtp_server(smtp_backend):
    message = make_message(language="fr")
    outcomes = ace.send(message)

    assert [o.status for o in outcomes] == [OutcomeStatus.SENT]
    (received,) = smtp_backend.messages
    assert received.mail_from == "noreply@example.org"
    assert received.rcpt_tos == ["learner@example.org"]
    email = received.message
    assert email["From"] == "Test Platform <noreply@example.org>"
    assert email["To"] == "learner@example.org"
    # Every run of whitespace, newlines and tabs included, collapsed to one space.
    assert email["Subject"] == "Hello Ada, your course update"
    assert email["Content-Language"] == "fr"
    assert email.get_content_type() == "multipart/alternative"
    text = received.part("plain")
    assert "Hi Ada! lang=fr yes=oui" in text
    assert f"uuid={message.uuid}" in text
    assert "channel=email" in text
    assert "- one\n- two" in text
    html = received.part("html")
    assert html.startswith("<!DOCTYPE html>")
    assert "<style>p { color: #123456; }</style>" in html
    assert "<p>Hi <b>Ada</b> lang=fr</p>" in html
    assert "<li>one</li><li>two</li>" in html


def test_language_falls_back_to_the_active_one(smtp_backend):
    ace.send(make_message(language=None))
    (received,) = smtp_backend.messages
    assert "lang=en yes=yes" in received.part("plain")
    assert received.message["Content-Language"] is None


def test_from_address_option_reply_to_and_custom_headers(smtp_backend):
    message = make_message(
        options={
            "from_address": "news@example.com",
            "reply_to": "help@example.com",
            "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<https://u.example/1>"},
        }
    )
    ace.send(message)
    email = smtp_backend.messages[0].message
    assert smtp_backend.messages[0].mail_from == "news@example.com"
    assert email["From"] == "Test Platform <news@example.com>"
    assert email["Reply-To"] == "help@example.com"
    assert email["X-Campaign"] == "spring"
    assert email["List-Unsubscribe"] == "<https://u.example/1>"


def test_non_ascii_display_name_is_encoded(smtp_backend):
    ace.send(make_message(context={"name": "Zoë", "platform_name": "Académie Zoë", "items": []}))
    email = smtp_backend.messages[0].message
    assert str(email["From"]) == "Académie Zoë <noreply@example.org>"
    raw_headers = smtp_backend.messages[0].data.split(b"\r\n\r\n", 1)[0]
    assert b"Acad\xc3\xa9mie" not in raw_headers  # RFC 2047-encoded on the wire


@pytest.mark.parametrize("fast_smtp", [False, True], ids=["session", "pipelined"])
def test_subject_and_sender_name_are_plain_text_and_the_html_stays_escaped(
    smtp_backend, settings, fast_smtp
):
    settings.ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = fast_smtp
    context = {"name": "O'Brien & <Co>", "topic": '"news"', "platform_name": "O'Brien's"}
    message = make_message(context={**context, "items": []})
    channel = DjangoEmailChannel()
    session = channel.open_session()
    try:
        assert session.deliver_many([(message, rendered_for(message))]) == [None]
    finally:
        session.close()
    (received,) = smtp_backend.messages
    email = received.message
    assert email["Subject"] == 'Hello O\'Brien & <Co>, your "news" update'
    assert email["From"].addresses[0].display_name == "O'Brien's"
    assert email["From"].addresses[0].addr_spec == "noreply@example.org"
    assert "&#x27;" not in received.data.split(b"\r\n\r\n", 1)[0].decode()
    # Only the headers: the HTML body is still escaped.
    assert "<b>O&#x27;Brien &amp; &lt;Co&gt;</b>" in received.part("html")


def test_subject_prefix_option_is_sent_in_the_subject(smtp_backend):
    ace.send(make_message(options={"subject_prefix": "[TEST] "}))
    assert smtp_backend.messages[0].message["Subject"] == "[TEST] Hello Ada, your course update"


def test_empty_from_name_keeps_the_configured_sender(smtp_backend):
    ace.send(make_message(context={"platform_name": " ", "name": "A", "items": []}))
    assert smtp_backend.messages[0].message["From"] == "Platform <noreply@example.org>"


def test_newline_in_a_header_is_refused_and_nothing_is_sent(smtp_backend):
    message = make_message(options={"headers": {"X-Evil": "a\r\nBcc: victim@example.org"}})
    (outcome,) = ace.send(message)
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.reason == HEADER_NEWLINE.format(name="X-Evil")
    assert smtp_backend.messages == []


def test_a_bad_header_name_is_refused_and_nothing_is_sent(smtp_backend):
    name = "X-Evil: a\r\nBcc"
    (outcome,) = ace.send(make_message(options={"headers": {name: "victim@example.org"}}))
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.reason == BAD_HEADER_NAME.format(name=name)
    assert smtp_backend.messages == []


def test_newline_in_reply_to_is_refused():
    message = make_message(options={"reply_to": "a@example.org\nBcc: b@example.org"})
    with pytest.raises(FatalChannelDeliveryError, match="Reply-To"):
        deliver(message)


def test_no_from_address_is_fatal(settings):
    settings.DEFAULT_FROM_EMAIL = ""
    with pytest.raises(FatalChannelDeliveryError, match=NO_FROM_ADDRESS):
        deliver(make_message())


def test_missing_recipient_address_is_reported_as_no_address():
    message = make_message(recipient=Recipient(lms_user_id=1))
    with pytest.raises(RecipientAddressMissingError):
        deliver(message)
    (outcome,) = ace.send(message)
    assert outcome.status is OutcomeStatus.NO_ADDRESS


def test_locmem_backend_outbox():
    ace.send(make_message())
    (email,) = mail.outbox
    assert email.to == ["learner@example.org"]
    assert email.alternatives[0].mimetype == "text/html"


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        ("450 4.2.1 Mailbox busy", RecoverableChannelDeliveryError),
        ("451 4.7.1 Greylisted, try again", RecoverableChannelDeliveryError),
        ("550 5.1.1 No such user here", FatalChannelDeliveryError),
        ("553 5.1.3 Bad destination mailbox", FatalChannelDeliveryError),
    ],
)
def test_rcpt_replies_map_to_recoverable_or_fatal(smtp_backend, settings, reply, error_class):
    settings.ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY = 90
    smtp_backend.reply("learner@example.org", reply)
    before = get_current_time()
    with pytest.raises(error_class) as info:
        deliver(make_message())
    error = info.value
    assert type(error) is error_class
    assert reply.split(" ", 1)[1] in str(error)  # the server's reply is in the message
    assert reply[:3] in str(error)
    if error_class is RecoverableChannelDeliveryError:
        assert before + timedelta(seconds=89) < error.next_attempt_time
        assert error.next_attempt_time < get_current_time() + timedelta(seconds=91)
    assert smtp_backend.messages == []


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        ("452 4.3.1 Insufficient system storage", RecoverableChannelDeliveryError),
        ("552 5.3.4 Message too big", FatalChannelDeliveryError),
    ],
)
def test_data_replies_map_to_recoverable_or_fatal(smtp_backend, reply, error_class):
    smtp_backend.reply("learner@example.org", reply, stage="data")
    with pytest.raises(error_class, match=reply[:3]):
        deliver(make_message())


def test_dropped_connection_is_recoverable(smtp_backend):
    smtp_backend.drop("learner@example.org")
    with pytest.raises(RecoverableChannelDeliveryError):
        deliver(make_message())


def test_timeout_is_recoverable(smtp_backend, settings):
    settings.EMAIL_TIMEOUT = 0.3
    smtp_backend.delay("learner@example.org", 1.0)
    with pytest.raises(RecoverableChannelDeliveryError, match=r"(?i)tim"):
        deliver(make_message())


def test_drop_after_the_content_was_sent_is_unknown_not_recoverable(smtp_backend):
    smtp_backend.drop_after_accepting("learner@example.org", times=1)
    with pytest.raises(DeliveryOutcomeUnknownError, match="may have been delivered") as info:
        deliver(make_message())
    assert not isinstance(info.value, RecoverableChannelDeliveryError)
    assert isinstance(info.value.__cause__, SMTPReplyLost)
    assert len(smtp_backend.messages) == 1  # the server did keep it


def test_timeout_after_the_content_was_sent_is_unknown(smtp_backend, settings):
    settings.EMAIL_TIMEOUT = 0.3
    smtp_backend.delay("learner@example.org", 1.0, stage="data", times=1)
    started = time.monotonic()
    with pytest.raises(DeliveryOutcomeUnknownError, match="timed out") as info:
        deliver(make_message())
    assert time.monotonic() - started < 1.0  # gave up at the timeout
    assert not isinstance(info.value, RecoverableChannelDeliveryError)


@pytest.mark.parametrize("stage", ["rcpt", "data_command"])
def test_drop_before_the_content_is_sent_stays_recoverable(smtp_backend, stage):
    smtp_backend.drop("learner@example.org", stage=stage, times=1)
    with pytest.raises(RecoverableChannelDeliveryError):
        deliver(make_message())
    assert smtp_backend.messages == []
    deliver(make_message())  # and the retry goes through
    assert len(smtp_backend.messages) == 1


def test_send_through_ace_reports_unknown_and_never_retries_it(smtp_backend, no_sleep):
    smtp_backend.drop_after_accepting("learner@example.org")  # every time
    (outcome,) = ace.send(make_message())
    assert outcome.status is OutcomeStatus.UNKNOWN
    assert outcome.next_attempt_time is None
    assert "may have been delivered" in outcome.reason
    assert no_sleep == []
    assert len(smtp_backend.messages) == 1


def test_refused_connection_is_recoverable(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_TIMEOUT = 2
    with pytest.raises(RecoverableChannelDeliveryError, match="connection"):
        deliver(make_message())


def test_send_through_ace_does_not_raise_for_a_fatal_smtp_error(smtp_backend):
    smtp_backend.reply("learner@example.org", "550 5.1.1 No such user")
    (outcome,) = ace.send(make_message())
    assert outcome.status is OutcomeStatus.FAILED
    assert "550" in outcome.reason
    assert outcome.exception_type == "SMTPRecipientsRefused"


# The session: one connection for many messages ----------------------------------------


def session_items(count, **overrides):
    items = []
    for index in range(count):
        message = make_message(
            recipient=Recipient(lms_user_id=index, email_address=f"user{index}@example.org"),
            **overrides,
        )
        items.append((message, rendered_for(message)))
    return items


def test_open_session_returns_a_channel_session(smtp_backend):
    session = DjangoEmailChannel().open_session()
    assert isinstance(session, ChannelSession)
    with session:
        assert session.deliver_many(session_items(3)) == [None] * 3
    assert len(smtp_backend.messages) == 3


def test_session_uses_one_connection_for_many_messages(smtp_backend):
    session = DjangoEmailSession(DjangoEmailChannel())
    with session:
        results = session.deliver_many(session_items(5))
        results += session.deliver_many(session_items(2))
    assert results == [None] * 7
    assert smtp_backend.connections == 1
    assert len(smtp_backend.messages) == 7
    assert {m.connection for m in smtp_backend.messages} == {1}


def test_session_reports_per_item_errors_and_keeps_going(smtp_backend):
    smtp_backend.reply("user1@example.org", "550 5.1.1 No such user")
    smtp_backend.reply("user3@example.org", "451 4.7.1 Greylisted")
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(session_items(5))
    assert results[0] is None and results[2] is None and results[4] is None
    assert isinstance(results[1], FatalChannelDeliveryError)
    assert "550 5.1.1 No such user" in str(results[1])
    assert isinstance(results[3], RecoverableChannelDeliveryError)
    assert results[3].next_attempt_time > get_current_time()
    assert sorted(m.rcpt_tos[0] for m in smtp_backend.messages) == [
        "user0@example.org",
        "user2@example.org",
        "user4@example.org",
    ]
    assert smtp_backend.connections == 1  # refusals do not cost a reconnection


def test_session_reconnects_after_a_dropped_connection(smtp_backend):
    smtp_backend.drop("user2@example.org", times=1)
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(session_items(5))
    assert isinstance(results[2], RecoverableChannelDeliveryError)
    assert [r is None for r in results] == [True, True, False, True, True]
    assert smtp_backend.connections == 2
    by_connection = {m.rcpt_tos[0]: m.connection for m in smtp_backend.messages}
    assert by_connection == {
        "user0@example.org": 1,
        "user1@example.org": 1,
        "user3@example.org": 2,
        "user4@example.org": 2,
    }


def test_session_reports_an_unknown_outcome_and_goes_on_with_a_new_connection(smtp_backend):
    smtp_backend.drop_after_accepting("user2@example.org", times=1)
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(session_items(4))
    assert isinstance(results[2], DeliveryOutcomeUnknownError)
    assert [r is None for r in results] == [True, True, False, True]
    # Each recipient received exactly one message, the "unknown" one included.
    assert sorted(m.rcpt_tos[0] for m in smtp_backend.messages) == [
        f"user{i}@example.org" for i in range(4)
    ]
    assert smtp_backend.connections == 2


def test_session_reports_invalid_items_without_sending_them(smtp_backend):
    items = session_items(2)
    bad = make_message(recipient=Recipient(lms_user_id=9))
    items.insert(1, (bad, rendered_for(make_message())))
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(items)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], RecipientAddressMissingError)
    assert len(smtp_backend.messages) == 2


def test_session_close_is_idempotent(smtp_backend):
    session = DjangoEmailSession(DjangoEmailChannel())
    session.deliver_many(session_items(1))
    session.close()
    session.close()
    assert len(smtp_backend.messages) == 1


def test_error_mapping_helpers():
    import smtplib

    assert isinstance(
        smtp_error_to_channel_error(smtplib.SMTPServerDisconnected("x")),
        RecoverableChannelDeliveryError,
    )
    assert isinstance(
        smtp_error_to_channel_error(smtplib.SMTPSenderRefused(421, b"bye", "a@b")),
        RecoverableChannelDeliveryError,
    )
    assert isinstance(
        smtp_error_to_channel_error(smtplib.SMTPNotSupportedError("no")),
        FatalChannelDeliveryError,
    )
    assert isinstance(
        smtp_error_to_channel_error(ValueError("bad header")), FatalChannelDeliveryError
    )
    assert smtp_error_to_channel_error(KeyError("bug")) is None
    assert breaks_connection(smtplib.SMTPServerDisconnected())
    assert breaks_connection(smtplib.SMTPSenderRefused(421, b"closing", "a@b"))
    assert not breaks_connection(smtplib.SMTPRecipientsRefused({"a": (550, b"no")}))

    lost = SMTPReplyLost(smtplib.SMTPServerDisconnected("Connection unexpectedly closed"))
    unknown = smtp_error_to_channel_error(lost)
    assert isinstance(unknown, DeliveryOutcomeUnknownError)
    assert "Connection unexpectedly closed" in str(unknown)
    assert breaks_connection(lost)
