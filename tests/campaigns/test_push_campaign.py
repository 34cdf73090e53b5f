"""A campaign on ["email", "push"]: one delivery row per channel, push over real Web Push.

The run goes through the dispatch services (``run_start`` -> eager ``deliver_batch`` ->
``batch_deliver``), email into Django's locmem outbox, push to a loopback push service whose
received payloads are decrypted with each browser's private key.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone
from fake_push_service import Reply, verify_vapid
from push_fixtures import *  # noqa: F403  (the fixtures)
from push_fixtures import VAPID_SUBJECT, add_device
from push_notifications.models import WebPushDevice

from campaigns.models import Campaign, ChannelChoice, Delivery, TemplatePart
from campaigns.services.runs import run_start
from tests.campaigns.factories import (
    CampaignFactory,
    GroupFactory,
    MessageTypeDefinitionFactory,
    RecipientSourceFactory,
    TemplatePartFactory,
    UserFactory,
    email_template_parts,
)

pytestmark = pytest.mark.django_db

SENT, SKIPPED, QUEUED = Delivery.Status.SENT, Delivery.Status.SKIPPED, Delivery.Status.QUEUED


@pytest.fixture
def campaign_settings(push_settings):
    push_settings.ACE_ENABLED_CHANNELS = ["django_email", "push_notification"]
    push_settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return push_settings


def make_campaign(users, channels: list[str]) -> Campaign:
    message_type = MessageTypeDefinitionFactory()
    email_template_parts(message_type)
    for filename, content in (
        (TemplatePart.Filename.TITLE, "News for {{ first_name }}"),
        (TemplatePart.Filename.BODY_TEXT, "{{ headline }}"),
    ):
        TemplatePartFactory(
            message_type=message_type,
            channel=ChannelChoice.PUSH,
            filename=filename,
            content=content,
        )
    group = GroupFactory(members=users)
    source = RecipientSourceFactory(resolver="group_members", parameters={"group": group.pk})
    return CampaignFactory(
        message_type=message_type,
        recipient_source=source,
        channels=channels,
        context={"headline": "The new course is open"},
        status=Campaign.Status.SCHEDULED,
    )


def run(campaign: Campaign, capture) -> None:
    with capture(execute=True):
        run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))


def test_email_and_push_rows_with_sent_and_skipped_outcomes(
    campaign_settings,
    push_service,
    vapid_keys,
    django_capture_on_commit_callbacks,
):
    ada, bob, cyd, dan, eve = (
        UserFactory(username=name, first_name=name.title())
        for name in ("ada", "bob", "cyd", "dan", "eve")
    )
    ada_phone, ada_laptop = push_service.subscribe(), push_service.subscribe()
    bob_phone = push_service.subscribe()
    dan_old = push_service.subscribe()
    eve_busy = push_service.subscribe()
    add_device(ada, ada_phone)
    add_device(ada, ada_laptop)
    add_device(bob, bob_phone)
    add_device(dan, dan_old)  # cyd has no device at all
    add_device(eve, eve_busy)
    push_service.script(dan_old, Reply(410))
    push_service.script(eve_busy, Reply(429, {"Retry-After": "600"}))
    campaign = make_campaign([ada, bob, cyd, dan, eve], ["email", "push"])

    started = timezone.now()
    run(campaign, django_capture_on_commit_callbacks)

    rows = {(d.user_id, d.channel): d for d in Delivery.objects.filter(run__campaign=campaign)}
    assert len(rows) == 10, "one row per (recipient, channel)"
    for user in (ada, bob, cyd, dan, eve):
        assert rows[(user.pk, "email")].status == SENT
    assert len(mail.outbox) == 5

    assert rows[(ada.pk, "push")].status == SENT
    assert rows[(bob.pk, "push")].status == SENT
    assert rows[(cyd.pk, "push")].status == SKIPPED
    assert "no active push device" in rows[(cyd.pk, "push")].reason
    assert rows[(dan.pk, "push")].status == SKIPPED
    assert "gone" in rows[(dan.pk, "push")].reason
    assert rows[(dan.pk, "push")].exception_type == "RecipientAddressMissingError"
    assert not WebPushDevice.objects.get(registration_id=dan_old.endpoint).active

    # Throttled: back in the queue for later (eager Celery does not wait), nothing slept.
    eve_row = rows[(eve.pk, "push")]
    assert eve_row.status == QUEUED
    assert eve_row.next_attempt_at >= started + dt.timedelta(seconds=590)
    assert "HTTP 429" in eve_row.reason

    # What the browsers got: their own decryptable message, signed with the server's VAPID key.
    for subscription, name in ((ada_phone, "Ada"), (ada_laptop, "Ada"), (bob_phone, "Bob")):
        [request] = push_service.requests_for(subscription)
        payload = subscription.decrypt_json(request.body)
        assert payload == {
            "title": f"News for {name}",
            "body": "The new course is open",
            "data": payload["data"],
        }
        assert payload["data"]["message_uuid"] == str(
            rows[({"Ada": ada, "Bob": bob}[name].pk, "push")].message_uuid
        )
        verify_vapid(
            request.headers["authorization"],
            public_key=vapid_keys[1],
            audience=push_service.url,
            subject=VAPID_SUBJECT,
        )

    campaign_run = campaign.runs.get()
    assert (campaign_run.sent, campaign_run.skipped) == (7, 2)
    assert campaign_run.total == 10


def test_push_only_campaign_sends_no_email(
    campaign_settings, push_service, django_capture_on_commit_callbacks
):
    ada, bob = UserFactory(username="ada2"), UserFactory(username="bob2")
    sub = push_service.subscribe()
    add_device(ada, sub)
    campaign = make_campaign([ada, bob], ["push"])

    run(campaign, django_capture_on_commit_callbacks)

    statuses = dict(
        Delivery.objects.filter(run__campaign=campaign).values_list("user_id", "status")
    )
    assert statuses == {ada.pk: SENT, bob.pk: SKIPPED}
    assert set(Delivery.objects.values_list("channel", flat=True)) == {"push"}
    assert mail.outbox == []
    assert len(push_service.requests_for(sub)) == 1


def test_push_without_vapid_is_skipped_not_crashed(
    campaign_settings, push_service, django_capture_on_commit_callbacks
):
    """Push selected but not configured: email goes out, push rows say why they were skipped."""
    campaign_settings.PUSH_NOTIFICATIONS_SETTINGS = {}
    ada = UserFactory(username="ada3")
    add_device(ada, push_service.subscribe())
    campaign = make_campaign([ada], ["email", "push"])

    run(campaign, django_capture_on_commit_callbacks)

    rows = {d.channel: d for d in Delivery.objects.filter(run__campaign=campaign)}
    assert rows["email"].status == SENT
    assert rows["push"].status == SKIPPED
    assert rows["push"].reason
    assert push_service.requests == []
