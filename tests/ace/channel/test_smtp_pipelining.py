"""Tests for ace.channel.smtp_pipelining (pipelined SMTP over several connections) and the
django_email channel's pipelined session built on it, against real SMTP servers on loopback."""

from __future__ import annotations

import ast
import smtplib
import socket
import sys
import time
from collections import deque
from pathlib import Path

import pytest
from ace_stubs import make_message
from mime_samples import alternative_email, header_view, parse, parts

from ace.batch import BatchSender
from ace.channel import smtp_pipelining
from ace.channel.django_email import (
    DjangoEmailChannel,
    DjangoEmailSession,
    PipelinedEmailSession,
    django_smtp_connector,
)
from ace.channel.mime import envelope, message_bytes
from ace.channel.smtp_pipelining import (
    Envelope,
    PipelinedSMTPTransport,
    SMTPReplyLost,
    smtp_data,
)
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.outcome import OutcomeStatus
from ace.presentation import render
from ace.recipient import Recipient
from ace.test_utils.smtp import RecordingSMTPServer
from ace.utils.date import get_current_time

pytestmark = pytest.mark.usefixtures("no_policies")


def test_the_transport_module_imports_only_the_standard_library():
    """Not Django, nothing from ace, not even inside a function."""
    tree = ast.parse(Path(smtp_pipelining.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported


def test_smtp_data_dot_stuffs_and_terminates():
    assert smtp_data(b"a\r\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert smtp_data(b".first\r\n") == b"..first\r\n.\r\n"
    assert smtp_data(b"bare\nlf\rcr\r\n.x") == b"bare\r\nlf\r\ncr\r\n..x\r\n.\r\n"
    assert smtp_data(b"") == b".\r\n"
    # crlf=True: the caller promises CRLF endings, so only dot-stuffing is done.
    assert smtp_data(b"a\r\n.b\r\n", crlf=True) == b"a\r\n..b\r\n.\r\n"


# Transport -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipelining_server():
    server = RecordingSMTPServer(extensions=["PIPELINING"]).start()
    yield server
    server.stop()


def point_django_at(settings, server) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture(params=["pipelining", "lock-step"])
def server(request, settings, smtp_server, pipelining_server):
    """Each transport test runs against a server announcing PIPELINING and one that does not."""
    chosen = pipelining_server if request.param == "pipelining" else smtp_server
    chosen.reset()
    point_django_at(settings, chosen)
    yield chosen
    chosen.reset()


def envelopes(count: int, *, start: int = 0) -> list[Envelope]:
    items = []
    for index in range(start, start + count):
        mail = alternative_email(to=[f"user{index}@example.org"], body=f"Body {index}\n.dot\n")
        items.append(Envelope(*envelope(mail), message_bytes(mail)))
    return items


def test_transport_delivers_every_message_intact(server):
    items = envelopes(30)
    with PipelinedSMTPTransport(django_smtp_connector(), connections=3) as transport:
        results = transport.send_many(iter(items))
        results += transport.send_many(envelopes(5, start=30))
    assert results == [None] * 35
    received = {m.rcpt_tos[0]: m for m in server.messages}
    assert len(received) == 35
    for item in items:
        message = received[item.recipients[0]]
        assert message.mail_from == item.sender
        # What arrives, dot-unstuffed by the server, is exactly what was built.
        assert message.data.replace(b"\r\n", b"\n") == item.data.replace(b"\r\n", b"\n")
    # Connections are reused across calls: at most one per slot.
    assert 1 <= server.connections <= 3


def test_pipelining_is_used_only_when_announced(server):
    with PipelinedSMTPTransport(django_smtp_connector(), connections=1) as transport:
        transport.send_many(envelopes(1))
        (slot,) = transport._slots
        assert slot.pipelining is ("PIPELINING" in server.extensions)


def test_per_item_errors_are_mapped_and_the_rest_go_through(server):
    server.reply("user1@example.org", "550 5.1.1 No such user")
    server.reply("user3@example.org", "451 4.7.1 Greylisted")
    server.reply("user5@example.org", "554 5.7.1 Content rejected", stage="data")
    server.reply("user7@example.org", "452 4.3.1 Insufficient storage", stage="data")
    channel = DjangoEmailChannel()
    items = []
    for index in range(10):
        message = make_message(
            recipient=Recipient(lms_user_id=index, email_address=f"user{index}@example.org")
        )
        items.append((message, render(channel, message)))
    with channel.open_session() as session:
        assert isinstance(session, PipelinedEmailSession)
        results = session.deliver_many(items)

    ok = [i for i, r in enumerate(results) if r is None]
    assert ok == [0, 2, 4, 6, 8, 9]
    assert isinstance(results[1], FatalChannelDeliveryError)
    assert "550 5.1.1 No such user" in str(results[1])
    assert isinstance(results[3], RecoverableChannelDeliveryError)
    assert results[3].next_attempt_time > get_current_time()
    assert "451 4.7.1 Greylisted" in str(results[3])
    assert isinstance(results[5], FatalChannelDeliveryError)
    assert "554 5.7.1 Content rejected" in str(results[5])
    assert isinstance(results[7], RecoverableChannelDeliveryError)
    assert isinstance(results[1].__cause__, smtplib.SMTPRecipientsRefused)
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [f"user{i}@example.org" for i in ok]
    # Refusals reset the transaction (RSET) and keep the connection; a content refused while
    # the next message's DATA was already invited costs one new connection (hanging up is the
    # only way out of DATA that sends nothing), so the next message is sent again.
    assert server.connections <= 4 + (2 if "PIPELINING" in server.extensions else 0)


def test_dropped_connection_fails_its_messages_as_recoverable_and_reconnects(server):
    server.drop("user4@example.org", times=1)
    with PipelinedSMTPTransport(django_smtp_connector(), connections=2) as transport:
        results = transport.send_many(envelopes(12))
    assert isinstance(results[4], smtplib.SMTPServerDisconnected)
    # Only what was in flight on the dropped connection can fail with it.
    assert sum(r is not None for r in results) <= 2
    delivered = {m.rcpt_tos[0] for m in server.messages}
    assert "user4@example.org" not in delivered
    assert all(f"user{i}@example.org" in delivered for i, r in enumerate(results) if r is None)
    assert server.connections >= 3  # two slots, one reopened


def test_timeout_is_recoverable(settings, server):
    settings.EMAIL_TIMEOUT = 0.5
    server.delay("user1@example.org", 2.0, times=1)
    channel = DjangoEmailChannel()
    message = make_message(recipient=Recipient(lms_user_id=1, email_address="user1@example.org"))
    with channel.open_session() as session:
        started = time.monotonic()
        (result,) = session.deliver_many([(message, render(channel, message))])
    assert time.monotonic() - started < 2.0
    assert isinstance(result, RecoverableChannelDeliveryError)


def test_unreachable_server_fails_every_item_quickly_as_recoverable(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    channel = DjangoEmailChannel()
    items = []
    for index in range(20):
        message = make_message(
            recipient=Recipient(lms_user_id=index, email_address=f"u{index}@example.org")
        )
        items.append((message, render(channel, message)))
    started = time.monotonic()
    with channel.open_session() as session:
        results = session.deliver_many(items)
    assert time.monotonic() - started < 2.0
    assert all(isinstance(r, RecoverableChannelDeliveryError) for r in results)
    assert all(isinstance(r.__cause__, ConnectionRefusedError) for r in results)


def test_a_drop_after_the_content_was_sent_is_reply_lost_and_nothing_is_sent_twice(server):
    server.drop_after_accepting("user4@example.org", times=1)
    with PipelinedSMTPTransport(django_smtp_connector(), connections=2) as transport:
        results = transport.send_many(envelopes(12))
    assert isinstance(results[4], SMTPReplyLost)
    assert isinstance(results[4].__cause__, smtplib.SMTPServerDisconnected)
    received = [m.rcpt_tos[0] for m in server.messages]
    assert received.count("user4@example.org") == 1  # the server kept it
    # What else was in flight on that connection had not sent its content: a plain,
    # retryable disconnection, and it did not arrive.
    for index, result in enumerate(results):
        if result is not None and index != 4:
            assert type(result) is smtplib.SMTPServerDisconnected
            assert f"user{index}@example.org" not in received
    assert sorted(received) == sorted(
        f"user{i}@example.org" for i, r in enumerate(results) if r is None or i == 4
    )
    assert len(received) == len(set(received))


def test_drop_at_the_data_command_stays_recoverable(server):
    server.drop("user1@example.org", stage="data_command", times=1)
    channel = DjangoEmailChannel()
    message = make_message(recipient=Recipient(lms_user_id=1, email_address="user1@example.org"))
    with channel.open_session() as session:
        (result,) = session.deliver_many([(message, render(channel, message))])
    assert type(result) is RecoverableChannelDeliveryError
    assert server.messages == []


def test_session_maps_a_lost_reply_and_a_timeout_after_the_content_to_unknown(settings, server):
    settings.EMAIL_TIMEOUT = 0.5
    server.drop_after_accepting("user1@example.org", times=1)
    server.delay("user3@example.org", 2.0, stage="data", times=1)
    channel = DjangoEmailChannel()
    items = []
    for index in range(5):
        message = make_message(
            recipient=Recipient(lms_user_id=index, email_address=f"user{index}@example.org")
        )
        items.append((message, render(channel, message)))
    with channel.open_session() as session:
        results = session.deliver_many(items)
    for index in (1, 3):
        assert isinstance(results[index], DeliveryOutcomeUnknownError), results
        assert isinstance(results[index].__cause__, SMTPReplyLost)
        assert "may have been delivered" in str(results[index])
    # Nothing else is "unknown": anything else that failed was not sent and may be retried.
    for index in (0, 2, 4):
        assert results[index] is None or isinstance(results[index], RecoverableChannelDeliveryError)


class _FakeSocket:
    """Accepts ``budget`` bytes, then (on the next write) fails like a reset connection."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.data = bytearray()

    def send(self, view) -> int:
        room = self.budget - len(self.data)
        if room <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        chunk = bytes(view[:room])
        self.data += chunk
        return len(chunk)


class _FakeSMTP:
    def __init__(self, sock: _FakeSocket) -> None:
        self.sock = sock
        self.replies = deque([(250, b"ok"), (250, b"ok"), (354, b"go ahead")])

    def ehlo_or_helo_if_needed(self) -> None:
        pass

    def has_extn(self, name: str) -> bool:
        return name == "pipelining"

    def getreply(self):
        return self.replies.popleft()

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("short_by", "lost"), [(0, True), (1, False)])
def test_a_write_cut_short_is_reply_lost_only_if_the_final_dot_line_went_out(short_by, lost):
    first, second = envelopes(2)
    commands = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
        first.sender.encode(),
        first.recipients[0].encode(),
    )
    body = smtp_data(first.data, crlf=first.crlf)
    # The second write carries the first content and the next message's commands; the
    # connection breaks right after the content's last byte, or one byte before it.
    sock = _FakeSocket(len(commands) + len(body) - short_by)

    class Backend:
        connection = _FakeSMTP(sock)

        def close(self) -> None:
            pass

    transport = PipelinedSMTPTransport(Backend, connections=1)
    results = transport.send_many([first, second])
    assert bytes(sock.data).startswith(commands)
    assert isinstance(results[0], SMTPReplyLost) is lost
    assert isinstance(results[0], smtplib.SMTPServerDisconnected)
    assert type(results[1]) is smtplib.SMTPServerDisconnected


def test_transport_rejects_zero_connections():
    with pytest.raises(ValueError, match="at least 1"):
        PipelinedSMTPTransport(django_smtp_connector(), connections=0)


# The django_email channel's pipelined session ------------------------------------------------


def test_session_choice_follows_the_settings(settings, smtp_backend):
    channel = DjangoEmailChannel()
    assert isinstance(channel.open_session(), PipelinedEmailSession)
    settings.ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = False
    assert isinstance(channel.open_session(), DjangoEmailSession)
    settings.ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert isinstance(channel.open_session(), DjangoEmailSession)


def test_batch_sender_over_the_fast_path_sends_what_the_channel_builds(settings, server):
    settings.ACE_CHANNEL_DJANGO_EMAIL_SMTP_CONNECTIONS = 2
    channel = DjangoEmailChannel()
    messages = [
        make_message(
            recipient=Recipient(lms_user_id=i, email_address=f"user{i}@example.org"),
            language="fr",
            options={"headers": {"List-Unsubscribe": f"<https://example.org/u/{i}>"}},
        )
        for i in range(8)
    ]
    with BatchSender() as sender:
        outcomes = sender.send(messages)
    assert [o.status for o in outcomes] == [OutcomeStatus.SENT] * 8
    assert server.connections <= 2
    received = {m.rcpt_tos[0]: m for m in server.messages}
    for message in messages:
        expected = channel.build_email(message, render(channel, message))
        got = received[message.recipient.email_address]
        theirs = parse(expected.message().as_bytes(linesep="\r\n"))
        assert header_view(got.message) == header_view(theirs)
        assert parts(got.message) == parts(theirs)
        assert got.mail_from == "noreply@example.org"


def test_invalid_items_are_reported_without_touching_the_network(server):
    channel = DjangoEmailChannel()
    good = make_message(recipient=Recipient(lms_user_id=1, email_address="user1@example.org"))
    no_address = make_message(recipient=Recipient(lms_user_id=2))
    injected = make_message(
        recipient=Recipient(lms_user_id=3, email_address="user3@example.org"),
        options={"headers": {"X-Evil": "a\nBcc: victim@example.org"}},
    )
    rendered = render(channel, good)
    with channel.open_session() as session:
        results = session.deliver_many(
            [(good, rendered), (no_address, rendered), (injected, rendered)]
        )
    assert results[0] is None
    assert isinstance(results[1], RecipientAddressMissingError)
    assert isinstance(results[2], FatalChannelDeliveryError)
    assert [m.rcpt_tos for m in server.messages] == [["user1@example.org"]]
