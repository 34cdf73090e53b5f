"""Polling the bounce mailbox (``CAMPAIGNS_BOUNCE_IMAP_URL``) for senders on plain SMTP.

URLs: ``imaps://user:pass@host:993/INBOX`` (TLS), ``imap+starttls://user:pass@host:143/INBOX``
(STARTTLS), ``imap://…`` (no encryption: loopback or a trusted network only), and
``pop3s://user:pass@host:995`` / ``pop3://…``. User, password and folder are URL-encoded
(``%40`` for ``@``). Certificates are verified against the system's CAs.

IMAP: each poll reads at most ``CAMPAIGNS_BOUNCE_MAILBOX_BATCH`` unseen messages (without
marking them read), records each (:func:`campaigns.feedback.services.bounce_record`), and only
then flags it ``\\Seen`` (or deletes it, with ``CAMPAIGNS_BOUNCE_IMAP_DELETE``). A crash between
the two reads the message again next time, which records nothing new. POP3 has no flags:
recorded messages are deleted.
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import ssl
from urllib.parse import unquote, urlsplit

import attrs

from campaigns import conf
from campaigns.feedback.services import bounce_record

log = logging.getLogger(__name__)

#: Seconds before a mailbox connection attempt or reply times out.
TIMEOUT = 30
DEFAULT_PORTS = {"imap": 143, "imap+starttls": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
BAD_URL = (
    "CAMPAIGNS_BOUNCE_IMAP_URL must look like imaps://user:password@host:993/INBOX "
    "(schemes: {schemes}); got a {scheme!r} URL"
)


class MailboxError(Exception):
    """The mailbox could not be read (connection, login, folder); nothing was lost."""


@attrs.frozen
class MailboxURL:
    scheme: str
    host: str
    port: int
    username: str
    password: str = attrs.field(repr=False)
    folder: str = "INBOX"

    @classmethod
    def parse(cls, url: str) -> MailboxURL:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise MailboxError(
                BAD_URL.format(schemes=", ".join(DEFAULT_PORTS), scheme=scheme or "schemeless")
            )
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise MailboxError(f"CAMPAIGNS_BOUNCE_IMAP_URL: bad port ({exc})") from None
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
        )

    @property
    def label(self) -> str:
        """The URL without the password (for logs and the admin)."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.folder}"


@attrs.define
class PollResult:
    configured: bool = True
    mailbox: str = ""
    read: int = 0
    events: int = 0
    unparsed: int = 0

    def as_dict(self) -> dict:
        return attrs.asdict(self)


def mailbox_poll(url: str | None = None, *, limit: int | None = None) -> PollResult:
    """Read the bounce mailbox once. Without a URL (and no setting) it does nothing.

    Raises:
        MailboxError: The mailbox could not be reached, logged into or opened.
    """
    url = url if url is not None else conf.bounce_imap_url()
    if not url:
        return PollResult(configured=False)
    box = MailboxURL.parse(url)
    limit = limit or conf.bounce_mailbox_batch()
    result = PollResult(mailbox=box.label)
    try:
        if box.scheme.startswith("pop3"):
            _poll_pop3(box, limit, result)
        else:
            _poll_imap(box, limit, result)
    except (OSError, imaplib.IMAP4.error, poplib.error_proto) as exc:
        raise MailboxError(f"{box.label}: {exc}") from exc
    log.info("bounce mailbox %s: %s", box.label, result.as_dict())
    return result


def _record(raw: bytes, box: MailboxURL, result: PollResult) -> None:
    outcome = bounce_record(raw, mailbox=box.label)
    result.read += 1
    result.events += outcome.new_events
    result.unparsed += int(outcome.unparsed is not None)


# IMAP -----------------------------------------------------------------------------------------


def tls_context() -> ssl.SSLContext:
    """Certificates verified against the system's CAs, host name checked."""
    return ssl.create_default_context()


def _imap_connect(box: MailboxURL) -> imaplib.IMAP4:
    context = tls_context()
    if box.scheme == "imaps":
        return imaplib.IMAP4_SSL(box.host, box.port, ssl_context=context, timeout=TIMEOUT)
    client = imaplib.IMAP4(box.host, box.port, timeout=TIMEOUT)
    if box.scheme == "imap+starttls":
        client.starttls(ssl_context=context)
    return client


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(response: tuple, what: str) -> list:
    typ, data = response
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise MailboxError(f"IMAP {what} failed: {typ} {detail}")
    return data


def _fetched_message(data: list) -> bytes | None:
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def _poll_imap(box: MailboxURL, limit: int, result: PollResult) -> None:
    delete = conf.bounce_imap_delete()
    client = _imap_connect(box)
    try:
        _check(client.login(box.username, box.password), "LOGIN")
        _check(client.select(_quoted(box.folder)), f"SELECT {box.folder}")
        data = _check(client.uid("SEARCH", None, "UNSEEN", "UNDELETED"), "SEARCH")
        uids = (data[0] or b"").split()[:limit] if data else []
        flag = "(\\Deleted)" if delete else "(\\Seen)"
        for uid in uids:
            fetched = _check(client.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
            raw = _fetched_message(fetched)
            if raw is None:
                log.warning("bounce mailbox %s: message %s vanished", box.label, uid)
                continue
            _record(raw, box, result)
            _check(client.uid("STORE", uid, "+FLAGS.SILENT", flag), "STORE")
        if delete and uids:
            _check(client.expunge(), "EXPUNGE")
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


# POP3 -----------------------------------------------------------------------------------------


def _poll_pop3(box: MailboxURL, limit: int, result: PollResult) -> None:
    if box.scheme == "pop3s":
        client = poplib.POP3_SSL(box.host, box.port, context=tls_context(), timeout=TIMEOUT)
    else:
        client = poplib.POP3(box.host, box.port, timeout=TIMEOUT)
    try:
        client.user(box.username)
        client.pass_(box.password)
        count, _size = client.stat()
        for number in range(1, min(count, limit) + 1):
            _response, lines, _octets = client.retr(number)
            _record(b"\r\n".join(lines) + b"\r\n", box, result)
            client.dele(number)
        client.quit()  # deletions take effect here
    except BaseException:
        try:
            client.rset()  # keep every message when something went wrong
            client.quit()
        except (OSError, poplib.error_proto):
            pass
        raise
