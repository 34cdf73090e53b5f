"""Batch prefetch: a batch of messages costs a constant number of queries
(campaigns/services/policies.policies_prefetched and each policy's prefetch)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ace import policy as ace_policy
from campaigns.policies import OptOutPolicy
from campaigns.services.policies import policies_prefetched, policy_toggle_set
from tests.campaigns import factories as f
from tests.campaigns.policies.helpers import EMAIL, PUSH, message, sent

pytestmark = pytest.mark.django_db


def _batch(n, clock, first=1000):
    users = [first + i for i in range(n)]
    for user_id in users[::7]:
        f.OptOutFactory(email=f"u{user_id}@example.org")
    for user_id in users[::5]:
        sent(user_id=user_id, clock=clock)
        sent(user_id=user_id, clock=clock, hours_ago=2)
    return [
        message(
            user_id=user_id,
            email=f"u{user_id}@example.org",
            recipient_time_zone="Asia/Tokyo" if user_id % 3 == 0 else "Europe/Paris",
            expiration_time=clock.when + dt.timedelta(hours=1),
        )
        for user_id in users
    ]


def _run_policies(messages):
    return [ace_policy.evaluate(m) for m in messages]


def test_a_batch_of_500_costs_a_constant_number_of_queries(clock, quiet_hours):
    policy_toggle_set(
        policy="campaigns_frequency_cap", enabled=True, parameters={"max_messages": 2}
    )
    small = _batch(20, clock, first=10_000)
    big = _batch(500, clock)
    ace_policy.policies()  # load plugins outside the measurement
    with CaptureQueriesContext(connection) as small_queries, policies_prefetched(small):
        expected_small = _run_policies(small)
    with CaptureQueriesContext(connection) as big_queries, policies_prefetched(big):
        results = _run_policies(big)
    assert len(big_queries) == len(small_queries) <= 4
    # The prefetched answers equal the query-per-message answers.
    unbatched = _run_policies(big)
    assert results == unbatched
    assert len(expected_small) == 20
    denied_optout = sum(
        1 for allowed, reasons in results if "OptOutPolicy" in reasons.get(EMAIL, "")
    )
    capped = sum(1 for _, reasons in results if "frequency cap" in reasons.get(EMAIL, ""))
    quiet = sum(1 for _, reasons in results if "quiet hours" in reasons.get(EMAIL, ""))
    assert denied_optout == len(range(0, 500, 7))  # every 7th user unsubscribed
    assert capped > 0 and quiet > 0


def test_without_prefetch_each_check_queries_and_still_works(clock):
    f.OptOutFactory(email="a@example.org")
    with CaptureQueriesContext(connection) as queries:
        result = OptOutPolicy().check(message(email="a@example.org"))
    assert result.deny and 1 <= len(queries) <= 2


def test_prefetch_caches_are_cleared_after_the_batch(clock):
    msgs = [message(email="late@example.org")]
    loaded = ace_policy.policies()[0]
    with policies_prefetched(msgs):
        f.OptOutFactory(email="late@example.org")
        assert loaded.check(msgs[0]).deny == set()  # answered from the batch's snapshot
    assert loaded.check(msgs[0]).deny == {EMAIL, PUSH}
