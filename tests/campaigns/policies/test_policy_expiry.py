"""The expiry policy (campaigns/policies/expiry.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.policies import ExpiryPolicy
from campaigns.services.policies import policy_toggle_set
from tests.campaigns.policies.helpers import EMAIL, PUSH, allowed_and_reasons, message

pytestmark = pytest.mark.django_db


def test_expiry_denies_expired_messages_and_allows_the_rest(clock):
    policy = ExpiryPolicy()
    past = clock.when - dt.timedelta(minutes=1)
    result = policy.check(message(expiration_time=past))
    assert result.deny == {EMAIL, PUSH}
    assert result.reason == f"expired at {past.isoformat()}"
    assert policy.check(message(expiration_time=clock.when + dt.timedelta(hours=1))).deny == set()
    assert policy.check(message()).deny == set()


def test_expiry_runs_through_the_toggle_policy_by_default_and_can_be_turned_off(clock):
    expired = message(expiration_time=clock.when - dt.timedelta(seconds=1))
    allowed, reasons = allowed_and_reasons(expired)
    assert allowed == set()
    assert reasons[EMAIL].startswith("PolicyToggleDenyPolicy: campaigns_expiry: expired at")
    policy_toggle_set(policy="campaigns_expiry", enabled=False)
    assert allowed_and_reasons(expired)[0] == {EMAIL, PUSH}
