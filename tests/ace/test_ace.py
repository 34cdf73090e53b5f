"""Tests for ace.ace.send (and the ace package's exports)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from ace_stubs import DeferPolicy, make_message, recoverable

import ace as ace_package
from ace import ace
from ace.channel import ChannelType
from ace.errors import FatalChannelDeliveryError
from ace.outcome import DeliveryOutcome, OutcomeStatus
from ace.policy import PolicyResult
from ace.signals import ACE_MESSAGE_FAILED, ACE_MESSAGE_SENT
from ace.test_utils import StubPolicy, patch_policies
from ace.utils.date import get_current_time


def test_package_exports_the_basic_interface():
    for name in [
        "Channel",
        "ChannelType",
        "Message",
        "MessageType",
        "Policy",
        "PolicyResult",
        "Recipient",
        "RecipientResolver",
        "send",
    ]:
        assert hasattr(ace_package, name), name
    assert ace_package.send is ace.send


def test_send_delivers_and_returns_the_outcome(stub_email):
    message = make_message()
    outcomes = ace.send(message)
    assert outcomes == [
        DeliveryOutcome(
            message=message,
            channel_type=ChannelType.EMAIL,
            status=OutcomeStatus.SENT,
            channel_name="stub_email",
        )
    ]
    ((delivered, rendered),) = stub_email.delivered
    assert delivered is message
    assert rendered.subject.split() == ["Hello", "Ada,", "your", "course", "update"]


def test_limit_to_channels_really_skips_the_other_channels(stub_channels):
    # The reference logged "Skipping channel" but delivered anyway.
    message = make_message()
    outcomes = ace.send(message, limit_to_channels=[ChannelType.PUSH])
    assert [(o.channel_type, o.status) for o in outcomes] == [
        (ChannelType.PUSH, OutcomeStatus.SENT)
    ]
    assert stub_channels["stub_email"].calls == 0
    assert len(stub_channels["stub_push"].delivered) == 1


def test_limit_to_channels_accepts_values_and_an_empty_list_sends_nothing(stub_channels):
    assert [o.channel_type for o in ace.send(make_message(), limit_to_channels=["email"])] == [
        ChannelType.EMAIL
    ]
    assert ace.send(make_message(), limit_to_channels=[]) == []
    assert stub_channels["stub_push"].calls == 0
    with pytest.raises(ValueError):
        ace.send(make_message(), limit_to_channels=["carrier-pigeon"])


def test_without_limit_every_channel_type_with_a_channel_is_used(stub_channels):
    outcomes = ace.send(make_message())
    assert [(o.channel_type, o.channel_name, o.status) for o in outcomes] == [
        (ChannelType.EMAIL, "stub_email", OutcomeStatus.SENT),
        (ChannelType.PUSH, "stub_push", OutcomeStatus.SENT),
    ]


def test_transactional_messages_use_the_transactional_channel(stub_channels):
    ace.send(make_message(options={"transactional": True}), limit_to_channels=[ChannelType.EMAIL])
    assert stub_channels["stub_email"].calls == 0
    assert len(stub_channels["stub_transactional"].delivered) == 1


def test_policy_denial_is_an_outcome_and_nothing_is_delivered(stub_email, request):
    class NoEmail(StubPolicy):
        def check(self, message):
            return PolicyResult(deny={ChannelType.EMAIL}, reason="user opted out")

    patch_policies(request, [NoEmail([])])
    (outcome,) = ace.send(make_message())
    assert outcome.status is OutcomeStatus.DENIED
    assert outcome.reason == "NoEmail: user opted out"
    assert stub_email.calls == 0


def test_channel_errors_are_not_raised_and_other_channels_still_send(stub_channels):
    stub_channels["stub_email"].errors = [FatalChannelDeliveryError("mailbox gone")]
    email, push = ace.send(make_message())
    assert email.status is OutcomeStatus.FAILED
    assert email.reason == "mailbox gone"
    assert email.exception_type == "FatalChannelDeliveryError"
    assert push.status is OutcomeStatus.SENT


def test_missing_template_fails_only_that_channel(stub_channels):
    # "nohtml" has email templates without body.html, and no push templates at all.
    outcomes = ace.send(make_message(name="nohtml"))
    assert [(o.channel_type, o.status) for o in outcomes] == [
        (ChannelType.EMAIL, OutcomeStatus.FAILED),
        (ChannelType.PUSH, OutcomeStatus.FAILED),
    ]
    assert "testapp/edx_ace/nohtml/email/body.html does not exist" in outcomes[0].reason
    assert outcomes[0].exception_type == "TemplateNotFoundError"
    assert stub_channels["stub_email"].calls == 0
    assert stub_channels["stub_push"].calls == 0


def test_a_push_failure_does_not_stop_email(stub_channels):
    outcomes = ace.send(make_message(), limit_to_channels=[ChannelType.EMAIL, ChannelType.PUSH])
    assert {o.status for o in outcomes} == {OutcomeStatus.SENT}


def test_expired_message_is_not_delivered(stub_email):
    message = make_message(expiration_time=get_current_time() - timedelta(minutes=1))
    (outcome,) = ace.send(message)
    assert outcome.status is OutcomeStatus.EXPIRED
    assert stub_email.calls == 0


def test_signals_sent_and_failed_with_json_payloads(stub_channels):
    received = []

    def on_signal(sender, message, signal, **kwargs):
        received.append((signal, sender, message))

    ACE_MESSAGE_SENT.connect(on_signal)
    ACE_MESSAGE_FAILED.connect(on_signal)
    try:
        stub_channels["stub_push"].errors = [FatalChannelDeliveryError("no device")]
        message = make_message(
            context={"name": "Ada", "when": datetime(2030, 1, 1, tzinfo=UTC), "items": []}
        )
        ace.send(message)
    finally:
        ACE_MESSAGE_SENT.disconnect(on_signal)
        ACE_MESSAGE_FAILED.disconnect(on_signal)

    (sent_signal, sent_sender, sent), (failed_signal, failed_sender, failed) = received
    assert sent_signal is ACE_MESSAGE_SENT and sent_sender is stub_channels["stub_email"]
    assert failed_signal is ACE_MESSAGE_FAILED and failed_sender is stub_channels["stub_push"]
    json.dumps(sent)
    json.dumps(failed)
    assert sent["uuid"] == str(message.uuid)
    assert sent["recipient"] == {"email": "learner@example.org", "user_id": 7}
    assert sent["context"]["when"] == "2030-01-01 00:00:00+00:00"  # str(), as the reference
    assert failed["status"] == "failed"
    assert failed["reason"] == "no device"
    assert failed["channel_type"] == "push"


def test_recoverable_errors_are_retried_in_process(stub_email, no_sleep):
    stub_email.errors = [recoverable(2), recoverable(-30)]
    (outcome,) = ace.send(make_message())
    assert outcome.status is OutcomeStatus.SENT
    assert stub_email.calls == 3
    assert len(no_sleep) == 2
    assert 1 < no_sleep[0] <= 2
    assert no_sleep[1] > 0  # a retry time in the past never means a negative sleep


def test_misconfigured_default_channel_is_an_error_naming_it(stub_email, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.ACE_CHANNEL_DEFAULT_EMAIL = "sailthru_emial"
    with pytest.raises(ImproperlyConfigured, match="sailthru_emial"):
        ace.send(make_message())


def test_the_readme_example_runs(stub_email):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Using the library (ace)", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(example, namespace)
    (outcome,) = namespace["outcomes"]
    assert outcome.channel_type is ChannelType.EMAIL
    assert outcome.message.recipient.email_address == "a_user@example.com"
    # No my_app templates in the tests: the example's message fails on its templates only.
    assert outcome.exception_type == "TemplateNotFoundError"


def test_a_policy_deferral_is_a_retry_at_its_time_and_send_does_not_wait(
    stub_channels, request, no_sleep
):
    until = get_current_time() + timedelta(hours=9)
    patch_policies(request, [DeferPolicy(until, [ChannelType.EMAIL])])
    failed = []

    def on_failed(sender, message, **kwargs):
        failed.append(message)

    ACE_MESSAGE_FAILED.connect(on_failed)
    try:
        started = time.monotonic()
        email, push = ace.send(make_message())
    finally:
        ACE_MESSAGE_FAILED.disconnect(on_failed)

    assert time.monotonic() - started < 5
    assert no_sleep == []
    assert email.status is OutcomeStatus.RETRY
    assert email.deferred is True
    assert email.next_attempt_time == until  # the policy's time, untouched
    assert email.reason == "DeferPolicy: quiet hours until 07:00 Europe/Paris"
    assert stub_channels["stub_email"].calls == 0  # nothing was attempted
    assert push.status is OutcomeStatus.SENT
    assert failed == []  # postponed is not failed


def test_a_deferral_past_the_expiration_is_expired(stub_email, request):
    until = get_current_time() + timedelta(hours=2)
    patch_policies(request, [DeferPolicy(until)])
    message = make_message(expiration_time=get_current_time() + timedelta(hours=1))
    (outcome,) = ace.send(message)
    assert outcome.status is OutcomeStatus.EXPIRED
    assert outcome.next_attempt_time is None
    assert "quiet hours until 07:00 Europe/Paris" in outcome.reason
    assert stub_email.calls == 0
