"""
:mod:`ace.test_utils.smtp` is a recording SMTP server on loopback for tests (needs
``aiosmtpd``, a test dependency).

It records every accepted message (envelope sender, recipients, raw bytes) and lets a test
choose, per recipient, a 4xx/5xx reply, a dropped connection or a slow reply, for a number of
times or for ever, at one of three stages:

* ``"rcpt"``: the ``RCPT TO`` command;
* ``"data_command"``: the ``DATA`` command, before the server invites the content (354) --
  nothing of the message has been sent yet;
* ``"data"``: after the whole content, final ``.`` line included, was received, in place of
  the server's reply to it.

:meth:`RecordingSMTPServer.drop_after_accepting` keeps the message and then drops the
connection without replying: the client cannot know the message was accepted (the case where
a retry would deliver it twice).
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

STAGES = ("rcpt", "data_command", "data")

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
    action: str  # "reply", "drop", "delay" or "accept_and_drop"
    reply: str = ""
    seconds: float = 0.0
    times: int | None = None  # None: for ever


class _Handler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Announce the extra ESMTP keywords (e.g. PIPELINING) before the last line.
        session.host_name = hostname
        extra = [f"250-{keyword}" for keyword in self.server.extensions]
        return [*responses[:-1], *extra, responses[-1]]

    async def _apply(self, smtp: SMTP, stage: str, addresses: Iterable[str]) -> str | None:
        for address in addresses:
            rule = self.server._take_rule(stage, address)
            if rule is None:
                continue
            if rule.action == "delay":
                await asyncio.sleep(rule.seconds)
                continue
            if rule.action == "drop":
                _abort(smtp)
                return "421 4.4.2 Connection dropped by test"
            if rule.action == "accept_and_drop":
                return _ACCEPT_AND_DROP
            return rule.reply
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        status = await self._apply(server, "rcpt", [address])
        if status is not None:
            return status
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        status = await self._apply(server, "data", envelope.rcpt_tos)
        if status is not None and status is not _ACCEPT_AND_DROP:
            return status
        self.server._record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or envelope.content),
                connection=getattr(server, "connection_number", 0),
            )
        )
        if status is _ACCEPT_AND_DROP:
            _abort(server)  # kept, but the client never hears so
        return "250 Message accepted for delivery"


#: What ``_apply`` returns for an "accept_and_drop" rule (``handle_DATA`` acts on it).
_ACCEPT_AND_DROP = "250 accepted, then dropped by test"


def _abort(smtp: SMTP) -> None:
    """Close the client's connection at once; whatever the server writes after is lost."""
    if smtp.transport is not None:
        smtp.transport.abort()


class _CountingSMTP(SMTP):
    def __init__(self, *args: Any, recorder: RecordingSMTPServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = recorder
        self.connection_number = 0

    def connection_made(self, transport: Any) -> None:
        self.connection_number = self._recorder._count_connection()
        super().connection_made(transport)

    async def smtp_DATA(self, arg: str) -> None:
        # The "data_command" stage: act on the DATA command itself, before the 354 reply.
        if self.envelope is not None and self.envelope.rcpt_tos and not arg:
            handler = self.event_handler
            status = await handler._apply(self, "data_command", list(self.envelope.rcpt_tos))
            if status is not None:
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

    def reply(self, address: str, reply: str, *, stage: str = "rcpt", times: int | None = None):
        """Answer ``reply`` (e.g. ``"550 5.1.1 No such user"``) for this recipient."""
        code = reply[:3]
        if not (code.isdigit() and code[0] in "2345"):
            raise ValueError(f"An SMTP reply starts with a 3-digit code, got {reply!r}")
        self._add_rule(stage, address, _Rule("reply", reply=reply, times=times))

    def drop(self, address: str, *, stage: str = "rcpt", times: int | None = None) -> None:
        """Drop the connection when this recipient is reached (at ``"data"``: the content
        was received, and is discarded)."""
        self._add_rule(stage, address, _Rule("drop", times=times))

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
        with self._lock:
            rules = self._rules.get((stage, address.lower()))
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
