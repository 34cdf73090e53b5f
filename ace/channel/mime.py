"""
:mod:`ace.channel.mime` serializes a Django ``EmailMessage`` to bytes without the
``email`` package's object tree and generator.

``email.message().as_bytes()`` costs about as much as rendering the templates (~0.4-0.9 ms for a
5 KB text + HTML email), most of it generic machinery: a ``MIMEText`` object per part, header
objects, a ``BytesGenerator`` walking the tree and folding every header. The batch path sends
the same shape of email over and over, so :func:`message_bytes` writes that shape directly:
headers in Django's order with Django's values, parts encoded per RFC 2045 (``7bit`` for ASCII
text with short lines, quoted-printable otherwise, so the result is 7-bit clean and needs no
8BITMIME), RFC 2047 encoded-words for non-ASCII headers, CRLF line endings. Dot-stuffing is left
to the SMTP layer (:func:`ace.channel.smtp_pipelining.smtp_data`). The django_email channel's
pipelined session serializes every message through here.

Anything else (attachments, non-text alternatives, a non-UTF-8 charset, a subclass that
overrides ``message()``) goes through Django's own ``message().as_bytes()``, so the result is
always a correct serialization of what Django would send.
"""

from __future__ import annotations

import base64
import binascii
import functools
import random
import re
import time
from email.header import Header
from email.utils import formatdate, getaddresses, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import BadHeaderError, sanitize_address
from django.core.mail.utils import DNS_NAME

__all__ = ["envelope", "message_bytes"]

_CRLF = "\r\n"
#: RFC 5322 section 2.1.1: a line MUST be no longer than 998 characters (plus CRLF).
_MAX_LINE = 998
#: RFC 2047 section 2: an encoded-word is at most 75 characters.
_ENCODED_WORD_MAX = 75
_ADDRESS_HEADERS = {"from", "sender", "reply-to", "to", "cc", "bcc"}
_SET_BY_DJANGO = {"from", "to", "cc", "reply-to"}
_EOLS = re.compile(rb"\r\n|\n|\r(?!\n)")
_UTF8 = ("utf-8", "utf8")


def message_bytes(email: EmailMessage) -> bytes:
    """
    The bytes Django would send for ``email`` (``email.message().as_bytes(linesep="\\r\\n")``
    up to equivalent encodings), built directly when the email has the common shape: a text
    body and optionally text alternatives (e.g. HTML), UTF-8, no attachments. Every line ends
    with CRLF.

    Raises:
        BadHeaderError: A header value contains a newline (as Django raises).
    """
    if not _fast_path_applies(email):
        data = email.message().as_bytes(linesep=_CRLF)
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # keep the CRLF promise
            data = _EOLS.sub(b"\r\n", data)
        return data
    return _build(email)


def envelope(email: EmailMessage) -> tuple[str, list[str]]:
    """
    The SMTP envelope Django's SMTP backend would use: the sender address and every
    recipient (to, cc, bcc), each reduced to its address with a punycode domain.

    Raises:
        ValueError: An address cannot be parsed (as Django raises).
    """
    encoding = email.encoding or settings.DEFAULT_CHARSET
    sender = _envelope_address(email.from_email, encoding)
    return sender, [_envelope_address(address, encoding) for address in email.recipients()]


def _fast_path_applies(email: EmailMessage) -> bool:
    if type(email) not in (EmailMessage, EmailMultiAlternatives):
        return False
    if email.attachments or (email.encoding or settings.DEFAULT_CHARSET).lower() not in _UTF8:
        return False
    if not isinstance(email.body, str):
        return False
    for content, mimetype in getattr(email, "alternatives", ()):
        if not (isinstance(content, str) and mimetype.startswith("text/")):
            return False
    return True


_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


def _envelope_address(address: str, encoding: str) -> str:
    address = str(address)
    if _SIMPLE_ADDRESS.match(address):
        return address
    return _envelope_address_slow(address, encoding)


@functools.lru_cache(maxsize=512)
def _envelope_address_slow(address: str, encoding: str) -> str:
    # Django's backend passes sanitize_address() to smtplib, which keeps the address part.
    sanitized = sanitize_address(address, encoding)
    return parseaddr(sanitized)[1] or sanitized


# Headers -----------------------------------------------------------------------------------


def _check_newlines(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise BadHeaderError(
            f"Header values can't contain newlines (got {value!r} for header {name!r})"
        )


def _encoded_words(value: str) -> str:
    """RFC 2047 base64 encoded-words, each at most 75 characters, never splitting a character."""
    words = []
    chunk: list[str] = []
    size = 0
    # "=?utf-8?b?" + "?=" is 12 characters; base64 of n bytes is 4 * ceil(n / 3).
    budget = (_ENCODED_WORD_MAX - 12) // 4 * 3
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > budget and chunk:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    if chunk:
        words.append("".join(chunk))
    return (_CRLF + " ").join(
        "=?utf-8?b?" + base64.b64encode(word.encode("utf-8")).decode("ascii") + "?="
        for word in words
    )


@functools.lru_cache(maxsize=256)
def _address_header_value(value: str, encoding: str) -> str:
    return ", ".join(sanitize_address(address, encoding) for address in getaddresses((value,)))


def _header(name: str, value: object, encoding: str) -> str:
    """One header line (without CRLF), with Django's value rules and RFC-correct encoding."""
    value = str(value)
    _check_newlines(name, value)
    if not value.isascii():
        if name.lower() in _ADDRESS_HEADERS:
            value = _address_header_value(value, encoding)
            if not value.isascii():  # pragma: no cover - sanitize_address always encodes
                value = _encoded_words(value)
        else:
            value = _encoded_words(value)
    line = f"{name}: {value}"
    if len(line) > _MAX_LINE:
        # Rare: fold at whitespace the way the email package does.
        line = f"{name}: " + Header(value, header_name=name).encode(linesep=_CRLF).lstrip()
    return line


_date_cache: list = [None, ""]


def _date_header() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, localtime=settings.EMAIL_USE_LOCALTIME)
    return _date_cache[1]


# Parts -------------------------------------------------------------------------------------


def _part(text: str, subtype: str) -> tuple[str, bytes]:
    """The headers and encoded body of one ``text/<subtype>; charset="utf-8"`` part."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    short_lines = len(text) <= _MAX_LINE or max(map(len, text.split("\n"))) <= _MAX_LINE
    if short_lines and text.isascii():
        encoding, body = "7bit", text.replace("\n", _CRLF).encode("ascii")
    else:
        # Encode the LF form: b2a_qp picks its soft line break from the first line ending.
        encoding = "quoted-printable"
        qp = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True)
        body = qp.replace(b"\n", b"\r\n")
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}'
        f"MIME-Version: 1.0{_CRLF}"
        f"Content-Transfer-Encoding: {encoding}{_CRLF}"
    )
    return headers, body


def _boundary(parts: list[bytes]) -> str:
    while True:
        boundary = f"==============={random.randrange(10**18, 10**19)}=="
        marker = ("--" + boundary).encode("ascii")
        if not any(marker in body for body in parts):
            return boundary


def _build(email: EmailMessage) -> bytes:
    encoding = email.encoding or settings.DEFAULT_CHARSET
    extra = email.extra_headers
    bodies: list[tuple[str, bytes]] = []
    alternatives = getattr(email, "alternatives", ())
    if not alternatives or email.body:
        bodies.append(_part(email.body, email.content_subtype))
    for content, mimetype in alternatives:
        bodies.append(_part(content, mimetype.split("/", 1)[1]))

    lines = []
    if alternatives:
        boundary = _boundary([body for _, body in bodies])
        lines.append(f'Content-Type: multipart/{email.alternative_subtype}; boundary="{boundary}"')
        lines.append("MIME-Version: 1.0")
    else:
        boundary = ""
        part_headers = bodies[0][0]
    lines.append(_header("Subject", email.subject, encoding))
    lines.append(_header("From", extra.get("From", email.from_email), encoding))
    for name, values in (("To", email.to), ("Cc", email.cc), ("Reply-To", email.reply_to)):
        if name in extra:
            lines.append(_header(name, extra[name], encoding))
        elif values:
            lines.append(_header(name, ", ".join(str(v) for v in values), encoding))
    lowered = {key.lower() for key in extra}
    if "date" not in lowered:
        lines.append(f"Date: {_date_header()}")
    if "message-id" not in lowered:
        lines.append(f"Message-ID: {make_msgid(domain=DNS_NAME)}")
    for name, value in extra.items():
        if name.lower() not in _SET_BY_DJANGO:
            _check_newlines(name, str(name))
            lines.append(_header(name, value, encoding))

    if not alternatives:
        head = part_headers + _CRLF.join(lines) + _CRLF + _CRLF
        return head.encode("ascii") + bodies[0][1]
    head = (_CRLF.join(lines) + _CRLF + _CRLF).encode("ascii")
    delimiter = f"{_CRLF}--{boundary}{_CRLF}".encode("ascii")
    chunks = [head, f"--{boundary}{_CRLF}".encode("ascii")]
    for index, (part_headers, body) in enumerate(bodies):
        if index:
            chunks.append(delimiter)
        chunks.append(part_headers.encode("ascii"))
        chunks.append(b"\r\n")
        chunks.append(body)
    chunks.append(f"{_CRLF}--{boundary}--{_CRLF}".encode("ascii"))
    return b"".join(chunks)
