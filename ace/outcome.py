"""
:mod:`ace.outcome` describes what happened to one message on one channel type.

:func:`ace.ace.send` and :class:`ace.batch.BatchSender` return a list of
:class:`DeliveryOutcome`; the reference's ``send`` returned nothing.

:func:`would_expire` and :func:`expiry_reason` are the one rule and the one wording for a
pending delivery's expiry (expired already, or would expire before its next attempt), used by
:class:`DeliveryOutcome`, :class:`ace.batch.BatchSender` and callers that retry later.
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


def would_expire(expiration_time: datetime | None, at: datetime | None) -> bool:
    """True if a message that expires at ``expiration_time`` cannot be sent at ``at``
    (``at`` None means "no time known": expires if there is an expiration time).

    A message may be sent strictly before its expiration time: at that very time it is
    expired. Without an expiration time it never expires.
    """
    if expiration_time is None:
        return False
    return at is None or at >= expiration_time


def expiry_reason(
    reason: str = "", *, at: datetime | None = None, expired_at: datetime | None = None
) -> str:
    """One wording for every expiry.

    ``"Expired at <expired_at>"`` when ``expired_at`` is given and no retry is involved
    (``at`` is None); else ``"Would expire before the next attempt (<at>)"``, the time left
    out when ``at`` is None. ``reason`` (why there is a next attempt: the error, the policy's
    deferral) follows after ``": "`` when not empty.
    """
    if expired_at is not None and at is None:
        text = f"Expired at {expired_at.isoformat()}"
    elif at is not None:
        text = f"Would expire before the next attempt ({at.isoformat()})"
    else:
        text = "Would expire before the next attempt"
    return f"{text}: {reason}" if reason else text


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

    ``tag`` is the caller's opaque value for the message (``BatchSender.prepare(..., tags=)``),
    carried unchanged so results can be matched back without a key in the message's options.
    """

    message: Message
    channel_type: ChannelType
    status: OutcomeStatus
    channel_name: str | None = None
    reason: str = ""
    exception_type: str = ""
    next_attempt_time: datetime | None = None
    deferred: bool = False
    tag: object = None

    @property
    def ok(self) -> bool:
        """True if the message was sent."""
        return self.status is OutcomeStatus.SENT

    @classmethod
    def for_deferral(
        cls,
        message: Message,
        channel_type: ChannelType,
        until: datetime,
        reason: str,
        *,
        tag: object = None,
    ) -> DeliveryOutcome:
        """A policy postponed the message until ``until``: RETRY then (``deferred``, nothing
        was attempted), or EXPIRED when the message expires before that time."""
        if would_expire(message.expiration_time, until):
            return cls(
                message=message,
                channel_type=channel_type,
                status=OutcomeStatus.EXPIRED,
                reason=expiry_reason(reason, at=until),
                tag=tag,
            )
        return cls(
            message=message,
            channel_type=channel_type,
            status=OutcomeStatus.RETRY,
            reason=reason,
            next_attempt_time=until,
            deferred=True,
            tag=tag,
        )

    @classmethod
    def from_error(
        cls,
        message: Message,
        channel_type: ChannelType,
        error: Exception,
        channel_name: str | None = None,
        *,
        tag: object = None,
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
            tag=tag,
        )


def _exception_type(error: BaseException) -> str:
    """The most telling exception class name: the cause of a generic wrapper error."""
    cause = error.__cause__
    generic = type(error) in (FatalChannelDeliveryError, RecoverableChannelDeliveryError)
    return type(cause).__name__ if cause is not None and generic else type(error).__name__
