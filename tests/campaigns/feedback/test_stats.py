"""Statistics per run and per campaign from the events (campaigns/feedback/selectors.py), and
the read-only admin pages that show them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.feedback import selectors, services
from tests.campaigns.factories import (
    CampaignFactory,
    CampaignRunFactory,
    DeliveryFactory,
    StaffUserFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

_n = iter(range(10_000))


def happened(delivery, kind, **kw):
    services.event_record(
        services.Feedback(
            source="Postmark",
            kind=kind,
            recipient=delivery.email,
            esp_event_id=f"e{next(_n)}",
            clues=services.Clues(header_uuids=[str(delivery.message_uuid)]),
            **kw,
        )
    )


@pytest.fixture
def campaign(db):
    campaign = CampaignFactory(name="Spring")
    first = CampaignRunFactory(campaign=campaign, sent=4)
    second = CampaignRunFactory(campaign=campaign, sent=2)
    a, b, c, d = (DeliveryFactory(run=first) for _ in range(4))
    e, f = (DeliveryFactory(run=second) for _ in range(2))
    for delivery in (a, b, c):
        happened(delivery, "delivered")
    happened(d, "bounced", bounce_type="hard")
    happened(a, "opened")
    happened(a, "opened")  # a second open of the same message counts once
    happened(b, "opened")
    happened(a, "clicked", click_url="https://example.org/")
    happened(c, "complained")
    happened(e, "bounced", bounce_type="soft")
    happened(f, "unsubscribed")
    happened(f, "delivered")
    return campaign, first, second


def test_run_counts_and_rates(campaign):
    _, first, second = campaign
    stats = selectors.run_feedback_stats(first.pk)
    assert stats.sent == 4 and stats.reached == 3
    assert stats.counts == {
        "delivered": 3,
        "bounced": 1,
        "complained": 1,
        "opened": 2,
        "clicked": 1,
        "unsubscribed": 0,
    }
    assert stats.rate("delivered") == 0.75  # of sent
    assert stats.rate("bounced") == 0.25
    assert stats.rate("opened") == 2 / 3  # of sent minus bounced
    assert stats.rate("clicked") == 1 / 3
    assert (stats.hard_bounced, stats.soft_bounced) == (1, 0)
    other = selectors.run_feedback_stats(second.pk)
    assert (other.counts["bounced"], other.soft_bounced, other.counts["unsubscribed"]) == (1, 1, 1)
    assert other.rate("unsubscribed") == 1.0


def test_campaign_totals_and_many_runs_in_two_queries(campaign, django_assert_num_queries):
    spring, first, second = campaign
    total = selectors.campaign_feedback_stats(spring.pk)
    assert total.sent == 6
    assert total.counts["bounced"] == 2 and total.counts["delivered"] == 4
    assert total.as_dict()["rates"]["bounced"] == 2 / 6
    with django_assert_num_queries(2):
        both = selectors.runs_feedback_stats([first.pk, second.pk])
    assert both[first.pk].counts == selectors.run_feedback_stats(first.pk).counts
    with django_assert_num_queries(2):
        by_campaign = selectors.campaigns_feedback_stats([spring.pk])
    assert by_campaign[spring.pk].counts == total.counts


def test_nothing_sent_has_no_rates(db):
    run = CampaignRunFactory(sent=0)
    stats = selectors.run_feedback_stats(run.pk)
    assert stats.rates == dict.fromkeys(selectors.STAT_KINDS)
    assert stats.rows()[0] == {"kind": "delivered", "label": "Delivered", "count": 0, "rate": None}


def test_the_admin_pages(client, campaign):
    spring, first, _ = campaign
    viewer = UserFactory(is_staff=True, permissions=["campaigns.view_campaign"])
    client.force_login(viewer)
    index = client.get(reverse("admin:campaigns_feedback_stats"))
    assert index.status_code == 200
    html = index.content.decode()
    assert "Spring" in html and "Apple Mail Privacy Protection" in html
    page = client.get(reverse("admin:campaigns_feedback_campaign_stats", args=[spring.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "All runs" in html
    row = html.split(f'data-id="{first.pk}"')[1].split("</tr>")[0]
    assert 'data-kind="delivered">3 <span class="quiet">(75.0%)</span>' in row
    assert 'data-kind="opened">2 <span class="quiet">(66.7%)</span>' in row


def test_the_admin_pages_need_a_permission(client, campaign):
    spring, _, _ = campaign
    client.force_login(StaffUserFactory())
    assert client.get(reverse("admin:campaigns_feedback_stats")).status_code == 403
    url = reverse("admin:campaigns_feedback_campaign_stats", args=[spring.pk])
    assert client.get(url).status_code == 403
    client.logout()
    assert client.get(url).status_code == 302  # to the login page
