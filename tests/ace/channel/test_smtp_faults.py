"""Fault isolation in both SMTP sessions of the django_email channel, against a real SMTP server
on loopback that injects faults (``ace.test_utils.smtp``): a refused recipient, a rejected
content, a 421, a connection dropped before or in the content, and the misbehaving server that
answers an error but keeps the transaction open (so the next ``MAIL`` gets ``503 nested MAIL``
unless the client resets). Whatever the server does, a fault affects only the message it hit."""

from __future__ import annotations

import smtplib
from collections import Counter

import pytest
from ace_stubs import make_message

from ace.channel.django_email import (
    DjangoEmailChannel,
    DjangoEmailSession,
    PipelinedEmailSession,
    django_smtp_connector,
    smtp_error_to_channel_error,
)
from ace.channel.smtp_pipelining import (
    Envelope,
    PipelinedSMTPTransport,
    SMTPOutOfSequence,
    smtp_data,
)
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecoverableChannelDeliveryError,
)
from ace.presentation import render
from ace.recipient import Recipient
from ace.test_utils.smtp import RecordingSMTPServer

RAW = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def client(server):
    return smtplib.SMTP(server.host, server.port, timeout=5)


# The fault-injecting server itself -----------------------------------------------------------


def test_a_token_chooses_every_address_containing_it(smtp_server):
    smtp_server.reply("reject550", "550 5.1.1 No such user")
    with client(smtp_server) as smtp:
        for address in ("reject550-1@example.org", "x.REJECT550@example.org"):
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("a@example.org", [address], RAW)
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["b@example.org"]]


@pytest.mark.parametrize("how", ["keep_open", "fail_handler"])
def test_an_error_that_keeps_the_transaction_open_needs_a_reset(smtp_server, how):
    if how == "keep_open":
        smtp_server.reply("keep", "554 5.7.1 Rejected", stage="data", keep_open=True)
        code = 554
    else:
        smtp_server.fail_handler("keep", stage="data")  # aiosmtpd answers 500, stays open
        code = 500
    with client(smtp_server) as smtp:
        smtp.ehlo()
        for _ in range(2):
            assert smtp.mail("a@example.org")[0] == 250
            assert smtp.rcpt("keep@example.org")[0] == 250
            assert smtp.data(RAW)[0] == code
            # Without RSET the next message cannot start...
            assert smtp.mail("a@example.org") == (503, b"Error: nested MAIL command")
            assert smtp.rset()[0] == 250  # ... and with it, it can.
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["b@example.org"]]


def test_a_refused_mail_can_keep_the_transaction_open(smtp_server):
    smtp_server.reply("bad-sender", "451 4.3.0 Later", stage="mail_from", keep_open=True)
    with client(smtp_server) as smtp:
        smtp.ehlo()
        assert smtp.mail("bad-sender@example.org")[0] == 451
        assert smtp.mail("a@example.org")[0] == 503
        smtp.rset()
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    assert len(smtp_server.messages) == 1


def test_a_refused_data_command_can_keep_the_transaction_open(smtp_server):
    smtp_server.reply("keep", "554 5.5.1 No", stage="data_command", keep_open=True)
    with client(smtp_server) as smtp:
        # smtplib does not reset after a refused DATA command (it does after other errors).
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail("a@example.org", ["keep@example.org"], RAW)
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            smtp.sendmail("a@example.org", ["b@example.org"], RAW)
        assert info.value.smtp_code == 503
    assert smtp_server.messages == []


@pytest.mark.parametrize("stage", ["mail_from", "rcpt", "data"])
def test_421_closes_the_connection(smtp_server, stage):
    smtp_server.reply("bye", "421 4.3.2 Shutting down", stage=stage)
    with client(smtp_server) as smtp:
        smtp.ehlo()
        replies = [smtp.mail("bye@example.org" if stage == "mail_from" else "a@example.org")]
        if stage != "mail_from":
            replies.append(smtp.rcpt("bye@example.org"))
        if stage == "data":
            replies.append(smtp.data(RAW))
        assert replies[-1] == (421, b"4.3.2 Shutting down")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()  # (smtplib's mail/rcpt/data do not close on a 421: the server did)
    assert smtp_server.messages == []


def test_421_closes_even_with_pipelined_commands_behind_it(smtp_server):
    smtp_server.reply("bye", "421 4.3.2 Shutting down")
    with client(smtp_server) as smtp:
        smtp.ehlo()
        smtp.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bye@example.org>\r\nDATA\r\n")
        assert smtp.getreply()[0] == 250
        assert smtp.getreply()[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.getreply()  # nothing more: the DATA got no reply


def test_drop_in_content_loses_the_message(smtp_server):
    smtp_server.drop_in_content("cut", times=1)
    smtp = client(smtp_server)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.sendmail("a@example.org", ["cut@example.org"], RAW)
    assert smtp_server.messages == []
    with client(smtp_server) as smtp:
        smtp.sendmail("a@example.org", ["cut@example.org"], RAW)  # used up
    assert len(smtp_server.messages) == 1


def test_bad_fault_rules_are_refused(smtp_server):
    with pytest.raises(ValueError, match="open anyway"):
        smtp_server.reply("x", "550 no", stage="rcpt", keep_open=True)
    with pytest.raises(ValueError, match="stage"):
        smtp_server.fail_handler("x", stage="quit")


def test_a_pipelining_server_announces_it():
    server = RecordingSMTPServer(extensions=["PIPELINING"]).start()
    try:
        with client(server) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("pipelining")
    finally:
        server.stop()


# Fault isolation: many messages, faults spread among them ----------------------------------

#: A token in the recipient address -> how the server faults on that message, and the outcome
#: the message must end with: "failed" (5xx), "retried" (4xx, 421, dropped before the content)
#: or "unknown" (dropped while the content was being received: it may have gone through).
FAULTS = {
    "reject550": (lambda s: s.reply("reject550", "550 5.1.1 No such user"), "failed"),
    "fail552": (lambda s: s.reply("fail552", "552 5.3.4 Too big", stage="data"), "failed"),
    "fail554": (lambda s: s.reply("fail554", "554 5.7.1 Rejected", stage="data"), "failed"),
    # The misbehaving server: an error that leaves the transaction open.
    "keep554": (
        lambda s: s.reply("keep554", "554 5.7.1 Rejected", stage="data", keep_open=True),
        "failed",
    ),
    "crash500": (lambda s: s.fail_handler("crash500", stage="data"), "failed"),
    "nodata554": (
        lambda s: s.reply("nodata554", "554 5.5.1 No", stage="data_command", keep_open=True),
        "failed",
    ),
    "keepmail451": (
        lambda s: s.reply("keepmail451", "451 4.3.0 Later", stage="mail_from", keep_open=True),
        "retried",
    ),
    "grey451": (lambda s: s.reply("grey451", "451 4.7.1 Greylisted"), "retried"),
    "bye421": (lambda s: s.reply("bye421", "421 4.3.2 Shutting down"), "retried"),
    "late421": (lambda s: s.reply("late421", "421 4.3.2 Going", stage="data"), "retried"),
    "dropdata": (lambda s: s.drop("dropdata", stage="data_command"), "retried"),
    "cut": (lambda s: s.drop_in_content("cut"), "unknown"),
}
COUNT = 48


def addresses() -> list[str]:
    """COUNT recipients; every fourth one (from the third) is faulted, in FAULTS' order."""
    tokens = iter(FAULTS)
    return [
        f"{next(tokens, 'user') if i % 4 == 2 else 'user'}-{i}@example.org" for i in range(COUNT)
    ]


def sender_for(address: str) -> str:
    """A MAIL-stage fault is chosen by the sender: such a message is sent from its recipient."""
    return address if "keepmail" in address else "sender@example.org"


def expected(address: str) -> str:
    token = address.split("-")[0]
    return FAULTS[token][1] if token in FAULTS else "sent"


def outcome_of(result) -> str:
    if result is None:
        return "sent"
    error = smtp_error_to_channel_error(result)
    if isinstance(error, DeliveryOutcomeUnknownError):
        return "unknown"
    if isinstance(error, RecoverableChannelDeliveryError):
        return "retried"
    assert isinstance(error, FatalChannelDeliveryError), repr(result)
    return "failed"


def assert_only_the_faulted_messages_failed(server, results) -> None:
    assert len(results) == COUNT
    want = [expected(address) for address in addresses()]
    got = [outcome_of(result) for result in results]
    assert got == want, [
        (a, r) for a, r, w in zip(addresses(), results, want, strict=True) if outcome_of(r) != w
    ]
    received = Counter(m.message["X-Index"] for m in server.messages)
    assert received == {str(i): 1 for i, outcome in enumerate(want) if outcome == "sent"}


@pytest.fixture(scope="module")
def pipelining_server():
    server = RecordingSMTPServer(extensions=["PIPELINING"]).start()
    yield server
    server.stop()


@pytest.fixture(params=["pipelining", "lock-step"])
def faulty(request, settings, smtp_server, pipelining_server):
    """A server (announcing PIPELINING or not) with every fault of FAULTS, for ever."""
    server = pipelining_server if request.param == "pipelining" else smtp_server
    server.reset()
    for inject, _outcome in FAULTS.values():
        inject(server)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = server.host, server.port, 5
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.reset()


def raw_envelopes() -> list[Envelope]:
    return [
        Envelope(
            sender_for(address),
            [address],
            b"From: sender@example.org\r\nTo: %s\r\nX-Index: %d\r\nSubject: %d\r\n\r\nHi\r\n"
            % (address.encode(), i, i),
        )
        for i, address in enumerate(addresses())
    ]


@pytest.mark.parametrize("connections", [1, 3])
def test_transport_faults_affect_only_their_message(faulty, connections):
    with PipelinedSMTPTransport(django_smtp_connector(), connections=connections) as transport:
        results = transport.send_many(raw_envelopes())
    assert_only_the_faulted_messages_failed(faulty, results)


def session_items() -> list:
    channel = DjangoEmailChannel()
    items = []
    for i, address in enumerate(addresses()):
        message = make_message(
            recipient=Recipient(lms_user_id=i, email_address=address),
            options={"from_address": sender_for(address), "headers": {"X-Index": str(i)}},
        )
        items.append((message, render(channel, message)))
    return items


def to_smtp_result(error):
    """A session's channel error back to what the transport would say (its cause)."""
    return None if error is None else error.__cause__ or error


@pytest.mark.usefixtures("no_policies")
@pytest.mark.parametrize("session_class", [PipelinedEmailSession, DjangoEmailSession])
def test_session_faults_affect_only_their_message(faulty, session_class):
    with session_class(DjangoEmailChannel()) as session:
        results = session.deliver_many(session_items())
    assert_only_the_faulted_messages_failed(faulty, [to_smtp_result(r) for r in results])


@pytest.mark.usefixtures("no_policies")
def test_plain_session_resets_after_a_refused_data_command(smtp_backend):
    # smtplib itself does not reset after a refused DATA command; a server keeping that
    # transaction open would answer the next MAIL with 503.
    smtp_backend.reply("nodata", "554 5.5.1 No", stage="data_command", keep_open=True)
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(plain_items(["user-0", "nodata-1", "user-2"]))
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], FatalChannelDeliveryError) and "554" in str(results[1])
    assert [m.rcpt_tos for m in smtp_backend.messages] == [
        ["user-0@example.org"],
        ["user-2@example.org"],
    ]
    assert smtp_backend.connections == 1  # a reset, not a new connection


@pytest.mark.usefixtures("no_policies")
@pytest.mark.parametrize("stage", ["mail_from", "rcpt", "data_command"])
def test_plain_session_sends_again_on_a_fresh_connection_after_a_503(smtp_backend, stage):
    smtp_backend.reply("seq503", "503 5.5.1 Bad sequence of commands", stage=stage, times=1)
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(plain_items(["user-0", "seq503-1", "user-2"]))
    assert results == [None] * 3
    assert sorted(m.rcpt_tos[0] for m in smtp_backend.messages) == [
        "seq503-1@example.org",
        "user-0@example.org",
        "user-2@example.org",
    ]
    assert smtp_backend.connections == 2


@pytest.mark.usefixtures("no_policies")
def test_plain_session_503_again_is_recoverable_never_fatal(smtp_backend):
    smtp_backend.reply("seq503", "503 5.5.1 Bad sequence of commands")  # for ever
    with DjangoEmailSession(DjangoEmailChannel()) as session:
        results = session.deliver_many(plain_items(["user-0", "seq503-1", "user-2"]))
    assert results[0] is None and results[2] is None
    assert type(results[1]) is RecoverableChannelDeliveryError
    assert isinstance(results[1].__cause__, SMTPOutOfSequence)
    assert "503" in str(results[1])
    assert len(smtp_backend.messages) == 2


def plain_items(names: list[str]) -> list:
    channel = DjangoEmailChannel()
    items = []
    for i, name in enumerate(names):
        address = f"{name}@example.org"
        message = make_message(
            recipient=Recipient(lms_user_id=i, email_address=address),
            options={"from_address": address},
        )
        items.append((message, render(channel, message)))
    return items


# Out of sequence: the connection's fault, not the message's ---------------------------------


@pytest.mark.parametrize("stage", ["mail_from", "rcpt", "data_command"])
def test_a_503_out_of_sequence_is_sent_again_on_a_fresh_connection(server, stage):
    server.reply("seq503", "503 5.5.1 Bad sequence of commands", stage=stage, times=1)
    items = envelopes_to(["user-0", "user-1", "seq503-2", "user-3", "user-4"])
    with PipelinedSMTPTransport(django_smtp_connector(), connections=1) as transport:
        results = transport.send_many(items)
    assert results == [None] * 5
    assert Counter(m.rcpt_tos[0].split("@")[0] for m in server.messages) == dict.fromkeys(
        ("user-0", "user-1", "seq503-2", "user-3", "user-4"), 1
    )
    assert server.connections == 2


def test_503_again_on_the_fresh_connection_is_recoverable_never_permanent(server):
    server.reply("seq503", "503 5.5.1 Bad sequence of commands")  # for ever
    items = envelopes_to(["user-0", "seq503-1", "user-2"])
    with PipelinedSMTPTransport(django_smtp_connector(), connections=2) as transport:
        results = transport.send_many(items)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], SMTPOutOfSequence)
    assert results[1].smtp_code == 503
    error = smtp_error_to_channel_error(results[1])
    assert isinstance(error, RecoverableChannelDeliveryError)
    assert "503" in str(error)
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [
        "user-0@example.org",
        "user-2@example.org",
    ]


@pytest.fixture(params=["pipelining", "lock-step"])
def server(request, settings, smtp_server, pipelining_server):
    chosen = pipelining_server if request.param == "pipelining" else smtp_server
    chosen.reset()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = chosen.host, chosen.port, 5
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield chosen
    chosen.reset()


def envelopes_to(names: list[str]) -> list[Envelope]:
    return [
        Envelope(f"{name}@example.org", [f"{name}@example.org"], b"Subject: %d\r\n\r\nHi\r\n" % i)
        for i, name in enumerate(names)
    ]


# What goes on the wire: no extra round trip when nothing fails; RSET after a failure --------


class ScriptedSMTP:
    """An smtplib.SMTP stand-in that answers from a script and records each write."""

    def __init__(self, replies: list[int], *, pipelining: bool = True) -> None:
        self.replies = [(code, b"ok" if code < 400 else b"no") for code in replies]
        self.pipelining = pipelining
        self.sock = self
        self.writes: list[bytes] = []

    def send(self, view) -> int:
        self.writes.append(bytes(view))
        return len(view)

    def getreply(self):
        if not self.replies:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return self.replies.pop(0)

    def ehlo_or_helo_if_needed(self) -> None:
        pass

    def has_extn(self, name: str) -> bool:
        return self.pipelining and name == "pipelining"

    def close(self) -> None:
        pass


def scripted(*connections: ScriptedSMTP):
    """A connector handing out the scripted connections in turn."""
    pending = list(connections)

    class Backend:
        def __init__(self) -> None:
            self.connection = pending.pop(0)

        def close(self) -> None:
            pass

    return Backend


def commands(item: Envelope) -> bytes:
    return b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
        item.sender.encode(),
        item.recipients[0].encode(),
    )


def content(item: Envelope) -> bytes:
    return smtp_data(item.data)


OK = [250, 250, 354]  # MAIL, RCPT, DATA


def test_the_normal_path_costs_one_write_per_message_and_no_reset():
    a, b, c = envelopes_to(["a", "b", "c"])
    smtp = ScriptedSMTP([*OK, 250, *OK, 250, *OK, 250])
    with PipelinedSMTPTransport(scripted(smtp), connections=1) as transport:
        assert transport.send_many([a, b, c]) == [None] * 3
    assert smtp.writes == [
        commands(a),
        content(a) + commands(b),
        content(b) + commands(c),
        content(c),
    ]


@pytest.mark.parametrize("reply_to_b", [[250, 250, 354], [503, 250, 354]])
def test_a_message_pipelined_behind_a_failure_is_sent_again_on_a_fresh_connection(reply_to_b):
    # The server invites b's content (354) after refusing a's: hanging up is the only way
    # out that sends nothing. [503, ...]: the server kept a's transaction open.
    a, b = envelopes_to(["a", "b"])
    first = ScriptedSMTP([*OK, 554, *reply_to_b])
    second = ScriptedSMTP([*OK, 250])
    with PipelinedSMTPTransport(scripted(first, second), connections=1) as transport:
        results = transport.send_many([a, b])
    assert isinstance(results[0], smtplib.SMTPDataError) and results[0].smtp_code == 554
    assert results[1] is None
    assert first.writes == [commands(a), content(a) + commands(b)]  # never b's content
    assert second.writes == [commands(b), content(b)]


def test_after_a_failure_the_reset_is_awaited_before_the_next_message():
    # Pipelined: b's commands went out behind a's content and were refused as out of
    # sequence; a's failure explains it, so b is sent again after an RSET, on the same
    # connection.
    a, b = envelopes_to(["a", "b"])
    smtp = ScriptedSMTP([*OK, 554, 503, 503, 503, 250, *OK, 250])
    with PipelinedSMTPTransport(scripted(smtp), connections=1) as transport:
        results = transport.send_many([a, b])
    assert isinstance(results[0], smtplib.SMTPDataError) and results[1] is None
    rset = b"RSET\r\n"
    assert smtp.writes == [commands(a), content(a) + commands(b), rset, commands(b), content(b)]


def test_lock_step_resets_after_every_failed_transaction():
    a, b, c, d = envelopes_to(["a", "b", "c", "d"])
    # a: refused sender; b: refused recipient; c: refused content; d: sent.
    smtp = ScriptedSMTP([550, 250, 250, 550, 250, 250, 250, 354, 554, 250, *OK, 250])
    smtp.pipelining = False
    with PipelinedSMTPTransport(scripted(smtp), connections=1) as transport:
        results = transport.send_many([a, b, c, d])
    assert [type(r) for r in results] == [
        smtplib.SMTPSenderRefused,
        smtplib.SMTPRecipientsRefused,
        smtplib.SMTPDataError,
        type(None),
    ]
    rset = b"RSET\r\n"
    mail_a, _rcpt, _data = commands(a).splitlines(keepends=True)
    mail_b, rcpt_b, _data = commands(b).splitlines(keepends=True)
    mail_c, rcpt_c, data = commands(c).splitlines(keepends=True)
    mail_d, rcpt_d, _data = commands(d).splitlines(keepends=True)
    assert smtp.writes == [
        *[mail_a, rset],
        *[mail_b, rcpt_b, rset],
        *[mail_c, rcpt_c, data, content(c), rset],
        *[mail_d, rcpt_d, data, content(d)],
    ]
