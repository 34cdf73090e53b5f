"""
:mod:`ace.errors` holds every exception specific to ACE.

The tree mirrors the reference library: :class:`ChannelError` is the root of everything a
channel can raise, split into :class:`RecoverableChannelDeliveryError` (try again later; it
carries the earliest time to retry) and :class:`FatalChannelDeliveryError` (never retry).
Beyond the reference, :class:`DeliveryOutcomeUnknownError` says that nobody can tell whether
the message arrived (never retried automatically, so it is never sent twice).
"""

from __future__ import annotations

from datetime import datetime


class ChannelError(Exception):
    """Something went wrong in a delivery channel."""


class RecoverableChannelDeliveryError(ChannelError):
    """A transient delivery failure: the caller should try again at ``next_attempt_time``."""

    def __init__(self, message: str, next_attempt_time: datetime) -> None:
        super().__init__(message)
        self.message = message
        self.next_attempt_time = next_attempt_time

    def __str__(self) -> str:
        when = self.next_attempt_time.isoformat() if self.next_attempt_time else "unknown"
        return f"{self.message} (retry at {when})"


class FatalChannelDeliveryError(ChannelError):
    """A permanent delivery failure: retrying would fail the same way."""


class DeliveryOutcomeUnknownError(ChannelError):
    """The message may or may not have been delivered: never retry it automatically.

    Raised when the connection drops or times out after the whole message was handed to the
    server (e.g. the SMTP ``.`` line, an HTTP request body) but before the server's answer:
    the server may have accepted it, so sending again could deliver it twice. Not in the
    reference library, and deliberately neither recoverable nor fatal: callers record it as
    "unknown" for a person to resend on purpose.
    """


class RecipientAddressMissingError(FatalChannelDeliveryError):
    """The recipient has no address on this channel (e.g. no email address).

    Not in the reference library; a subclass of the fatal error so code written for the
    reference treats it the same way, while the batch path can report it as "no address".
    """


class TemplateNotFoundError(FatalChannelDeliveryError):
    """A template the channel needs does not exist (or does not compile).

    The reference raised Django's ``TemplateDoesNotExist`` out of ``ace.send``, which stopped
    the other channels; here it is a per-channel failure.
    """


class InvalidMessageError(Exception):
    """A message cannot be sent because information is missing or inconsistent."""


class UnsupportedChannelError(ChannelError):
    """A message was routed to a channel type that no enabled channel supports."""
