"""Tests for ace.channel.mime: the bytes of an email, as Django would send them, written
directly."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.core.mail.message import BadHeaderError
from mime_samples import alternative_email, header_view, parse, parts

from ace.channel.mime import envelope, message_bytes


def assert_same_as_django(mail: EmailMessage) -> bytes:
    ours = message_bytes(mail)
    theirs = mail.message().as_bytes(linesep="\r\n")
    ours_parsed, theirs_parsed = parse(ours), parse(theirs)
    assert header_view(ours_parsed) == header_view(theirs_parsed)
    assert ours_parsed.get_content_type() == theirs_parsed.get_content_type()
    assert parts(ours_parsed) == parts(theirs_parsed)
    assert ours_parsed["Date"] and ours_parsed["Message-ID"]
    return ours


def assert_wire_safe(data: bytes) -> None:
    """7-bit, CRLF only, no line over RFC 5322's 998 characters."""
    assert data.isascii()
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_ascii_email_matches_django():
    data = assert_same_as_django(alternative_email())
    assert_wire_safe(data)
    assert b"Content-Transfer-Encoding: 7bit" in data


def test_non_ascii_email_matches_django_and_stays_seven_bit():
    mail = alternative_email(
        subject="Léa, 5 nouveaux cours pour vous ✓ — " + "très " * 30,
        body="Bonjour Léa,\n.une ligne qui commence par un point\nFrom the start\n" + "é" * 1500,
        html="<p>été ✓</p>\r\n<p>ligne\rsuivante</p>",
        from_email="Équipe Bench <news@example.org>",
        to=["Zoë Ünïcode <zoe@exämple.org>"],
        reply_to=["Réponse <reply@example.org>"],
        headers={"X-Campaign": "rentrée", "List-Unsubscribe": "<https://example.org/u/1>"},
    )
    data = assert_same_as_django(mail)
    assert_wire_safe(data)
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    parsed = parse(data)
    assert parsed["To"].addresses[0].domain == "xn--exmple-cua.org"
    assert parsed["Subject"].startswith("Léa, 5 nouveaux cours pour vous ✓")


def test_long_ascii_lines_are_quoted_printable():
    mail = alternative_email(body="x" * 3000, html="<p>" + "y" * 2500 + "</p>")
    data = assert_same_as_django(mail)
    assert_wire_safe(data)
    assert data.count(b"Content-Transfer-Encoding: quoted-printable") == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"html": None},  # text only
        {"body": "", "html": "<p>only html</p>"},  # no text part, as Django does
        {"cc": ["c@example.org"], "bcc": ["b@example.org"]},
        {"headers": {"To": "Someone Else <else@example.org>", "Message-ID": "<fixed@example.org>"}},
    ],
)
def test_other_shapes_match_django(overrides):
    assert_wire_safe(assert_same_as_django(alternative_email(**overrides)))


def test_attachments_fall_back_to_django():
    mail = alternative_email()
    mail.attach("notes.txt", "attached text", "text/plain")
    mail.attach("blob.bin", b"\x00\x01\x02", "application/octet-stream")
    data = message_bytes(mail)
    assert_wire_safe(data)
    assert parse(data).get_content_type() == "multipart/mixed"
    assert [p.get_filename() for p in parse(data).iter_attachments()] == ["notes.txt", "blob.bin"]


def test_header_with_newline_is_refused():
    with pytest.raises(BadHeaderError):
        message_bytes(alternative_email(headers={"X-Evil": "a\r\nBcc: victim@example.org"}))
    with pytest.raises(BadHeaderError):
        message_bytes(alternative_email(subject="Hello\nBcc: victim@example.org"))


def test_envelope_matches_djangos_smtp_backend():
    mail = alternative_email(
        from_email="Équipe <news@example.org>",
        to=["Zoë <zoe@exämple.org>", "plain@example.org"],
        cc=["c@example.org"],
        bcc=["Hidden <b@example.org>"],
    )
    assert envelope(mail) == (
        "news@example.org",
        ["zoe@xn--exmple-cua.org", "plain@example.org", "c@example.org", "b@example.org"],
    )
    with pytest.raises(ValueError):
        envelope(alternative_email(to=["bad@"]))  # as Django refuses it
