"""Tests for ace.delivery.deliver: bounded in-process retries that never sleep negatively."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ace_stubs import StubEmailChannel, make_message, recoverable

from ace import delivery
from ace.errors import FatalChannelDeliveryError, RecoverableChannelDeliveryError
from ace.outcome import OutcomeStatus
from ace.signals import ACE_MESSAGE_SENT
from ace.utils.date import get_current_time

RENDERED = object()


@pytest.fixture
def channel():
    return StubEmailChannel()


def test_success_on_first_attempt_sends_the_signal(channel, no_sleep):
    received = []

    def on_sent(sender, message, **kwargs):
        received.append((sender, message))

    ACE_MESSAGE_SENT.connect(on_sent)
    try:
        message = make_message()
        outcome = delivery.deliver(channel, RENDERED, message, channel_name="stub")
    finally:
        ACE_MESSAGE_SENT.disconnect(on_sent)
    assert outcome.status is OutcomeStatus.SENT
    assert outcome.channel_name == "stub"
    assert channel.delivered == [(message, RENDERED)]
    assert no_sleep == []
    ((sender, payload),) = received
    assert sender is channel
    assert payload["uuid"] == str(message.uuid)
    assert payload["channel"] == "StubEmailChannel"


def test_waits_until_the_next_attempt_time(channel, no_sleep):
    channel.errors = [recoverable(5)]
    outcome = delivery.deliver(channel, RENDERED, make_message())
    assert outcome.status is OutcomeStatus.SENT
    assert channel.calls == 2
    (wait,) = no_sleep
    assert 4 < wait <= 5


def test_negative_wait_does_not_crash(channel, no_sleep):
    # Older reference versions called time.sleep() with a negative number (ValueError);
    # newer ones retried in a tight loop. Here the wait is at least MIN_RETRY_DELAY.
    channel.errors = [recoverable(-60)]
    outcome = delivery.deliver(channel, RENDERED, make_message())
    assert outcome.status is OutcomeStatus.SENT
    assert no_sleep == [delivery.MIN_RETRY_DELAY]


def test_negative_wait_with_the_real_sleep(channel):
    channel.errors = [recoverable(-3600)]
    assert delivery.deliver(channel, RENDERED, make_message()).status is OutcomeStatus.SENT


def test_retry_after_expiration_gives_up_as_expired(channel, no_sleep):
    message = make_message(expiration_time=get_current_time() + timedelta(seconds=30))
    channel.errors = [recoverable(120, "server busy")]
    outcome = delivery.deliver(channel, RENDERED, message)
    assert outcome.status is OutcomeStatus.EXPIRED
    assert "server busy" in outcome.reason
    assert outcome.exception_type == "RecoverableChannelDeliveryError"
    assert channel.calls == 1
    assert no_sleep == []


def test_attempts_are_bounded(channel, no_sleep, settings):
    settings.ACE_MAX_DELIVERY_ATTEMPTS = 3
    channel.errors = [recoverable(-1) for _ in range(10)]
    outcome = delivery.deliver(channel, RENDERED, make_message())
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.reason.startswith("Gave up after 3 attempts")
    assert channel.calls == 3
    assert len(no_sleep) == 2


def test_wait_never_exceeds_the_remaining_time(channel, no_sleep, settings):
    settings.ACE_DEFAULT_EXPIRATION_DELAY = 10
    channel.errors = [recoverable(9.5)]
    delivery.deliver(channel, RENDERED, make_message())
    assert no_sleep and no_sleep[0] <= 10


def test_fatal_errors_propagate(channel):
    channel.errors = [FatalChannelDeliveryError("no")]
    with pytest.raises(FatalChannelDeliveryError):
        delivery.deliver(channel, RENDERED, make_message())


def test_already_expired_message_is_never_attempted(channel):
    message = make_message(expiration_time=get_current_time() - timedelta(seconds=1))
    outcome = delivery.deliver(channel, RENDERED, message)
    assert outcome.status is OutcomeStatus.EXPIRED
    assert channel.calls == 0


def test_deadline_is_bounded_by_settings_and_max_delay(settings):
    start = get_current_time()
    settings.ACE_DEFAULT_EXPIRATION_DELAY = 60
    assert delivery.delivery_deadline(make_message(), start) == start + timedelta(seconds=60)
    far = make_message(expiration_time=start + timedelta(days=1))
    assert delivery.delivery_deadline(far, start) == start + timedelta(
        seconds=delivery.MAX_EXPIRATION_DELAY
    )
    near = make_message(expiration_time=start + timedelta(seconds=5))
    assert delivery.delivery_deadline(near, start) == start + timedelta(seconds=5)


def test_recoverable_error_carries_its_retry_time():
    when = get_current_time()
    error = RecoverableChannelDeliveryError("later", when)
    assert error.next_attempt_time == when
    assert "later" in str(error) and when.isoformat() in str(error)
