"""Opaque one-click unsubscribe links and the RFC 8058 ``List-Unsubscribe`` headers.

A link carries the address, the message type (or none: "everything"), when it was issued and
whether it comes from a test send, encrypted and authenticated with a key derived from the
project's ``SECRET_KEY``: nobody can unsubscribe an address they did not receive mail at, the
view needs no login, CSRF token or lookup table (https://www.rfc-editor.org/rfc/rfc8058), and
nothing in the link -- in a mail log, a proxy log, a forwarded message -- reads as an address.

The token is the URL-safe base64 (no padding) of ``version (1 byte) || AES-SIV(plaintext)``
(RFC 5297: deterministic authenticated encryption, so no nonce to get wrong, and a short
token), the version byte and :data:`SALT` bound to it as associated data. The plaintext is
``flags (1) || issued at (4, Unix seconds) || message type id (8, if any) || email (UTF-8)``.
The 64-byte key is HKDF-SHA256 of ``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` still open links
made before a key rotation.

Links sent before this format -- Django ``signing.dumps`` of ``{"e": email, "t": type id}``,
readable by anyone who base64-decodes them -- keep working (:func:`read_unsubscribe_token`
tells them apart by their ``:``), so links already in inboxes do not break.

``CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS`` (default ``None``: links never expire) makes older links
answer "expired" (``signing.SignatureExpired``), old-format ones included (they carry their
signing time). Laws such as CAN-SPAM want a link to work for at least 30 days after the mail.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import struct
import time
from collections.abc import Callable

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import signing
from django.urls import reverse

from campaigns import conf

SALT = "campaigns.unsubscribe"
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
INVALID_TOKEN = "Malformed unsubscribe token."
EXPIRED_TOKEN = "Unsubscribe token expired."

_VERSION = b"\x01"
_AAD = [SALT.encode() + _VERSION]
_HAS_TYPE, _TEST = 1, 2
_HEAD = struct.Struct(">BI")  # flags, issued at
_TYPE_ID = struct.Struct(">Q")
#: The clock of the issue times (tests set it to make tokens reproducible).
_clock = time.time


@attrs.define(frozen=True)
class UnsubscribeRequest:
    """What a valid unsubscribe token asks for.

    ``test``: the link of a test send, which unsubscribes nobody. ``issued_at``: when the link
    was made (aware, UTC).
    """

    email: str
    message_type_id: int | None
    test: bool = False
    issued_at: dt.datetime | None = None


@functools.lru_cache(maxsize=8)
def _cipher(secret: str) -> AESSIV:
    """The AES-SIV cipher of a secret key (HKDF once per key, not per link)."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=SALT.encode(), info=b"unsubscribe token v1"
    ).derive(secret.encode())
    return AESSIV(key)


def _normalised(email: str) -> str:
    if not email or "@" not in email:
        raise ValueError(f"Cannot sign an unsubscribe link for {email!r}: not an email address.")
    return email.strip().lower()


def _token_maker(message_type_id: int | None, test: bool) -> Callable[[str], str]:
    """Everything that does not depend on the address is prepared here, once."""
    flags = _TEST if test else 0
    type_part = b""
    if message_type_id is not None:
        type_id = int(message_type_id)
        if type_id < 0:
            raise ValueError(f"Invalid message type id {message_type_id!r}.")
        flags |= _HAS_TYPE
        type_part = _TYPE_ID.pack(type_id)
    encrypt = _cipher(settings.SECRET_KEY).encrypt
    pack, aad, encode = _HEAD.pack, _AAD, base64.urlsafe_b64encode

    def token(email: str) -> str:
        plaintext = pack(flags, int(_clock())) + type_part + _normalised(email).encode()
        return encode(_VERSION + encrypt(plaintext, aad)).rstrip(b"=").decode("ascii")

    return token


def unsubscribe_token(email: str, message_type_id: int | None = None, *, test: bool = False) -> str:
    """An opaque, URL-safe token for ``email`` (normalised to lower case) and the message type
    (``None``: every message); ``test``: the link of a test send, which changes nothing."""
    return _token_maker(message_type_id, test)(email)


def read_unsubscribe_token(token: str) -> UnsubscribeRequest:
    """Decrypt and check a token (either format).

    Raises:
        django.core.signing.SignatureExpired: If it is older than
            ``CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS``.
        django.core.signing.BadSignature: If it was altered, forged or is not a token.
    """
    max_age = conf.unsubscribe_max_age()
    if ":" in token:
        return _read_legacy(token, max_age)
    request = _read(token)
    if max_age is not None and dt.datetime.now(dt.UTC) - request.issued_at > max_age:
        raise signing.SignatureExpired(EXPIRED_TOKEN)
    return request


def _read(token: str) -> UnsubscribeRequest:
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as error:
        raise signing.BadSignature(INVALID_TOKEN) from error
    if blob[:1] != _VERSION:
        raise signing.BadSignature(INVALID_TOKEN)
    for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        try:
            plaintext = _cipher(secret).decrypt(blob[1:], _AAD)
            break
        except (InvalidTag, ValueError):  # ValueError: shorter than the 16-byte tag
            continue
    else:
        raise signing.BadSignature(INVALID_TOKEN)
    try:
        flags, issued = _HEAD.unpack_from(plaintext)
        rest = plaintext[_HEAD.size :]
        type_id = None
        if flags & _HAS_TYPE:
            (type_id,) = _TYPE_ID.unpack_from(rest)
            rest = rest[_TYPE_ID.size :]
        email = rest.decode()
    except (struct.error, UnicodeDecodeError) as error:  # authentic, so only a bug gets here
        raise signing.BadSignature(INVALID_TOKEN) from error
    return UnsubscribeRequest(
        email=email,
        message_type_id=type_id,
        test=bool(flags & _TEST),
        issued_at=dt.datetime.fromtimestamp(issued, dt.UTC),
    )


def _read_legacy(token: str, max_age: dt.timedelta | None) -> UnsubscribeRequest:
    """The signed (readable) format of the links sent before the opaque one."""
    payload = signing.loads(token, salt=SALT, max_age=max_age)
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), str):
        raise signing.BadSignature(INVALID_TOKEN)
    type_id = payload.get("t")
    if type_id is not None and (not isinstance(type_id, int) or isinstance(type_id, bool)):
        raise signing.BadSignature(INVALID_TOKEN)
    return UnsubscribeRequest(email=payload["e"], message_type_id=type_id)


def unsubscribe_url(email: str, message_type_id: int | None = None, *, test: bool = False) -> str:
    """Absolute unsubscribe link (``settings.SITE_URL`` + the token's path) for one address."""
    return unsubscribe_url_factory(message_type_id, test=test)(email)


def unsubscribe_url_factory(
    message_type_id: int | None = None, *, test: bool = False
) -> Callable[[str], str]:
    """:func:`unsubscribe_url` for many addresses of one message type (a batch): the route is
    reversed and the key derived once here, and the returned function only encrypts each
    address. Tokens are URL-safe, so splicing one into the reversed path is what reverse()
    would give."""
    marker = "UNSUBSCRIBETOKEN"
    path = reverse("campaigns:unsubscribe", kwargs={"token": marker})
    prefix, suffix = path.split(marker)
    base = settings.SITE_URL.rstrip("/") + prefix
    token = _token_maker(message_type_id, test)

    def url(email: str) -> str:
        return base + token(email) + suffix

    return url


def unsubscribe_headers(url: str) -> dict[str, str]:
    """The RFC 8058 one-click headers for ``url`` (put them in ``message.options["headers"]``)."""
    if any(c in url for c in "\r\n<>"):
        raise ValueError("An unsubscribe URL cannot contain line breaks or angle brackets.")
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK_BODY}


def unsubscribe_headers_for(email: str, message_type_id: int | None = None) -> dict[str, str]:
    """Shortcut: the headers for a fresh link of ``email`` and the message type."""
    return unsubscribe_headers(unsubscribe_url(email, message_type_id))
