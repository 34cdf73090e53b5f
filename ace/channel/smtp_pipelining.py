"""
:mod:`ace.channel.smtp_pipelining` sends many messages over a few SMTP connections without
waiting for the server between messages.

Django's SMTP backend (``smtplib``) sends one message as four round trips (MAIL, RCPT, DATA,
the content) and waits for every reply before doing anything else, so a sender on an open
loopback connection spends most of a message's ~0.8 ms idle. :class:`PipelinedSMTPTransport`:

* uses ESMTP PIPELINING (RFC 2920) when the server offers it: ``MAIL``/``RCPT``/``DATA`` go out
  in one write, and the content of one message goes out together with the next message's
  ``MAIL``/``RCPT``/``DATA``, so a message costs one round trip;
* keeps several connections and visits them in turn, so while one server reply is on its way
  the process builds and writes the next message on another connection;
* opens each connection through the ``connect`` callable it is given, so connecting, TLS and
  login stay the caller's (:mod:`ace.channel.django_email` passes one that opens Django's own
  SMTP backend, so every email setting means exactly what it means for Django), and only the
  per-message exchange is replaced.

Servers without PIPELINING get the same round robin with one command per round trip.

Each message gets its own result, in order: ``None`` when the server accepted it, else the
exception ``smtplib`` would have raised for it (``SMTPSenderRefused``, ``SMTPRecipientsRefused``,
``SMTPDataError``, ``SMTPServerDisconnected`` ...), so callers map errors exactly as they do for
Django's backend. A failure never raises out of :meth:`PipelinedSMTPTransport.send_many`.

One result is finer than ``smtplib``'s: when the connection is lost after a message's whole
content (its final ``.`` line) was written but before the server replied to it, the result is
:class:`SMTPReplyLost` (a ``SMTPServerDisconnected``): the server may have accepted the message,
so sending it again could deliver it twice.

This module is a leaf: it imports only the standard library (no Django, nothing from ``ace``),
so the transport can be used, tested and measured on its own.
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

__all__ = [
    "Envelope",
    "PipelinedSMTPTransport",
    "SMTPReplyLost",
    "smtp_data",
]

_EOLS = re.compile(rb"\r\n|\n|\r(?!\n)")
_RSET = b"RSET\r\n"
_DATA = b"DATA\r\n"


class SMTPReplyLost(smtplib.SMTPServerDisconnected):
    """The connection was lost (dropped, timed out) after the message's content and its final
    ``.`` line were written, before the server's reply: the server may have accepted it.

    A subclass of ``SMTPServerDisconnected`` so code unaware of it still sees a disconnection;
    :func:`ace.channel.django_email.smtp_error_to_channel_error` maps it to
    :class:`~ace.errors.DeliveryOutcomeUnknownError` (never retried automatically).
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            f"Connection lost after the message was sent, before the server's reply ({error})"
        )
        self.__cause__ = error


class Envelope(NamedTuple):
    """One message for the wire: envelope sender, envelope recipients, and the message bytes
    (RFC 5322, not dot-stuffed). ``crlf=True`` promises that every line already ends with CRLF
    (as :mod:`ace.channel.mime` writes them), which skips the line-ending check."""

    sender: str
    recipients: list[str]
    data: bytes
    crlf: bool = False


def smtp_data(data: bytes, *, crlf: bool = False) -> bytes:
    """The DATA payload for ``data``: CRLF line endings (unless ``crlf`` says they already
    are), dot-stuffed (RFC 5321 section 4.5.2), ending with the ``.`` line."""
    if not crlf:
        count = data.count(b"\r\n")
        if data.count(b"\n") != count or data.count(b"\r") != count:
            data = _EOLS.sub(b"\r\n", data)
    data = data.replace(b"\r\n.", b"\r\n..")
    if data[:1] == b".":
        data = b"." + data
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _write_all(sock: Any, payload: bytes) -> tuple[int, OSError | None]:
    """Write ``payload`` like ``sendall``, but say how many bytes were handed to the kernel
    before an error stopped it (``sendall`` does not): ``(written, error or None)``."""
    view = memoryview(payload)
    written = 0
    try:
        while written < len(view):
            written += sock.send(view[written:])
    except OSError as error:
        return written, error
    return written, None


class _Item:
    """The state of one message on its way through a connection."""

    __slots__ = ("done", "envelope", "error", "index", "mail_ok", "recipients_left", "refused")

    def __init__(self, index: int, envelope: Envelope) -> None:
        self.index = index
        self.envelope = envelope
        self.done = False
        self.error: BaseException | None = None
        self.mail_ok = False
        self.refused: dict[str, tuple[int, bytes]] = {}
        self.recipients_left = len(envelope.recipients)


class _Slot:
    """One SMTP connection and what is outstanding on it."""

    __slots__ = ("backend", "disabled", "out", "pipelining", "queued", "sent", "smtp", "steps")

    def __init__(self) -> None:
        self.backend: Any = None
        self.smtp: smtplib.SMTP | None = None
        self.pipelining = False
        self.disabled = False
        # Commands not yet queued for writing (lock-step mode releases them one at a time).
        self.steps: deque[tuple[_Item | None, str, str, bytes]] = deque()
        # Bytes to write, and the replies they will produce: (item or None, kind, recipient).
        self.out: list[bytes] = []
        self.queued: list[tuple[_Item | None, str, str]] = []
        # Replies due for what was already written, in order.
        self.sent: deque[tuple[_Item | None, str, str]] = deque()

    @property
    def connected(self) -> bool:
        return self.smtp is not None

    def busy(self) -> bool:
        """Whether the next message must wait. Pipelined, it may follow a message's content
        and an RSET; in lock-step it waits until nothing is outstanding."""
        if self.steps:
            return True
        if not self.pipelining:
            return bool(self.sent or self.queued)
        return any(kind not in ("body", "rset") for _, kind, _ in self.sent) or any(
            kind not in ("body", "rset") for _, kind, _ in self.queued
        )


class PipelinedSMTPTransport:
    """
    Send messages over up to ``connections`` SMTP connections, pipelined when the server
    allows it. Connections stay open across :meth:`send_many` calls until :meth:`close`.

    Args:
        connect: Opens one connection: returns any object with a ``connection`` attribute (an
            open ``smtplib.SMTP``) and ``close()``, e.g. an opened Django SMTP ``EmailBackend``
            (:func:`ace.channel.django_email.django_smtp_connector`).
        connections: How many connections to keep (at least 1).
        pipelining: Use PIPELINING when the server offers it (turn off to compare).
    """

    def __init__(
        self, connect: Callable[[], Any], *, connections: int = 4, pipelining: bool = True
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._connect = connect
        self._slots = [_Slot() for _ in range(connections)]
        self._use_pipelining = pipelining

    # Public API --------------------------------------------------------------------------

    def send_many(
        self, envelopes: Iterable[Envelope | BaseException]
    ) -> list[BaseException | None]:
        """
        Send each envelope; an exception in place of an envelope is that item's result as is
        (e.g. a message that could not be built). Envelopes are consumed lazily, so building
        the next message overlaps with the server working on the previous one.

        Returns:
            One entry per input, in order: ``None`` if the server accepted the message, else
            the exception describing why not.
        """
        results: list[BaseException | None] = []
        source = self._items(envelopes, results)
        retry: deque[_Item] = deque()  # taken back from a connection that could not open
        down: BaseException | None = None  # no connection could be opened: fail the rest
        exhausted = False
        for slot in self._slots:
            slot.disabled = False

        while True:
            progressed = False
            for slot in self._slots:
                if slot.disabled:
                    continue
                if slot.sent:
                    self._collect(slot, results)
                    progressed = True
                if (retry or not exhausted) and not slot.busy():
                    item = retry.popleft() if retry else next(source, None)
                    if item is None:
                        exhausted = True
                    elif down is not None:
                        self._resolve(item, down, results)
                        progressed = True
                    else:
                        progressed = True
                        error = None if slot.connected else self._open(slot)
                        if error is None:
                            self._start(slot, item)
                        elif any(other.connected for other in self._slots):
                            log.warning("SMTP: continuing with one connection fewer: %s", error)
                            slot.disabled = True
                            retry.appendleft(item)
                            continue
                        else:
                            down = error
                            self._resolve(item, error, results)
                if slot.connected:
                    self._pump(slot)
                    if slot.out:
                        self._flush(slot, results)
                        progressed = True
            if not progressed:
                if exhausted and not retry:
                    return results
                # Only disabled connections are left (their server refused more connections).
                error = down or smtplib.SMTPServerDisconnected("No SMTP connection available")
                for item in [*retry, *source]:
                    self._resolve(item, error, results)
                return results

    def close(self) -> None:
        """Say QUIT on every open connection."""
        for slot in self._slots:
            self._drop(slot, quit=True)

    def __enter__(self) -> PipelinedSMTPTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Items -------------------------------------------------------------------------------

    @staticmethod
    def _items(
        envelopes: Iterable[Envelope | BaseException], results: list[BaseException | None]
    ) -> Iterator[_Item]:
        for envelope in envelopes:
            index = len(results)
            if isinstance(envelope, BaseException):
                results.append(envelope)
                continue
            results.append(None)
            yield _Item(index, envelope)

    @staticmethod
    def _resolve(item: _Item, error: BaseException | None, results: list) -> None:
        results[item.index] = error

    # Connections -------------------------------------------------------------------------

    def _open(self, slot: _Slot) -> BaseException | None:
        backend = None
        try:
            backend = self._connect()
            smtp = backend.connection
            smtp.ehlo_or_helo_if_needed()
        except (OSError, smtplib.SMTPException) as error:
            if backend is not None:
                self._close_quietly(backend)
            return error
        slot.backend = backend
        slot.smtp = smtp
        slot.pipelining = self._use_pipelining and smtp.has_extn("pipelining")
        return None

    @staticmethod
    def _close_quietly(backend: Any, *, quit: bool = False) -> None:
        try:
            if quit:
                backend.close()
            elif backend.connection is not None:
                backend.connection.close()
                backend.connection = None
        except (OSError, smtplib.SMTPException):
            pass

    def _drop(self, slot: _Slot, *, quit: bool = False) -> None:
        backend, slot.backend, slot.smtp = slot.backend, None, None
        slot.sent.clear()
        slot.queued.clear()
        slot.steps.clear()
        slot.out.clear()
        if backend is not None:
            self._close_quietly(backend, quit=quit)

    def _fail_slot(
        self,
        slot: _Slot,
        error: BaseException,
        results: list,
        *,
        unwritten: frozenset[int] = frozenset(),
    ) -> None:
        """The connection is gone: every unfinished item on it fails with ``error``, except an
        item whose content was written (its ``body`` awaits a reply; ``unwritten`` lists the
        ids of items whose write failed part-way): it fails with :class:`SMTPReplyLost`,
        since the server may have accepted it."""
        written = {
            id(item) for item, kind, _ in slot.sent if kind == "body" and id(item) not in unwritten
        }
        for item, *_ in [*slot.sent, *slot.queued, *slot.steps]:
            if item is not None and item.error is None and not item.done:
                item.error = SMTPReplyLost(error) if id(item) in written else error
                self._resolve(item, item.error, results)
        self._drop(slot)

    # The exchange ------------------------------------------------------------------------

    @staticmethod
    def _start(slot: _Slot, item: _Item) -> None:
        """Queue the envelope commands of ``item`` (written by :meth:`_pump`)."""
        sender, recipients = item.envelope.sender, item.envelope.recipients
        slot.steps.append((item, "mail", "", b"MAIL FROM:<%s>\r\n" % sender.encode("ascii")))
        for rcpt in recipients:
            slot.steps.append((item, "rcpt", rcpt, b"RCPT TO:<%s>\r\n" % rcpt.encode("ascii")))
        slot.steps.append((item, "data", "", _DATA))

    @staticmethod
    def _pump(slot: _Slot) -> None:
        """Release queued commands for writing: all of them when pipelining, else the next one
        once nothing is outstanding."""
        steps = slot.steps
        if slot.pipelining:
            while steps:
                item, kind, rcpt, command = steps.popleft()
                slot.out.append(command)
                slot.queued.append((item, kind, rcpt))
        elif steps and not slot.sent and not slot.queued:
            item, kind, rcpt, command = steps.popleft()
            slot.out.append(command)
            slot.queued.append((item, kind, rcpt))

    def _flush(self, slot: _Slot, results: list) -> None:
        out, queued = slot.out, slot.queued
        payload = b"".join(out) if len(out) > 1 else out[0]
        slot.sent.extend(queued)
        written, error = _write_all(slot.smtp.sock, payload)  # type: ignore[union-attr]
        if error is None:
            out.clear()
            queued.clear()
            return
        # Which contents were written whole (their final "." line went out) before the error?
        unwritten, end = set(), 0
        for chunk, (item, kind, _rcpt) in zip(out, queued, strict=True):
            end += len(chunk)
            if kind == "body" and end > written:
                unwritten.add(id(item))
        out.clear()
        queued.clear()
        lost = smtplib.SMTPServerDisconnected(f"Connection lost while sending: {error}")
        self._fail_slot(slot, lost, results, unwritten=frozenset(unwritten))

    def _collect(self, slot: _Slot, results: list) -> None:
        """Read every reply due for what was written on ``slot`` and act on each."""
        smtp = slot.smtp
        assert smtp is not None
        sent = slot.sent
        while sent:
            try:
                code, reply = smtp.getreply()
            except smtplib.SMTPServerDisconnected as error:
                self._fail_slot(slot, error, results)
                return
            item, kind, rcpt = sent.popleft()
            if item is not None:
                self._on_reply(slot, item, kind, rcpt, code, reply, results)
                if not slot.connected:
                    return
            if code == 421:  # the server is closing the connection
                closing = smtplib.SMTPServerDisconnected(
                    f"Server closing connection: 421 {reply!r}"
                )
                self._fail_slot(slot, closing, results)
                return

    def _on_reply(
        self, slot: _Slot, item: _Item, kind: str, rcpt: str, code: int, reply: bytes, results: list
    ) -> None:
        if kind == "mail":
            if 200 <= code < 300:
                item.mail_ok = True
            elif item.error is None:
                self._abandon(
                    slot,
                    item,
                    smtplib.SMTPSenderRefused(code, reply, item.envelope.sender),
                    results,
                )
        elif kind == "rcpt":
            item.recipients_left -= 1
            if not 200 <= code < 300:
                item.refused[rcpt] = (code, reply)
            if (
                item.recipients_left == 0
                and item.error is None
                and len(item.refused) == len(item.envelope.recipients)
            ):
                self._abandon(slot, item, smtplib.SMTPRecipientsRefused(item.refused), results)
        elif kind == "data":
            if code == 354:
                if item.error is not None:
                    # Content invited for a transaction that already failed: dropping the
                    # connection is the only way out that sends nothing.
                    aborted = smtplib.SMTPServerDisconnected("Aborted a failed transaction")
                    self._fail_slot(slot, aborted, results)
                    return
                slot.out.append(smtp_data(item.envelope.data, crlf=item.envelope.crlf))
                slot.queued.append((item, "body", ""))
            elif item.error is None:
                self._abandon(slot, item, smtplib.SMTPDataError(code, reply), results)
        elif kind == "body":
            item.done = True
            if 200 <= code < 300:
                self._resolve(item, None, results)
            else:
                item.error = smtplib.SMTPDataError(code, reply)
                self._resolve(item, item.error, results)

    def _abandon(self, slot: _Slot, item: _Item, error: BaseException, results: list) -> None:
        """``item`` failed before its content: record why, drop its unsent commands and, if the
        server opened a transaction, reset it before the next message."""
        item.error = error
        item.done = True
        self._resolve(item, error, results)
        if slot.steps:
            slot.steps = deque(step for step in slot.steps if step[0] is not item)
        if item.mail_ok:
            slot.steps.appendleft((None, "rset", "", _RSET))
