"""The frequency cap (campaigns/policies/frequency_cap.py)."""

from __future__ import annotations

import uuid

import pytest

from campaigns.models import Delivery
from campaigns.policies import FrequencyCapPolicy
from campaigns.services.policies import policy_toggle_set
from tests.campaigns import factories as f
from tests.campaigns.policies.helpers import EMAIL, PUSH, allowed_and_reasons, message, sent

pytestmark = pytest.mark.django_db


def test_frequency_cap_is_off_until_toggled(clock):
    sent(user_id=5, clock=clock)
    sent(user_id=5, clock=clock)
    assert allowed_and_reasons(message(user_id=5))[0] == {EMAIL, PUSH}


def test_frequency_cap_counts_sent_deliveries_in_the_period(clock):
    policy_toggle_set(
        policy="campaigns_frequency_cap",
        enabled=True,
        parameters={"max_messages": 2, "period_hours": 24},
    )
    user = 7
    run = f.CampaignRunFactory()
    sent(user_id=user, clock=clock, run=run)
    sent(user_id=user, clock=clock, run=run, channel="push")  # same run, other channel: 1 message
    sent(user_id=user, clock=clock, hours_ago=30)  # outside the period
    sent(user_id=user, clock=clock, status=Delivery.Status.FAILED)  # not sent
    cap = FrequencyCapPolicy()
    params = {"max_messages": 2, "period_hours": 24}
    assert cap.evaluate(message(user_id=user), params).deny == set()
    sent(user_id=user, clock=clock, hours_ago=23)
    result = cap.evaluate(message(user_id=user), params)
    assert result.deny == {EMAIL, PUSH}
    assert result.reason == "frequency cap: 2 messages in the last 24 h (max 2)"
    allowed, reasons = allowed_and_reasons(message(user_id=user))
    assert allowed == set()
    assert "campaigns_frequency_cap: frequency cap" in reasons[EMAIL]


def test_frequency_cap_ignores_the_message_own_run_and_counts_addresses(clock):
    params = {"max_messages": 1, "period_hours": 24}
    run = f.CampaignRunFactory()
    sent(user_id=3, clock=clock, run=run)
    cap = FrequencyCapPolicy()
    # A retry of the same run (same send_uuid) is not capped by its own other channel.
    assert cap.evaluate(message(user_id=3, send_uuid=run.send_uuid), params).deny == set()
    assert cap.evaluate(message(user_id=3, send_uuid=uuid.uuid4()), params).deny
    sent(email="list@example.org", clock=clock)
    assert cap.evaluate(message(email="List@example.org"), params).deny
