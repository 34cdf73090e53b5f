"""Reading bounce messages: delivery status notifications and what mail servers send instead.

* **RFC 3464** ``multipart/report; report-type=delivery-status``: each per-recipient block of
  the ``message/delivery-status`` part (``message/global-delivery-status`` too, RFC 6533) gives
  ``Final-Recipient`` (else ``Original-Recipient``), ``Action`` and ``Status``:
  ``failed`` with ``5.x.x`` is a hard bounce, ``failed`` with ``4.x.x`` a soft one (the server
  gave up after temporary errors), ``delayed`` a deferral, ``delivered``/``relayed``/
  ``expanded`` a delivery. Without a ``Status``, the code in ``Diagnostic-Code`` decides.
* **RFC 5965** (ARF) ``report-type=feedback-report``: a spam complaint (``Feedback-Type``
  other than ``not-spam``) about ``Original-Rcpt-To`` (else the returned message's ``To``).
* **Anything else that looks like a bounce** (from ``MAILER-DAEMON``/``postmaster``, a bounce
  subject, ``X-Failed-Recipients``), best effort: recipients from ``X-Failed-Recipients`` or
  the usual qmail/Postfix/Exim layouts, the severity from the first status code in the text.

The original message is found in the returned ``message/rfc822`` or ``text/rfc822-headers``
part, or (non-standard bounces) in the quoted text: its ``Message-ID`` and
``X-ACE-Message-UUID`` identify the delivery. The bounce's own envelope recipient headers
(``Delivered-To``, ``X-Original-To``, ``To``...) carry a VERP address when one was used.

:func:`parse_bounce` raises :class:`UnreadableBounce` (with the reason) for anything it cannot
read; the caller keeps such messages for review.
"""

from __future__ import annotations

import datetime as dt
import email
import re
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

import attrs

from campaigns.feedback.matching import UUID_HEADER

BOUNCED, DEFERRED, DELIVERED, COMPLAINED = "bounced", "deferred", "delivered", "complained"
HARD, SOFT = "hard", "soft"

#: Text scanned in a non-standard bounce (the rest is ignored).
TEXT_SCAN_CHARS = 200_000

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?:^|[\s:;(\[])([245]\d\d)(?=[\s-])", re.MULTILINE)
_ADDRESS = r"[^\s<>@\"',;:()\[\]]+@[A-Za-z0-9.\-\[\]:]+"
_QMAIL = re.compile(rf"^<({_ADDRESS})>:\s*(.*)$", re.MULTILINE)
_EXIM = re.compile(
    rf"(?:following address(?:\(es\))? failed|could not be delivered to[^:\n]*):\s*\n\s*\n?"
    rf"\s*<?({_ADDRESS})>?",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (status notification|failure|has failed|failed)|"
    r"mail delivery (failed|failure|subsystem)|failure notice|delivery problem|"
    r"non.?delivery|could not be delivered|rejected",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (subsystem|system)", re.IGNORECASE)
_HEADER_IN_TEXT = re.compile(r"^(Message-ID|X-ACE-Message-UUID)[ \t]*:[ \t]*(\S+)", re.I | re.M)
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
    r"mailbox (unavailable|not found)|recipient address rejected|invalid recipient|"
    r"address rejected|account (has been )?disabled",
    re.IGNORECASE,
)
#: Headers of the bounce itself that name its envelope recipient (our return address).
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


class UnreadableBounce(ValueError):
    """Not a bounce this module can read; the message says why."""


@attrs.frozen
class BounceRecipient:
    address: str
    kind: str  # bounced, deferred, delivered, complained
    bounce_type: str = ""  # hard, soft (bounced only)
    status: str = ""
    action: str = ""
    diagnostic: str = ""
    remote_mta: str = ""


@attrs.frozen
class ParsedBounce:
    format: str  # "rfc3464", "arf", "non-standard"
    recipients: tuple[BounceRecipient, ...]
    original_message_id: str = ""
    uuid_headers: tuple[str, ...] = ()
    verp_addresses: tuple[str, ...] = ()
    report_message_id: str = ""
    subject: str = ""
    sender: str = ""
    date: dt.datetime | None = None


def _unescape(text: str) -> str:
    """Raw 8-bit bytes the parser kept as surrogates (UTF-8 headers, RFC 6532) as text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    value = _unescape(str(value))
    try:
        return str(make_header(decode_header(value))).strip()
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return value.strip()


def _addresses(values: list[str]) -> list[str]:
    return [addr for _, addr in getaddresses(values) if "@" in addr]


def _date(message: Message) -> dt.datetime | None:
    value = message.get("Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def summary(raw: bytes) -> dict[str, str]:
    """Subject, sender and Message-ID of a message (empty strings when it has none)."""
    try:
        message = email.message_from_bytes(raw, policy=compat32)
    except Exception:  # anything unreadable is summarized as nothing
        return {"subject": "", "from": "", "message_id": ""}
    return {
        "subject": _header(message, "Subject"),
        "from": _header(message, "From"),
        "message_id": _header(message, "Message-ID"),
    }


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        inner = part.get_payload()
        return inner if isinstance(inner, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status (or feedback-report) part."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _text_blocks(_part_text(part))
    blocks = []
    for block in payload:
        if not isinstance(block, Message):
            continue
        blocks.append(block)
        # The parser reads other message/* types (global-delivery-status) as one message:
        # its body holds the remaining blocks.
        rest = block.get_payload(decode=True) if not block.is_multipart() else None
        if rest and rest.strip():
            blocks.extend(_text_blocks(rest.decode("utf-8", errors="replace")))
    return blocks


def _text_blocks(text: str) -> list[Message]:
    return [
        HeaderParser(policy=compat32).parsestr(block.strip() + "\n")
        for block in re.split(r"\r?\n[ \t]*\r?\n", text)
        if block.strip()
    ]


def _field_value(value: str) -> str:
    """``rfc822; a@b.org`` -> ``a@b.org`` (address-type and angle brackets dropped)."""
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").strip()


def _severity(status: str, diagnostic: str) -> str:
    """ "5", "4" or "2" from the status, else from the first code in the diagnostic."""
    if status and status[0] in "245":
        return status[0]
    found = _ENHANCED.search(diagnostic) or _BASIC.search(diagnostic)
    return found.group(1)[0] if found else ""


def _recipient_from_block(block: Message) -> BounceRecipient | None:
    address = _field_value(_header(block, "Final-Recipient")) or _field_value(
        _header(block, "Original-Recipient")
    )
    if "@" not in address:
        return None
    action = _header(block, "Action").lower().split()[0] if _header(block, "Action") else ""
    status_match = _ENHANCED.search(_header(block, "Status"))
    status = ".".join(status_match.groups()) if status_match else ""
    diagnostic = (
        _field_value(_header(block, "Diagnostic-Code"))
        if ";" in _header(block, "Diagnostic-Code")
        else _header(block, "Diagnostic-Code")
    )
    severity = _severity(status, diagnostic)
    common = {
        "address": address,
        "status": status,
        "action": action,
        "diagnostic": diagnostic,
        "remote_mta": _field_value(_header(block, "Remote-MTA")),
    }
    if action == "failed":
        return BounceRecipient(
            kind=BOUNCED, bounce_type=SOFT if severity == "4" else HARD, **common
        )
    if action == "delayed":
        return BounceRecipient(kind=DEFERRED, **common)
    if action in {"delivered", "relayed", "expanded"}:
        return BounceRecipient(kind=DELIVERED, **common)
    if severity == "5":
        return BounceRecipient(kind=BOUNCED, bounce_type=HARD, **common)
    if severity == "4":
        return BounceRecipient(kind=DEFERRED, **common)
    return None


def _original_headers(message: Message) -> Message | None:
    """The returned message (or its headers) inside a report or bounce."""
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in {"message/rfc822", "message/global"}:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if ctype in {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}:
            return HeaderParser(policy=compat32).parsestr(_part_text(part).lstrip())
    return None


def _identity(message: Message, original: Message | None, text: str = "") -> dict:
    message_id, uuids = "", []
    if original is not None:
        message_id = _header(original, "Message-ID")
        uuids = [str(v).strip() for v in original.get_all(UUID_HEADER, [])]
    if not message_id and text:  # quoted headers in a non-standard bounce
        own = _header(message, "Message-ID")
        for name, value in _HEADER_IN_TEXT.findall(text):
            if name.lower() == "message-id" and not message_id and value != own:
                message_id = value
            elif name.lower() == UUID_HEADER.lower():
                uuids.append(value)
    verp = _addresses([_header(message, name) for name in ENVELOPE_HEADERS if message.get(name)])
    return {
        "original_message_id": message_id,
        "uuid_headers": tuple(dict.fromkeys(uuids)),
        "verp_addresses": tuple(dict.fromkeys(verp)),
        "report_message_id": _header(message, "Message-ID"),
        "subject": _header(message, "Subject"),
        "sender": _header(message, "From"),
        "date": _date(message),
    }


def parse_bounce(raw: bytes) -> ParsedBounce:
    """Read a bounce, a delivery notification or a complaint report.

    Raises:
        UnreadableBounce: It is none of those, or names no recipient or no outcome.
    """
    if not raw or not raw.strip():
        raise UnreadableBounce("empty message")
    message = email.message_from_bytes(raw, policy=compat32)
    if message.get_content_type() == "multipart/report":
        report_type = (message.get_param("report-type") or "").lower()
        if report_type == "feedback-report":
            return _parse_arf(message)
        status_part = next(
            (
                part
                for part in message.walk()
                if part.get_content_type()
                in {"message/delivery-status", "message/global-delivery-status"}
            ),
            None,
        )
        if status_part is not None:
            return _parse_dsn(message, status_part)
    return _parse_non_standard(message)


def _parse_dsn(message: Message, status_part: Message) -> ParsedBounce:
    blocks = _blocks(status_part)
    recipients = [r for r in (_recipient_from_block(b) for b in blocks[1:] or blocks) if r]
    if not recipients:
        raise UnreadableBounce(
            "delivery status report without a recipient block that has a Final-Recipient and "
            "an Action or Status"
        )
    return ParsedBounce(
        format="rfc3464",
        recipients=tuple(recipients),
        **_identity(message, _original_headers(message)),
    )


def _parse_arf(message: Message) -> ParsedBounce:
    part = next(
        (p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None
    )
    if part is None:
        raise UnreadableBounce("feedback report without a message/feedback-report part")
    fields = _blocks(part)
    report = fields[0] if fields else Message()
    feedback_type = _header(report, "Feedback-Type").lower()
    original = _original_headers(message)
    addresses = _addresses([_header(report, "Original-Rcpt-To")])
    if not addresses and original is not None:
        addresses = _addresses([_header(original, "To")])
    if feedback_type == "not-spam":
        raise UnreadableBounce("feedback report of type not-spam (not a complaint)")
    if not addresses:
        raise UnreadableBounce("complaint report that names no recipient (redacted?)")
    return ParsedBounce(
        format="arf",
        recipients=tuple(
            BounceRecipient(
                address=address,
                kind=COMPLAINED,
                action=feedback_type or "abuse",
                diagnostic=f"Feedback-Type: {feedback_type or '(none)'}",
            )
            for address in addresses
        ),
        **_identity(message, original),
    )


def _bounce_text(message: Message) -> str:
    """The human-readable text of a bounce (text/plain parts outside the returned message)."""
    chunks: list[str] = []
    size = 0

    def walk(part: Message) -> None:
        nonlocal size
        if size > TEXT_SCAN_CHARS:
            return
        ctype = part.get_content_type()
        if part.is_multipart():
            for child in part.get_payload():
                if isinstance(child, Message):
                    walk(child)
        elif ctype == "text/plain" or (ctype.startswith("text/") and not chunks):
            text = _part_text(part)
            chunks.append(text)
            size += len(text)

    walk(message)
    return "\n".join(chunks)[:TEXT_SCAN_CHARS]


def _line_at(text: str, position: int) -> str:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return text[start : end if end >= 0 else len(text)].strip()


def _looks_like_bounce(message: Message) -> bool:
    return bool(
        message.get("X-Failed-Recipients")
        or _DAEMON.search(_header(message, "From"))
        or _BOUNCE_SUBJECT.search(_header(message, "Subject"))
        or message.get("Return-Path", "").strip() == "<>"
    )


def _parse_non_standard(message: Message) -> ParsedBounce:
    if not _looks_like_bounce(message):
        if (message.get("Auto-Submitted") or "").lower().startswith("auto-replied"):
            raise UnreadableBounce("an automatic reply (Auto-Submitted: auto-replied)")
        raise UnreadableBounce("not recognised as a bounce (no delivery status report)")
    text = _bounce_text(message)
    explained: dict[str, str] = {}
    for address, rest in _QMAIL.findall(text):
        explained.setdefault(address, rest)
    addresses = _addresses(message.get_all("X-Failed-Recipients", [])) or list(explained)
    if not addresses:
        addresses = [found.group(1) for found in _EXIM.finditer(text)]
    addresses = list(dict.fromkeys(addresses))
    if not addresses:
        raise UnreadableBounce("a bounce, but it names no failed recipient this parser can find")
    recipients = []
    for address in addresses:
        # The reason printed next to (after) the address, else the first in the text.
        at = text.find(address)
        nearby = text[at : at + 2000] if at >= 0 else text
        enhanced = _ENHANCED.search(nearby) or _ENHANCED.search(text)
        basic = _BASIC.search(nearby) or _BASIC.search(text)
        status = ".".join(enhanced.groups()) if enhanced else ""
        severity = status[:1] or (basic.group(1)[:1] if basic else "")
        if not severity and _HARD_WORDS.search(nearby):
            severity = "5"
        if severity not in {"4", "5"}:
            raise UnreadableBounce(
                f"a bounce for {address}, but no status code says whether it is permanent"
            )
        code = enhanced or basic
        line = (
            _line_at(code.string, code.start())
            if code is not None
            else next((ln.strip() for ln in nearby.splitlines()[1:] if ln.strip()), "")
        )
        recipients.append(
            BounceRecipient(
                address=address,
                kind=BOUNCED,
                bounce_type=HARD if severity == "5" else SOFT,
                status=status or (basic.group(1) if basic else ""),
                action="failed",
                diagnostic=(explained.get(address) or line)[:1000],
            )
        )
    return ParsedBounce(
        format="non-standard",
        recipients=tuple(recipients),
        **_identity(message, _original_headers(message), text),
    )
