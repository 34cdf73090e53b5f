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
    DeliveryOutcomeUnknownError,
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
    RETRY = "retry"  # a recoverable error or a policy deferral; try at next_attempt_time
    NO_ADDRESS = "no_address"  # the recipient cannot be reached on this channel
    UNKNOWN = "unknown"  # the connection was lost after the message went out: not retried


@attrs.define
class DeliveryOutcome:
    """What happened to ``message`` on ``channel_type``, and why.

    ``deferred`` is true for a RETRY that a policy asked for (``PolicyResult.defer_until``):
    nothing was attempted, so a caller counting attempts or backing off must not count it,
    and ``next_attempt_time`` is the policy's own time.
    """

    message: Message
    channel_type: ChannelType
    status: OutcomeStatus
    channel_name: str | None = None
    reason: str = ""
    exception_type: str = ""
    next_attempt_time: datetime | None = None
    deferred: bool = False

    @property
    def ok(self) -> bool:
        """True if the message was sent."""
        return self.status is OutcomeStatus.SENT

    @classmethod
    def for_deferral(
        cls, message: Message, channel_type: ChannelType, until: datetime, reason: str
    ) -> DeliveryOutcome:
        """A policy postponed the message until ``until``: RETRY then (``deferred``, nothing
        was attempted), or EXPIRED when the message expires before that time."""
        expires = message.expiration_time
        if expires is not None and until >= expires:
            return cls(
                message=message,
                channel_type=channel_type,
                status=OutcomeStatus.EXPIRED,
                reason=f"Would expire before it may be sent ({until.isoformat()}): {reason}",
            )
        return cls(
            message=message,
            channel_type=channel_type,
            status=OutcomeStatus.RETRY,
            reason=reason,
            next_attempt_time=until,
            deferred=True,
        )

    @classmethod
    def from_error(
        cls,
        message: Message,
        channel_type: ChannelType,
        error: Exception,
        channel_name: str | None = None,
    ) -> DeliveryOutcome:
        """The outcome a channel error stands for (RETRY, UNKNOWN, NO_ADDRESS or FAILED)."""
        next_attempt_time = None
        if isinstance(error, RecoverableChannelDeliveryError):
            status = OutcomeStatus.RETRY
            next_attempt_time = error.next_attempt_time
        elif isinstance(error, DeliveryOutcomeUnknownError):
            status = OutcomeStatus.UNKNOWN
        elif isinstance(error, RecipientAddressMissingError):
            status = OutcomeStatus.NO_ADDRESS
        else:
            status = OutcomeStatus.FAILED
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
