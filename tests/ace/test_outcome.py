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
from ace.outcome import DeliveryOutcome, OutcomeStatus


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
