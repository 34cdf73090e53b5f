"""Tests for ace.outcome."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

from ace_stubs import make_message, recoverable

from ace.channel import ChannelType
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    TemplateNotFoundError,
)
from ace.outcome import DeliveryOutcome, OutcomeStatus, expiry_reason, would_expire


def test_statuses():
    assert [s.value for s in OutcomeStatus] == [
        "sent",
        "denied",
        "failed",
        "expired",
        "retry",
        "no_address",
        "unknown",
    ]
    assert OutcomeStatus("sent") is OutcomeStatus.SENT
    assert OutcomeStatus.SENT == "sent"


def test_defaults_and_ok():
    outcome = DeliveryOutcome(make_message(), ChannelType.EMAIL, OutcomeStatus.SENT)
    assert outcome.ok
    assert (outcome.channel_name, outcome.reason, outcome.exception_type) == (None, "", "")
    assert outcome.next_attempt_time is None
    assert outcome.deferred is False
    assert outcome.tag is None
    assert not DeliveryOutcome(make_message(), ChannelType.EMAIL, OutcomeStatus.DENIED).ok


def test_from_recoverable_error():
    error = recoverable(60, "greylisted")
    outcome = DeliveryOutcome.from_error(make_message(), ChannelType.EMAIL, error, "django_email")
    assert outcome.status is OutcomeStatus.RETRY
    assert outcome.next_attempt_time == error.next_attempt_time
    assert outcome.reason == "greylisted"
    assert outcome.channel_name == "django_email"
    assert outcome.exception_type == "RecoverableChannelDeliveryError"


def test_from_fatal_error_names_the_underlying_cause():
    error = FatalChannelDeliveryError("550 no such user")
    error.__cause__ = smtplib.SMTPRecipientsRefused({"a": (550, b"no")})
    outcome = DeliveryOutcome.from_error(make_message(), ChannelType.EMAIL, error)
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.exception_type == "SMTPRecipientsRefused"
    assert outcome.reason == "550 no such user"


def test_specific_errors_keep_their_own_name():
    missing = TemplateNotFoundError("x")
    missing.__cause__ = LookupError()
    outcome = DeliveryOutcome.from_error(make_message(), ChannelType.EMAIL, missing)
    assert outcome.exception_type == "TemplateNotFoundError"
    no_address = DeliveryOutcome.from_error(
        make_message(), ChannelType.EMAIL, RecipientAddressMissingError("no email")
    )
    assert no_address.status is OutcomeStatus.NO_ADDRESS


def test_an_unknown_outcome_error_is_unknown_not_retried():
    error = DeliveryOutcomeUnknownError("connection lost after the message was sent")
    error.__cause__ = smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
    outcome = DeliveryOutcome.from_error(make_message(), ChannelType.EMAIL, error, "django_email")
    assert outcome.status is OutcomeStatus.UNKNOWN
    assert outcome.next_attempt_time is None
    assert outcome.reason == "connection lost after the message was sent"
    assert outcome.exception_type == "DeliveryOutcomeUnknownError"
    assert not outcome.ok


def test_a_deferral_is_a_retry_at_the_policy_time_unless_the_message_expires_first():
    until = datetime.now(UTC) + timedelta(hours=3)
    outcome = DeliveryOutcome.for_deferral(make_message(), ChannelType.EMAIL, until, "quiet")
    assert (outcome.status, outcome.next_attempt_time) == (OutcomeStatus.RETRY, until)
    assert outcome.deferred is True
    assert outcome.reason == "quiet"

    expiring = make_message(expiration_time=until - timedelta(minutes=1))
    expired = DeliveryOutcome.for_deferral(expiring, ChannelType.EMAIL, until, "quiet")
    assert expired.status is OutcomeStatus.EXPIRED
    assert expired.next_attempt_time is None and not expired.deferred
    assert "quiet" in expired.reason


def test_would_expire():
    expires = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert not would_expire(expires, expires - timedelta(microseconds=1))
    assert would_expire(expires, expires)  # at its expiration time it may no longer be sent
    assert would_expire(expires, expires + timedelta(hours=1))
    assert would_expire(expires, None)  # no time known: it cannot be counted on
    assert not would_expire(None, expires)  # never expires
    assert not would_expire(None, None)


def test_expiry_reason_has_one_wording():
    at = datetime(2030, 1, 1, 7, tzinfo=UTC)
    expired_at = datetime(2030, 1, 1, 6, tzinfo=UTC)
    assert expiry_reason(expired_at=expired_at) == "Expired at 2030-01-01T06:00:00+00:00"
    assert expiry_reason("policy", expired_at=expired_at) == (
        "Expired at 2030-01-01T06:00:00+00:00: policy"
    )
    assert expiry_reason("quiet", at=at) == (
        "Would expire before the next attempt (2030-01-01T07:00:00+00:00): quiet"
    )
    # A next attempt is involved: that is the wording, whatever the expiration time.
    assert expiry_reason("quiet", at=at, expired_at=expired_at) == expiry_reason("quiet", at=at)
    assert expiry_reason("451 greylisted") == "Would expire before the next attempt: 451 greylisted"
    assert expiry_reason() == "Would expire before the next attempt"


def test_a_deferral_past_the_expiration_uses_the_expiry_wording():
    until = datetime.now(UTC) + timedelta(hours=3)
    expiring = make_message(expiration_time=until)  # expires exactly when it could be sent
    expired = DeliveryOutcome.for_deferral(expiring, ChannelType.EMAIL, until, "quiet")
    assert expired.status is OutcomeStatus.EXPIRED
    assert expired.reason == expiry_reason("quiet", at=until)


def test_the_tag_is_carried_by_every_constructor():
    message = make_message(expiration_time=datetime.now(UTC) + timedelta(hours=1))
    soon, late = (datetime.now(UTC) + timedelta(minutes=m) for m in (1, 120))
    assert DeliveryOutcome.for_deferral(message, ChannelType.EMAIL, soon, "q", tag=1).tag == 1
    assert DeliveryOutcome.for_deferral(message, ChannelType.EMAIL, late, "q", tag=2).tag == 2
    error = FatalChannelDeliveryError("no")
    assert DeliveryOutcome.from_error(message, ChannelType.EMAIL, error, tag=3).tag == 3
    assert DeliveryOutcome.from_error(message, ChannelType.EMAIL, error).tag is None
