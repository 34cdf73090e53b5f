"""
:mod:`ace.channel.smtp_pipelining` sends many messages over a few SMTP connections without
waiting for the server between messages.

Django's SMTP backend (``smtplib``) sends one message as four round trips (MAIL, RCPT, DATA,
the content) and waits for every reply, so a sender on an open loopback connection spends most
of a message's ~0.8 ms idle. :class:`PipelinedSMTPTransport`:

* uses ESMTP PIPELINING (RFC 2920) when the server offers it: ``MAIL``/``RCPT``/``DATA`` go out
  in one write, together with the previous message's content: a message costs one round trip;
* keeps several connections and visits them in turn, so while one server reply is on its way
  the process builds and writes the next message on another connection;
* opens each connection through the ``connect`` callable it is given, so connecting, TLS and
  login stay the caller's (:mod:`ace.channel.django_email` opens Django's own SMTP backend, so
  every email setting means what it means for Django); only the per-message exchange is new.

Servers without PIPELINING get the same round robin with one command per round trip.

Each message gets its own result, in order: ``None`` when the server accepted it, else the
exception ``smtplib`` would have raised for it (``SMTPSenderRefused``, ``SMTPRecipientsRefused``,
``SMTPDataError``, ``SMTPServerDisconnected`` ...), so callers map errors as they do for
Django's backend. A failure never raises out of :meth:`PipelinedSMTPTransport.send_many`.

A fault affects only the message it hit, whatever the server does after it: a failed
transaction is reset (``RSET``, its reply awaited) before the next message, as ``smtplib``
does; a message pipelined behind one that fails is taken back and sent again after the reset,
or on a new connection if the server already invited its content (hanging up is the only way
out of ``DATA`` that sends nothing). ``500``/``503`` to a command sent in order is the
connection's fault: the message is sent again once on a fresh one (then
:class:`SMTPOutOfSequence`), never refused. A lost connection or a ``421`` fails only the
message whose reply was awaited; the others on it are sent again.

When the connection is lost after a message's whole content (its final ``.`` line) was
written but before the server replied, the result is :class:`SMTPReplyLost` (a
``SMTPServerDisconnected``): the server may have accepted it, so it is never sent again.

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
    "SMTPOutOfSequence",
    "SMTPReplyLost",
    "smtp_data",
]

_EOLS = re.compile(rb"\r\n|\n|\r(?!\n)")
_RSET = b"RSET\r\n"
_DATA = b"DATA\r\n"
#: Replies that say the server's idea of the session is not the client's ("syntax error",
#: "bad sequence of commands"): a connection problem, not a verdict on the message.
_OUT_OF_SEQUENCE = frozenset({500, 503})
#: How often a message may be taken back and sent again within one send_many call.
_MAX_RESENDS = 3


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


class SMTPOutOfSequence(smtplib.SMTPServerDisconnected):
    """The server answered ``500``/``503`` (or no valid reply) to a command of this message
    sent in order, on a fresh connection too: its state, not the message, is at fault -- a
    connection problem (recoverable), not a refusal. ``smtp_code``/``smtp_error``: its reply."""

    def __init__(self, code: int, reply: bytes) -> None:
        super().__init__(f"Reply out of sequence, on a fresh connection too: {code} {reply!r}")
        self.smtp_code = code
        self.smtp_error = reply


#: The result of a message that got none (a bug): unknown, so it is never resent blindly.
_NO_RESULT = SMTPReplyLost(RuntimeError("no result was recorded for it"))


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
    """One attempt at sending a message. Its replies count while it is ``live``; once it has a
    result, or was taken back (:meth:`again`), the rest of its replies are read and ignored."""

    __slots__ = ("envelope", "faults", "index", "live", "recipients_left", "refused", "resends")

    def __init__(self, index: int, envelope: Envelope, faults: int = 0, resends: int = 0) -> None:
        self.index = index
        self.envelope = envelope
        self.faults = faults  # replies out of sequence to its commands, over all attempts
        self.resends = resends  # times the message was taken back to be sent again
        self.live = True
        self.refused: dict[str, tuple[int, bytes]] = {}
        self.recipients_left = len(envelope.recipients)

    def again(self) -> _Item:
        self.live = False
        return _Item(self.index, self.envelope, self.faults, self.resends + 1)


class _Slot:
    """One SMTP connection and what is outstanding on it."""

    __slots__ = ("backend", "disabled", "out", "pipelining", "queued", "sent", "smtp", "steps")

    def __init__(self) -> None:
        self.backend: Any = None
        self.smtp: smtplib.SMTP | None = None
        self.pipelining = False
        self.disabled = False
        # Commands to queue for writing (lock-step releases one at a time); bytes to write and
        # the replies they will produce (item or None, kind, recipient); replies due, in order.
        self.steps: deque[tuple[_Item | None, str, str, bytes]] = deque()
        self.out: list[bytes] = []
        self.queued: list[tuple[_Item | None, str, str]] = []
        self.sent: deque[tuple[_Item | None, str, str]] = deque()

    @property
    def connected(self) -> bool:
        return self.smtp is not None

    def busy(self) -> bool:
        """Whether the next message must wait. Pipelined, it may follow a message's content (not
        an RSET, whose reply is awaited); in lock-step it waits until nothing is outstanding."""
        if self.steps:
            return True
        if not self.pipelining:
            return bool(self.sent or self.queued)
        return any(kind != "body" for _, kind, _ in [*self.sent, *self.queued])

    def live(self) -> list[_Item]:
        """The live items with something outstanding here, in the order they were sent."""
        found = {id(i): i for i, *_ in [*self.sent, *self.queued, *self.steps] if i and i.live}
        return list(found.values())


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
        self._results: list[BaseException | None] = []
        self._retry: deque[_Item] = deque()  # taken back: sent before the next new item

    # Public API --------------------------------------------------------------------------

    def send_many(
        self, envelopes: Iterable[Envelope | BaseException]
    ) -> list[BaseException | None]:
        """
        Send each envelope; an exception in place of an envelope is that item's result as is
        (e.g. a message that could not be built). Envelopes are consumed lazily, so building
        the next message overlaps with the server working on the previous one.

        Returns: one entry per input, in order: ``None`` if the server accepted the message,
        else the exception describing why not.
        """
        results = self._results = []
        retry = self._retry = deque()
        source = self._items(envelopes, results)
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
                    self._collect(slot)
                    progressed = True
                if (retry or not exhausted) and not slot.busy():
                    item = retry.popleft() if retry else next(source, None)
                    if item is None:
                        exhausted = True
                    elif down is not None:
                        self._finish(item, down)
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
                            self._finish(item, error)
                if slot.connected:
                    self._pump(slot)
                    if slot.out:
                        self._flush(slot)
                        progressed = True
            if not progressed:
                if exhausted and not retry:
                    return results
                # Only disabled connections are left (their server refused more connections).
                error = down or smtplib.SMTPServerDisconnected("No SMTP connection available")
                for item in [*retry, *source]:
                    self._finish(item, error)
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
            failed = isinstance(envelope, BaseException)
            results.append(envelope if failed else _NO_RESULT)  # (replaced by its result)
            if not failed:
                yield _Item(len(results) - 1, envelope)

    def _finish(self, item: _Item, error: BaseException | None) -> None:
        item.live = False
        self._results[item.index] = error

    def _take_back(self, item: _Item, error: BaseException) -> None:
        """Send the message again (its content was not written), or if it was taken back too
        often, give it ``error`` (not sent)."""
        if item.resends >= _MAX_RESENDS:
            self._finish(item, error)
        else:
            self._retry.append(item.again())

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
        for pending in (slot.sent, slot.queued, slot.steps, slot.out):
            pending.clear()
        if backend is not None:
            self._close_quietly(backend, quit=quit)

    def _lose(
        self, slot: _Slot, error: BaseException, *, blame: bool, unwritten: frozenset = frozenset()
    ) -> None:
        """The connection is gone or abandoned. An item whose content was written (``unwritten``:
        ids of those whose write failed part-way) fails with :class:`SMTPReplyLost`; with
        ``blame`` the first item (whose reply was awaited) fails with ``error``; the others
        were not at fault and are sent again."""
        written = {id(i) for i, kind, _ in slot.sent if kind == "body" and id(i) not in unwritten}
        for item in slot.live():
            if id(item) in written:
                self._finish(item, SMTPReplyLost(error))
            elif blame:
                self._finish(item, error)
            else:
                self._take_back(item, error)
            blame = False
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
        while slot.steps and (slot.pipelining or not (slot.sent or slot.queued)):
            item, kind, rcpt, command = slot.steps.popleft()
            slot.out.append(command)
            slot.queued.append((item, kind, rcpt))

    def _flush(self, slot: _Slot) -> None:
        out, queued = slot.out, slot.queued
        payload = b"".join(out) if len(out) > 1 else out[0]
        slot.sent.extend(queued)
        written, error = _write_all(slot.smtp.sock, payload)  # type: ignore[union-attr]
        unwritten, end = set(), 0
        if error is not None:  # which contents were written whole (their "." line) before it?
            for chunk, (item, kind, _rcpt) in zip(out, queued, strict=True):
                end += len(chunk)
                if kind == "body" and end > written:
                    unwritten.add(id(item))
        out.clear()
        queued.clear()
        if error is None:
            return
        lost = smtplib.SMTPServerDisconnected(f"Connection lost while sending: {error}")
        self._lose(slot, lost, blame=True, unwritten=frozenset(unwritten))

    def _collect(self, slot: _Slot) -> None:
        """Read every reply due for what was written on ``slot`` and act on each."""
        smtp = slot.smtp
        assert smtp is not None
        sent = slot.sent
        while sent:
            try:
                code, reply = smtp.getreply()
            except smtplib.SMTPServerDisconnected as error:
                self._lose(slot, error, blame=True)
                return
            item, kind, rcpt = sent[0]  # (still outstanding while it is handled)
            self._on_reply(slot, item, kind, rcpt, code, reply)
            if not slot.connected:
                return
            sent.popleft()
            if code == 421:  # the server is closing the connection
                closing = smtplib.SMTPServerDisconnected(f"Server closing connection: {reply!r}")
                self._lose(slot, closing, blame=False)
                return

    def _on_reply(
        self, slot: _Slot, item: _Item | None, kind: str, rcpt: str, code: int, reply: bytes
    ) -> None:
        if item is None:  # RSET
            if not 200 <= code < 300:
                refused = smtplib.SMTPServerDisconnected(f"RSET refused: {code} {reply!r}")
                self._lose(slot, refused, blame=False)
            return
        if not item.live:  # it has its result, or was taken back: the reply is stale
            if kind == "data" and code == 354:
                # Content invited for a failed or taken-back transaction: dropping the
                # connection is the only way out that sends nothing.
                aborted = smtplib.SMTPServerDisconnected("Aborted a failed transaction")
                self._lose(slot, aborted, blame=False)
            return
        if kind == "body":
            if 200 <= code < 300:
                self._finish(item, None)
            elif 400 <= code < 600:
                self._fail(slot, item, smtplib.SMTPDataError(code, reply))
            else:  # no answer to the content: whether the server took it is unknown
                self._lose(slot, smtplib.SMTPResponseException(code, reply), blame=True)
            return
        if code == 354 if kind == "data" else 200 <= code < 300:
            if kind == "rcpt":
                item.recipients_left -= 1
            elif kind == "data":
                slot.out.append(smtp_data(item.envelope.data, crlf=item.envelope.crlf))
                slot.queued.append((item, "body", ""))
            return
        if code in _OUT_OF_SEQUENCE or not 400 <= code < 600:
            self._confused(slot, item, code, reply)
            return
        error: BaseException
        if kind == "mail":
            error = smtplib.SMTPSenderRefused(code, reply, item.envelope.sender)
        elif kind == "rcpt":
            item.refused[rcpt] = (code, reply)
            item.recipients_left -= 1
            if code != 421 and (
                item.recipients_left or len(item.refused) < len(item.envelope.recipients)
            ):
                return  # the message goes on for the recipients that were accepted
            error = smtplib.SMTPRecipientsRefused(dict(item.refused))
        else:
            error = smtplib.SMTPDataError(code, reply)
        self._fail(slot, item, error)

    def _fail(self, slot: _Slot, item: _Item, error: BaseException) -> None:
        """The server refused ``item``: that is its result. What was written behind it is taken
        back to be sent again, its unsent commands are dropped, and an RSET (its reply awaited)
        comes before the next message, whatever state the server is left in."""
        self._finish(item, error)
        again = smtplib.SMTPServerDisconnected("Not sent: taken back too many times")
        committed = {id(i) for i, kind, _ in [*slot.sent, *slot.queued] if kind == "body"}
        for other in slot.live():
            if id(other) not in committed:
                self._take_back(other, again)
        slot.steps = deque(step for step in slot.steps if step[0] is None or step[0].live)
        if not any(kind == "rset" for _, kind, *_ in [*slot.sent, *slot.queued, *slot.steps]):
            slot.steps.append((None, "rset", "", _RSET))

    def _confused(self, slot: _Slot, item: _Item, code: int, reply: bytes) -> None:
        """500, 503 or no valid reply to a command sent in order: the connection is at fault.
        Reconnect and send the message again, once; then :class:`SMTPOutOfSequence`."""
        log.warning("SMTP: %s %r out of sequence; reconnecting", code, reply)
        item.faults += 1
        if item.faults > 1:
            self._finish(item, SMTPOutOfSequence(code, reply))
        confused = smtplib.SMTPServerDisconnected(f"Reply out of sequence: {code} {reply!r}")
        self._lose(slot, confused, blame=False)
