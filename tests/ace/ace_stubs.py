"""Stub channels and helpers shared by the ACE tests (imported as ``ace_stubs``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ace.channel import Channel, ChannelSession, ChannelType
from ace.channel.mixins import EmailChannelMixin
from ace.errors import RecoverableChannelDeliveryError
from ace.message import Message
from ace.policy import Policy, PolicyResult
from ace.recipient import Recipient
from ace.utils.date import get_current_time


class StubEmailChannel(EmailChannelMixin, Channel):
    """Records deliveries; raises the queued errors first (one per call)."""

    def __init__(self) -> None:
        self.delivered: list[tuple[Message, Any]] = []
        self.errors: list[Exception] = []
        self.calls = 0
        self.sessions: list[StubSession] = []
        self.claims: set[str] = set()

    def deliver(self, message: Message, rendered_message: Any) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append((message, rendered_message))

    def overrides_delivery_for_message(self, message: Message) -> bool:
        return message.name in self.claims

    def open_session(self) -> ChannelSession:
        session = StubSession(self)
        self.sessions.append(session)
        return session


class DeferPolicy(Policy):
    """Postpones ``channels`` until ``until`` (a ``defer_until`` result), e.g. quiet hours."""

    def __init__(
        self,
        until: datetime,
        channels: Iterable[ChannelType] = ChannelType,
        reason: str = "quiet hours until 07:00 Europe/Paris",
    ) -> None:
        self.until = until
        self.channels = set(channels)
        self.reason = reason

    def check(self, message: Message) -> PolicyResult:
        return PolicyResult(deny=set(self.channels), reason=self.reason, defer_until=self.until)


class StubPushChannel(StubEmailChannel):
    channel_type = ChannelType.PUSH


class StubSession(ChannelSession):
    """The default session behaviour, plus a record of batches and closing."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self.batches: list[int] = []
        self.closed = False

    def deliver_many(self, items: Sequence[tuple[Message, Any]]) -> list[Exception | None]:
        self.batches.append(len(items))
        return super().deliver_many(items)

    def close(self) -> None:
        self.closed = True


def make_message(**overrides: Any) -> Message:
    """A message for the test templates (testapp/testmessage)."""
    fields: dict[str, Any] = {
        "app_label": "testapp",
        "name": "testmessage",
        "recipient": Recipient(lms_user_id=7, email_address="learner@example.org"),
        "context": {"name": "Ada", "topic": "course", "items": ["one", "two"]},
    }
    fields.update(overrides)
    return Message(**fields)


def recoverable(seconds: float, text: str = "try later") -> RecoverableChannelDeliveryError:
    """A recoverable error whose retry time is ``seconds`` from now (negative: in the past)."""
    return RecoverableChannelDeliveryError(text, get_current_time() + timedelta(seconds=seconds))
