"""Dry run: reach per channel, denials and postponements per policy, in chunks, nothing sent."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Delivery, RecipientListEntry
from campaigns.resolvers import RecipientListResolver
from campaigns.services.dry_run import campaign_dry_run
from campaigns.services.policies import policy_toggle_set
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(clock):
    """12 list entries: 4 linked to users; 2 unsubscribed; 3 in Tokyo (quiet at 21:00);
    1 user capped; channels email + push."""
    rlist = f.RecipientListFactory()
    users = f.UserFactory.create_batch(4)
    for i in range(12):
        f.RecipientListEntryFactory(
            recipient_list=rlist,
            email=f"r{i}@example.org",
            user=users[i] if i < 4 else None,
            time_zone="Asia/Tokyo" if i in (5, 6, 7) else "Europe/Paris",
        )
    source = f.RecipientSourceFactory(
        resolver="recipient_list", parameters={"recipient_list": rlist.pk}
    )
    campaign = f.CampaignFactory(recipient_source=source, channels=["email", "push"])
    f.OptOutFactory(email="r8@example.org")
    f.OptOutFactory(email="r9@example.org", message_type=campaign.message_type)
    for _ in range(2):
        f.DeliveryFactory(user_id=users[0].pk, sent_at=clock.when - dt.timedelta(hours=1))
    policy_toggle_set(
        policy="campaigns_quiet_hours",
        enabled=True,
        parameters={"start_hour": 21, "end_hour": 8, "channels": ["push"]},
    )
    policy_toggle_set(
        policy="campaigns_frequency_cap", enabled=True, parameters={"max_messages": 2}
    )
    return campaign


def test_counts_reach_per_channel_and_denials_per_policy(campaign):
    sent_before = Delivery.objects.count()
    report = campaign_dry_run(campaign=campaign)
    assert (report.audience, report.checked, report.sampled) == (12, 12, False)
    optout = report.policies["campaigns_optout"]
    assert optout.denied == 2
    assert optout.by_channel == {"email": 2, "push": 2}
    assert set(optout.sample_reasons) == {
        "unsubscribed from all messages",
        f"unsubscribed from {campaign.message_type}",
    }
    assert report.policies["campaigns_frequency_cap"].denied == 1
    # Quiet hours postpone (defer_until), they don't deny.
    assert "campaigns_quiet_hours" not in report.policies
    quiet = report.postponements["campaigns_quiet_hours"]
    assert quiet.by_channel == {"push": 3}  # the three Tokyo recipients, push only
    assert "campaigns_expiry" not in report.policies
    # Email: 12 addresses, 3 denied (2 opt-outs + the capped user) -> 9.
    assert report.channels["email"].reachable == 9
    assert report.channels["email"].denied == 3
    assert report.channels["email"].no_address == 0
    # Push needs a user: 4 linked, one capped -> 3 reachable; 8 have no user.
    push = report.channels["push"]
    assert (push.reachable, push.denied, push.no_address) == (3, 1, 8)
    assert push.postponed == 0  # the Tokyo recipients have no user, so no push address
    assert Delivery.objects.count() == sent_before and mail.outbox == []


def test_quiet_hours_are_counted_as_postponed_not_denied(campaign):
    # r1's user (reachable on push) and r0's capped user move to Tokyo, where it is 21:00.
    for email in ("r0@example.org", "r1@example.org"):
        RecipientListEntry.objects.filter(email=email).update(time_zone="Asia/Tokyo")
    report = campaign_dry_run(campaign=campaign)
    push = report.channels["push"]
    # r1 postponed; r0 is both capped and quiet: the denial wins, as when sending.
    assert (push.reachable, push.denied, push.postponed, push.no_address) == (2, 1, 1, 8)
    assert report.postponements["campaigns_quiet_hours"].denied == 5
    assert report.postponements["campaigns_quiet_hours"].sample_reasons
    assert report.policies["campaigns_frequency_cap"].denied == 1
    assert report.channels["email"].postponed == 0  # quiet hours cover push only here


def test_sample_limit_checks_only_the_first_recipients(campaign):
    report = campaign_dry_run(campaign=campaign, sample_limit=5)
    assert (report.audience, report.checked, report.sampled) == (12, 5, True)
    assert report.channels["email"].reachable == 4  # r0 is capped
    assert "campaigns_optout" not in report.policies  # r8, r9 are beyond the sample


def test_works_in_bounded_chunks_with_constant_queries_per_chunk(campaign):
    calls = []
    original = RecipientListResolver.recipients_for_ids

    def spy(self, ids):
        calls.append(len(ids))
        return original(self, ids)

    with mock.patch.object(RecipientListResolver, "recipients_for_ids", spy):
        with CaptureQueriesContext(connection) as four_chunks:
            campaign_dry_run(campaign=campaign, chunk_size=3)
        with CaptureQueriesContext(connection) as two_chunks:
            campaign_dry_run(campaign=campaign, chunk_size=6)
    assert calls == [3, 3, 3, 3, 6, 6]
    per_chunk = (len(four_chunks) - len(two_chunks)) / 2
    assert per_chunk <= 6  # ids, rows, toggles, opt-outs, delivery counts (+1 slack)
    assert len(four_chunks) == len(two_chunks) + 2 * per_chunk


def test_an_unresolvable_audience_is_a_clear_error(campaign):
    campaign.recipient_source.parameters = {"recipient_list": 424242}
    with pytest.raises(ValidationError, match="recipient_list: Select a valid choice"):
        campaign_dry_run(campaign=campaign)
