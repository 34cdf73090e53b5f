"""
:mod:`ace.delivery` delivers one rendered message over one channel (internal to
:func:`ace.ace.send`).

Like the reference, a recoverable error is retried in-process until the message expires
(``ACE_DEFAULT_EXPIRATION_DELAY`` seconds by default, never more than
:data:`MAX_EXPIRATION_DELAY`). Unlike it, the wait is never negative (a ``next_attempt_time``
in the past retries after :data:`MIN_RETRY_DELAY`), and the attempts are bounded by
``ACE_MAX_DELIVERY_ATTEMPTS``. Code that must not block (a Celery worker sending a batch)
uses :class:`ace.batch.BatchSender`, which returns the retry time instead of sleeping.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings

from ace.errors import RecoverableChannelDeliveryError
from ace.outcome import DeliveryOutcome, OutcomeStatus
from ace.utils.date import get_current_time
from ace.utils.signals import send_ace_message_sent_signal

if TYPE_CHECKING:
    from ace.channel import Channel
    from ace.message import Message

LOG = logging.getLogger(__name__)

#: The longest any single send may block retrying, whatever the message's expiration.
MAX_EXPIRATION_DELAY = 5 * 60
#: The shortest wait between two attempts (also used when the channel's time is in the past).
MIN_RETRY_DELAY = 0.1
#: Default for the ``ACE_MAX_DELIVERY_ATTEMPTS`` setting.
DEFAULT_MAX_ATTEMPTS = 10


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def delivery_deadline(message: Message, start_time: datetime) -> datetime:
    """The time after which ``send`` stops retrying this message."""
    timeout_seconds = getattr(settings, "ACE_DEFAULT_EXPIRATION_DELAY", 120)
    default_expiration_time = start_time + timedelta(seconds=timeout_seconds)
    max_expiration_time = start_time + timedelta(seconds=MAX_EXPIRATION_DELAY)
    return min(max_expiration_time, message.expiration_time or default_expiration_time)


def deliver(
    channel: Channel,
    rendered_message: Any,
    message: Message,
    *,
    channel_name: str | None = None,
) -> DeliveryOutcome:
    """
    Deliver a message over a channel, retrying recoverable errors until it expires.

    Args:
        channel: The channel to deliver over.
        rendered_message: The rendered content.
        message: The message being sent.
        channel_name: The channel's plugin name, recorded in the outcome.

    Returns:
        A SENT, EXPIRED or FAILED (retries exhausted) outcome. ``ACE_MESSAGE_SENT`` is sent
        on success.

    Raises:
        FatalChannelDeliveryError: If the channel fails permanently (as in the reference).
        DeliveryOutcomeUnknownError: If the message may have been delivered despite the
            error (never retried here, so it is never sent twice).
    """
    logger = message.get_message_specific_logger(LOG)
    channel_type = channel.channel_type
    max_attempts = max(1, int(getattr(settings, "ACE_MAX_DELIVERY_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)))
    start_time = get_current_time()
    expiration_time = delivery_deadline(message, start_time)

    def outcome(status: OutcomeStatus, reason: str = "", error: Exception | None = None):
        return DeliveryOutcome(
            message=message,
            channel_type=channel_type,
            status=status,
            channel_name=channel_name,
            reason=reason,
            exception_type=type(error).__name__ if error is not None else "",
        )

    attempts = 0
    last_error: RecoverableChannelDeliveryError | None = None
    while get_current_time() < expiration_time:
        attempts += 1
        logger.debug("Attempting delivery of message (attempt %d)", attempts)
        try:
            channel.deliver(message, rendered_message)
        except RecoverableChannelDeliveryError as delivery_error:
            last_error = delivery_error
            now = get_current_time()
            logger.debug("Encountered a recoverable delivery error: %s", delivery_error)
            next_attempt_time = delivery_error.next_attempt_time or now
            if next_attempt_time > expiration_time:
                logger.debug("Message will expire before delivery can be reattempted, aborting.")
                break
            if attempts >= max_attempts:
                message.report(f"{channel_type}_delivery_failed", attempts)
                return outcome(
                    OutcomeStatus.FAILED,
                    f"Gave up after {attempts} attempts: {delivery_error.message}",
                    delivery_error,
                )
            wait = max((next_attempt_time - now).total_seconds(), MIN_RETRY_DELAY)
            wait = min(wait, max((expiration_time - now).total_seconds(), 0.0))
            logger.debug("Sleeping for %.3f seconds.", wait)
            _sleep(wait)
            message.report(f"{channel_type}_delivery_retried", wait)
        else:
            message.report(f"{channel_type}_delivery_succeeded", True)
            send_ace_message_sent_signal(channel, message)
            return outcome(OutcomeStatus.SENT)

    message.report(f"{channel_type}_delivery_expired", get_current_time() - start_time)
    logger.info("Message expired before it could be delivered on %s", channel_type)
    reason = "Expired before delivery"
    if last_error is not None:
        reason = f"{reason}; last error: {last_error.message}"
    return outcome(OutcomeStatus.EXPIRED, reason, last_error)
