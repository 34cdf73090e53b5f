"""The whole loop on the batch path (eager Celery, locmem email): a campaign is sent, the ESP
reports a bounce, the address is suppressed, and the next run denies it with the reason while
everyone else gets the message."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.core import mail
from django.utils import timezone

from campaigns.feedback import selectors
from campaigns.feedback.models import DeliveryEvent, Suppression
from campaigns.models import Campaign, Delivery
from campaigns.services.runs import run_start
from tests.campaigns.feedback.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER
from tests.campaigns.services.helpers import address, make_campaign, statuses

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_settings")]


@pytest.fixture
def start(django_capture_on_commit_callbacks):
    def _start(campaign, due_at):
        with django_capture_on_commit_callbacks(execute=True):
            run = run_start(campaign_id=campaign.pk, due_at=due_at)
        run.refresh_from_db()
        return run

    return _start


def test_a_bounce_suppresses_the_address_for_the_next_run(client, dispatch_settings, start):
    campaign = make_campaign(3, schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=60)
    first = start(campaign, timezone.now().replace(microsecond=0))
    assert statuses(first) == {"sent": 3}
    assert sorted(to for m in mail.outbox for to in m.to) == [address(i) for i in range(3)]

    token = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
    bounce = {
        "RecordType": "Bounce",
        "ID": 99,
        "Type": "HardBounce",
        "MessageID": "pm-99",
        "Details": "smtp;550 5.1.1 no such user",
        "Email": address(1),
        "BouncedAt": timezone.now().isoformat(),
    }
    response = client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(bounce),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {token}",
    )
    assert response.status_code == 200
    event = DeliveryEvent.objects.get()
    assert event.delivery == first.deliveries.get(email=address(1))
    assert Suppression.objects.get().address == address(1)
    assert selectors.run_feedback_stats(first.pk).counts["bounced"] == 1

    mail.outbox = []
    second = start(campaign, first.due_at + dt.timedelta(hours=1))
    assert statuses(second) == {"sent": 2, "denied": 1}
    denied = second.deliveries.get(status=Delivery.Status.DENIED)
    assert denied.email == address(1)
    assert "address suppressed: Hard bounce" in denied.reason
    assert "5.1.1" in denied.reason
    assert address(1) not in [to for m in mail.outbox for to in m.to]
    assert (second.sent, second.denied, second.total) == (2, 1, 3)
