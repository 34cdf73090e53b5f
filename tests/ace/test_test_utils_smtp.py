"""Tests for ace.test_utils.smtp, the recording SMTP server behind the smtp_server fixture."""

from __future__ import annotations

import smtplib

import pytest

RAW = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def client(server):
    return smtplib.SMTP(server.host, server.port, timeout=5)


def test_records_envelope_and_bytes(smtp_server):
    with client(smtp_server) as smtp:
        smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], RAW)
    (received,) = smtp_server.messages
    assert received.mail_from == "a@example.org"
    assert received.rcpt_tos == ["b@example.org", "c@example.org"]
    assert received.message["Subject"] == "hi"
    assert received.part("plain") == "body\n"
    assert received.connection == 1
    assert smtp_server.connections == 1
    assert smtp_server.messages_to("C@example.org") == [received]
    with pytest.raises(LookupError):
        received.part("html")


def test_reply_rules_for_chosen_recipients_and_times(smtp_server):
    smtp_server.reply("b@example.org", "451 4.7.1 later", times=1)
    with client(smtp_server) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            smtp.sendmail("a@example.org", ["b@example.org"], RAW)
        assert info.value.recipients["b@example.org"] == (451, b"4.7.1 later")
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)  # the rule was used up
    assert len(smtp_server.messages) == 1


def test_data_stage_reply(smtp_server):
    smtp_server.reply("b@example.org", "554 5.6.0 rejected", stage="data")
    with client(smtp_server) as smtp, pytest.raises(smtplib.SMTPDataError):
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    assert smtp_server.messages == []


def test_drop_closes_the_connection(smtp_server):
    smtp_server.drop("b@example.org", times=1)
    smtp = client(smtp_server)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    with client(smtp_server) as smtp:
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    assert smtp_server.connections == 2


def test_delay_makes_a_client_time_out(smtp_server):
    smtp_server.delay("b@example.org", 1.0, times=1)
    smtp = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=0.3)
    # smtplib reports a read timeout as a disconnection "timed out".
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected), match="timed out"):
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)


def test_bad_rules_are_refused(smtp_server):
    with pytest.raises(ValueError, match="3-digit"):
        smtp_server.reply("b@example.org", "oops")
    with pytest.raises(ValueError, match="stage"):
        smtp_server.drop("b@example.org", stage="mail")


def test_reset_forgets_everything(smtp_server):
    smtp_server.reply("b@example.org", "550 no")
    with client(smtp_server) as smtp:
        smtp.sendmail("a@example.org", ["c@example.org"], RAW)
    smtp_server.reset()
    assert smtp_server.messages == [] and smtp_server.connections == 0
    with client(smtp_server) as smtp:
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)
    assert len(smtp_server.messages) == 1


def test_drop_at_the_data_command_happens_before_any_content(smtp_server):
    smtp_server.drop("b@example.org", stage="data_command", times=1)
    smtp = client(smtp_server)
    smtp.ehlo()
    smtp.mail("a@example.org")
    smtp.rcpt("b@example.org")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.data(RAW)
    assert smtp_server.messages == []


def test_reply_at_the_data_command(smtp_server):
    smtp_server.reply("b@example.org", "451 4.3.0 not now", stage="data_command", times=1)
    with client(smtp_server) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail("a@example.org", ["b@example.org"], RAW)
        assert info.value.smtp_code == 451
        smtp.sendmail("a@example.org", ["b@example.org"], RAW)  # the connection is still fine
    assert len(smtp_server.messages) == 1


def test_drop_after_accepting_keeps_the_message_but_never_replies(smtp_server):
    smtp_server.drop_after_accepting("b@example.org", times=1)
    smtp = client(smtp_server)
    smtp.ehlo()
    smtp.mail("a@example.org")
    smtp.rcpt("b@example.org")
    # The content went out whole; the reply to it never comes.
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.data(RAW)
    (kept,) = smtp_server.messages
    assert kept.rcpt_tos == ["b@example.org"]
    assert kept.message["Subject"] == "hi"
