"""
:mod:`ace.outcome` describes what happened to one message on one channel type.

:func:`ace.ace.send` and :class:`ace.batch.BatchSender` return a list of
:class:`DeliveryOutcome`; the reference's ``send`` returned nothing.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from ace.errors import (
    ChannelError,
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)

if TYPE_CHECKING:
    from ace.channel import ChannelType
    from ace.message import Message


class OutcomeStatus(enum.StrEnum):
    """The end state of a message on one channel type."""

    SENT = "sent"
    DENIED = "denied"  # a policy refused this channel type
    FAILED = "failed"  # a permanent error (or the retries ran out)
    EXPIRED = "expired"  # the message expired before it could be delivered
    RETRY = "retry"  # a recoverable error; try again at next_attempt_time (batch path)
    NO_ADDRESS = "no_address"  # the recipient cannot be reached on this channel


@attrs.define
class DeliveryOutcome:
    """What happened to ``message`` on ``channel_type``, and why."""

    message: Message
    channel_type: ChannelType
    status: OutcomeStatus
    channel_name: str | None = None
    reason: str = ""
    exception_type: str = ""
    next_attempt_time: datetime | None = None

    @property
    def ok(self) -> bool:
        """True if the message was sent."""
        return self.status is OutcomeStatus.SENT

    @classmethod
    def from_error(
        cls,
        message: Message,
        channel_type: ChannelType,
        error: Exception,
        channel_name: str | None = None,
    ) -> DeliveryOutcome:
        """The outcome a channel error stands for (RETRY, NO_ADDRESS or FAILED)."""
        if isinstance(error, RecoverableChannelDeliveryError):
            status = OutcomeStatus.RETRY
            next_attempt_time = error.next_attempt_time
        else:
            status = (
                OutcomeStatus.NO_ADDRESS
                if isinstance(error, RecipientAddressMissingError)
                else OutcomeStatus.FAILED
            )
            next_attempt_time = None
        reason = error.message if isinstance(error, RecoverableChannelDeliveryError) else str(error)
        if not isinstance(error, ChannelError) and not reason:
            reason = repr(error)
        return cls(
            message=message,
            channel_type=channel_type,
            status=status,
            channel_name=channel_name,
            reason=reason,
            exception_type=_exception_type(error),
            next_attempt_time=next_attempt_time,
        )


def _exception_type(error: BaseException) -> str:
    """The most telling exception class name: the cause of a generic wrapper error."""
    cause = error.__cause__
    generic = type(error) in (FatalChannelDeliveryError, RecoverableChannelDeliveryError)
    return type(cause).__name__ if cause is not None and generic else type(error).__name__
