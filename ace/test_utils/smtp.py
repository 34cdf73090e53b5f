"""
:mod:`ace.test_utils.smtp` is a recording SMTP server on loopback for tests (needs
``aiosmtpd``, a test dependency).

It records every accepted message (envelope sender, recipients, raw bytes) and lets a test
choose, per address, a 4xx/5xx reply, a dropped connection or a slow reply, for a number of
times or for ever, at one of four stages:

* ``"mail_from"``: the ``MAIL FROM`` command (chosen by the *sender* address);
* ``"rcpt"``: the ``RCPT TO`` command;
* ``"data_command"``: the ``DATA`` command, before the server invites the content (354) --
  nothing of the message has been sent yet;
* ``"data"``: after the whole content, final ``.`` line included, was received, in place of
  the server's reply to it.

A rule's address is either a whole address (``"user1@example.org"``) or, without an ``@``, a
token chosen by every address containing it (``"reject550"`` chooses
``"reject550-7@example.org"``), so a test can spread faults over a batch by naming recipients.

Beyond a plain reply, the server can misbehave the ways real servers do:

* a ``421`` reply closes the connection after it is sent (as RFC 5321 says it should);
* ``reply(..., keep_open=True)`` answers the error but leaves the transaction open (aiosmtpd
  itself does this when its handler raises), so the next ``MAIL`` gets
  ``503 Error: nested MAIL command`` unless the client sends ``RSET`` first;
  :meth:`RecordingSMTPServer.fail_handler` makes the handler really raise;
* :meth:`RecordingSMTPServer.drop_in_content` invites the content, then drops the connection
  after its first line;
* :meth:`RecordingSMTPServer.drop_after_accepting` keeps the message and then drops the
  connection without replying: the client cannot know the message was accepted (the case
  where a retry would deliver it twice).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import threading
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

STAGES = ("mail_from", "rcpt", "data_command", "data")

# aiosmtpd logs every command at INFO; keep test output readable.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@attrs.define
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int

    @property
    def message(self) -> EmailMessage:
        """The parsed message (``email.policy.default``: ``get_body()``, decoded headers)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    def part(self, subtype: str) -> str:
        """The decoded text of the ``text/<subtype>`` part ('plain' or 'html'), with ``\n``
        line endings."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_subtype() != subtype:
            raise LookupError(f"No text/{subtype} part in the message")
        return body.get_content().replace("\r\n", "\n")


@attrs.define
class _Rule:
    # "reply", "drop", "delay", "accept_and_drop", "raise" or "cut" (drop in the content)
    action: str
    reply: str = ""
    seconds: float = 0.0
    times: int | None = None  # None: for ever
    keep_open: bool = False
    close: bool = False


class _KeepOpen(Exception):
    """Raised by the handler so that aiosmtpd answers ``reply`` without ending the
    transaction (its ``handle_exception`` path), like a server whose handler failed."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _Handler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Announce the extra ESMTP keywords (e.g. PIPELINING) before the last line.
        session.host_name = hostname
        extra = [f"250-{keyword}" for keyword in self.server.extensions]
        return [*responses[:-1], *extra, responses[-1]]

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, _KeepOpen):
            return error.reply
        # What aiosmtpd itself answers when a handler raises (the transaction stays open).
        return f"500 Error: ({error.__class__.__name__}) {error}"

    async def rule(self, stage: str, addresses: Iterable[str]) -> _Rule | None:
        """The rule to apply for the first of ``addresses`` that has one (delays are waited
        here and do not stop the search)."""
        for address in addresses:
            rule = self.server._take_rule(stage, address)
            if rule is None:
                continue
            if rule.action == "delay":
                await asyncio.sleep(rule.seconds)
                continue
            return rule
        return None

    @staticmethod
    def refuse(smtp: _CountingSMTP, rule: _Rule) -> str:
        """Act on a refusing rule: the reply to send (or raise, or drop)."""
        if rule.action == "drop":
            _abort(smtp)
            return "421 4.4.2 Connection dropped by test"
        if rule.action == "raise":
            raise RuntimeError("handler failed (test)")
        smtp.close_after_reply = rule.close
        if rule.keep_open:
            raise _KeepOpen(rule.reply)
        return rule.reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        rule = await self.rule("mail_from", [address])
        if rule is not None:
            if rule.keep_open:
                envelope.mail_from = address  # the refused sender's transaction stays open
            return self.refuse(server, rule)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = await self.rule("rcpt", [address])
        if rule is not None:
            return self.refuse(server, rule)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if server.closing:  # a pipelined message behind a 421: not kept, no reply sent
            return "421 4.3.0 Closing"
        rule = await self.rule("data", envelope.rcpt_tos)
        if rule is not None and rule.action != "accept_and_drop":
            return self.refuse(server, rule)
        self.server._record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or envelope.content),
                connection=getattr(server, "connection_number", 0),
            )
        )
        if rule is not None:  # accept_and_drop
            _abort(server)  # kept, but the client never hears so
        return "250 Message accepted for delivery"


def _abort(smtp: SMTP) -> None:
    """Close the client's connection at once; whatever the server writes after is lost (and
    nothing more is answered or recorded)."""
    smtp.closing = True  # type: ignore[attr-defined]
    if smtp.transport is not None:
        smtp.transport.abort()


class _CountingSMTP(SMTP):
    def __init__(self, *args: Any, recorder: RecordingSMTPServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = recorder
        self.connection_number = 0
        self.close_after_reply = False  # set by a 421 rule: close once the reply is sent
        self.closing = False

    def connection_made(self, transport: Any) -> None:
        self.connection_number = self._recorder._count_connection()
        super().connection_made(transport)

    async def push(self, status: Any) -> None:
        if self.closing:  # after a 421 or a drop nothing more is said, pipelined commands
            await asyncio.sleep(0)  # included: let the connection's end stop this session
            return
        await super().push(status)
        if self.close_after_reply:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        # The "data_command" stage: act on the DATA command itself, before the 354 reply.
        if self.envelope is not None and self.envelope.rcpt_tos and not arg:
            handler = self.event_handler
            rule = await handler.rule("data_command", list(self.envelope.rcpt_tos))
            if rule is not None and rule.action == "cut":
                await self.push("354 End data with <CR><LF>.<CR><LF>")
                await self._reader.readuntil(b"\r\n")  # the first line of the content
                _abort(self)
                await asyncio.sleep(60)  # cancelled as the connection ends: the rest is unread
                return
            if rule is not None:
                # refuse() raises to keep the transaction open (aiosmtpd answers the error).
                status = handler.refuse(self, rule)
                self._set_post_data_state()  # a refused DATA ends the transaction
                if self.transport is not None and not self.transport.is_closing():
                    await self.push(status)
                return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def __init__(self, recorder: RecordingSMTPServer, **kwargs: Any) -> None:
        self._recorder = recorder
        super().__init__(_Handler(recorder), **kwargs)

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, recorder=self._recorder, **self.SMTP_kwargs)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RecordingSMTPServer:
    """
    An SMTP server on ``127.0.0.1`` that records what it receives.

    Usage::

        server = RecordingSMTPServer().start()
        server.reply("busy@example.org", "451 4.3.0 Try later")   # RCPT stage, for ever
        server.reply("reject550", "550 5.1.1 No such user")       # any address containing it
        server.reply("keep554", "554 5.7.1 No", stage="data", keep_open=True)  # misbehaving
        server.drop("gone@example.org", times=1)                    # one dropped connection
        server.drop_after_accepting("maybe@example.org", times=1)   # kept, reply never sent
        ...
        server.messages[0].part("html")
        server.stop()
    """

    def __init__(self, host: str = "127.0.0.1", *, extensions: Iterable[str] = ()) -> None:
        self.host = host
        #: Extra EHLO keywords to announce, e.g. ``["PIPELINING"]`` (aiosmtpd handles
        #: pipelined commands but does not announce it).
        self.extensions = list(extensions)
        self.port = 0
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._rules: dict[tuple[str, str], list[_Rule]] = {}
        self._connections = 0
        self._controller: _Controller | None = None

    def start(self) -> RecordingSMTPServer:
        """Start listening on a free port (``self.port``)."""
        self.port = _free_port(self.host)
        self._controller = _Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def reset(self) -> None:
        """Forget recorded messages, rules and the connection count."""
        with self._lock:
            self._messages.clear()
            self._rules.clear()
            self._connections = 0

    # What arrived -------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Accepted messages, in arrival order."""
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """How many client connections were opened since the last reset."""
        with self._lock:
            return self._connections

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        """Accepted messages with ``address`` among the envelope recipients."""
        address = address.lower()
        return [m for m in self.messages if address in (r.lower() for r in m.rcpt_tos)]

    # Misbehaviour ---------------------------------------------------------------------------
    # ``address``: a whole address, or a token (no "@") chosen by every address containing it.

    def reply(
        self,
        address: str,
        reply: str,
        *,
        stage: str = "rcpt",
        times: int | None = None,
        keep_open: bool = False,
        close: bool | None = None,
    ) -> None:
        """Answer ``reply`` (e.g. ``"550 5.1.1 No such user"``) for this address.

        ``close``: close the connection once the reply is sent (default: for a ``421``).
        ``keep_open``: leave the transaction open after the error (at ``"mail_from"``, with
        the refused sender in it), so a next ``MAIL`` without ``RSET`` gets ``503``.
        """
        code = reply[:3]
        if not (code.isdigit() and code[0] in "2345"):
            raise ValueError(f"An SMTP reply starts with a 3-digit code, got {reply!r}")
        if keep_open and stage == "rcpt":
            raise ValueError("A refused RCPT leaves the transaction open anyway")
        close = code == "421" if close is None else close
        rule = _Rule("reply", reply=reply, times=times, keep_open=keep_open, close=close)
        self._add_rule(stage, address, rule)

    def fail_handler(self, address: str, *, stage: str = "data", times: int | None = None):
        """Make the server's handler raise for this address: aiosmtpd then answers
        ``500 Error: (RuntimeError) ...`` and keeps the transaction open."""
        self._add_rule(stage, address, _Rule("raise", times=times))

    def drop(self, address: str, *, stage: str = "rcpt", times: int | None = None) -> None:
        """Drop the connection when this address is reached (at ``"data"``: the content
        was received, and is discarded)."""
        self._add_rule(stage, address, _Rule("drop", times=times))

    def drop_in_content(self, address: str, *, times: int | None = None) -> None:
        """Invite the content (354), then drop the connection after its first line: the
        message is not kept, but the client may have written all of it."""
        self._add_rule("data_command", address, _Rule("cut", times=times))

    def drop_after_accepting(self, address: str, *, times: int | None = None) -> None:
        """Accept (record) a message to this recipient, then drop the connection instead of
        replying to its content: the client sent everything and never learns the result."""
        self._add_rule("data", address, _Rule("accept_and_drop", times=times))

    def delay(
        self, address: str, seconds: float, *, stage: str = "rcpt", times: int | None = None
    ) -> None:
        """Wait ``seconds`` before answering for this recipient (to provoke client timeouts)."""
        self._add_rule(stage, address, _Rule("delay", seconds=seconds, times=times))

    # Internals (called from the server thread) ----------------------------------------------

    def _add_rule(self, stage: str, address: str, rule: _Rule) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        with self._lock:
            self._rules.setdefault((stage, address.lower()), []).append(rule)

    def _take_rule(self, stage: str, address: str) -> _Rule | None:
        address = address.lower()
        with self._lock:
            rules = self._rules.get((stage, address))
            if not rules:  # a token contained in the address?
                rules = next(
                    (
                        found
                        for (rule_stage, key), found in self._rules.items()
                        if found and rule_stage == stage and "@" not in key and key in address
                    ),
                    None,
                )
            if not rules:
                return None
            rule = rules[0]
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    rules.pop(0)
            return rule

    def _record(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def _count_connection(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections
