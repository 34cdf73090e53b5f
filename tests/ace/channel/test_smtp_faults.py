"""Fault isolation in both SMTP sessions of the django_email channel, against a real SMTP server
on loopback that injects faults (``ace.test_utils.smtp``): a refused recipient, a rejected
content, a 421, a connection dropped before or in the content, and the misbehaving server that
answers an error but keeps the transaction open (so the next ``MAIL`` gets ``503 nested MAIL``
unless the client resets). Whatever the server does, a fault affects only the message it hit."""

from __future__ import annotations

import smtplib

import pytest

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
