"""The suppression list: what events add to it, soft bounces counted to a threshold, lifting
(and its permission), and the ``campaigns_suppression`` policy that reads it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ace import policy as ace_policy
from ace.channel import ChannelType
from campaigns.feedback import services
from campaigns.feedback.models import DeliveryEvent, Suppression
from campaigns.policies import installed_policy_classes
from campaigns.policies.suppression import SuppressionPolicy
from campaigns.services.policies import policies_prefetched, policy_toggle_set
from tests.campaigns.factories import StaffUserFactory, UserFactory
from tests.campaigns.policies.helpers import message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_policies")]

Kind, Reason = DeliveryEvent.Kind, Suppression.Reason


def event(kind, recipient="ada@example.net", bounce_type="", n=0, **kw):
    return services.event_record(
        services.Feedback(
            source="Test",
            kind=kind,
            recipient=recipient,
            bounce_type=bounce_type,
            esp_event_id=f"{kind}-{bounce_type}-{recipient}-{n}",
            **kw,
        )
    )


@pytest.mark.parametrize(
    ("kind", "extra", "reason"),
    [
        (Kind.BOUNCED, {"bounce_type": "hard"}, Reason.HARD_BOUNCE),
        (Kind.COMPLAINED, {}, Reason.COMPLAINT),
        (Kind.UNSUBSCRIBED, {}, Reason.UNSUBSCRIBE),
        (Kind.REJECTED, {"reject_reason": "bounced"}, Reason.HARD_BOUNCE),
        (Kind.REJECTED, {"reject_reason": "spam"}, Reason.COMPLAINT),
    ],
)
def test_events_that_suppress(kind, extra, reason):
    recorded, created = event(kind, recipient="Ada@Example.NET", status_code="5.1.1", **extra)
    assert created
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason) == ("ada@example.net", reason)
    assert suppression.source_event == recorded
    assert suppression.active
    assert "Test" in suppression.detail


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        (Kind.DELIVERED, {}),
        (Kind.DEFERRED, {}),
        (Kind.OPENED, {}),
        (Kind.CLICKED, {"click_url": "https://example.org/"}),
        (Kind.REJECTED, {"reject_reason": "blocked"}),
        (Kind.FAILED, {}),
    ],
)
def test_events_that_do_not_suppress(kind, extra):
    event(kind, **extra)
    assert not Suppression.objects.exists()


def test_soft_bounces_suppress_at_the_threshold(settings):
    settings.CAMPAIGNS_SOFT_BOUNCE_THRESHOLD = 3
    event(Kind.BOUNCED, bounce_type="soft", n=1)
    event(Kind.BOUNCED, bounce_type="soft", n=2)
    assert not Suppression.objects.exists()
    event(Kind.BOUNCED, bounce_type="soft", n=2)  # a replay counts once
    assert not Suppression.objects.exists()
    assert services.soft_bounce_count("ada@example.net") == 2
    event(Kind.BOUNCED, bounce_type="soft", n=3)
    suppression = Suppression.objects.get()
    assert suppression.reason == Reason.SOFT_BOUNCE
    assert suppression.detail.startswith("3 soft bounces")


def test_a_delivery_resets_the_soft_bounce_count(settings):
    settings.CAMPAIGNS_SOFT_BOUNCE_THRESHOLD = 2
    event(Kind.BOUNCED, bounce_type="soft", n=1)
    event(Kind.DELIVERED)
    event(Kind.BOUNCED, bounce_type="soft", n=2)
    assert not Suppression.objects.exists()
    event(Kind.BOUNCED, bounce_type="soft", n=3)
    assert Suppression.objects.get().reason == Reason.SOFT_BOUNCE


def test_one_active_suppression_per_address_and_the_first_reason_stays():
    event(Kind.BOUNCED, bounce_type="hard")
    event(Kind.COMPLAINED)
    assert list(Suppression.objects.values_list("reason", flat=True)) == [Reason.HARD_BOUNCE]
    assert DeliveryEvent.objects.count() == 2


def test_manual_suppression_validates_the_address():
    user = StaffUserFactory()
    suppression, created = services.suppression_add(
        address=" Bob@Example.org ", reason=Reason.MANUAL, detail="asked by phone", by=user
    )
    assert created and suppression.address == "bob@example.org"
    assert suppression.created_by == user
    assert services.suppression_add(address="bob@example.org", reason=Reason.MANUAL) == (
        suppression,
        False,
    )
    with pytest.raises(ValidationError, match="not an email address"):
        services.suppression_add(address="not an address", reason=Reason.MANUAL)


def test_lifting_needs_the_permission_and_keeps_the_record(settings):
    suppression, _ = services.suppression_add(address="bob@example.org", reason=Reason.MANUAL)
    with pytest.raises(PermissionDenied):
        services.suppressions_lift([suppression], by=StaffUserFactory())
    lifter = UserFactory(permissions=["campaigns.lift_suppression"])
    assert services.suppressions_lift([suppression], by=lifter, note="fixed") == 1
    assert services.suppressions_lift([suppression], by=lifter) == 0  # already lifted
    suppression.refresh_from_db()
    assert not suppression.active
    assert (suppression.lifted_by, suppression.lift_note) == (lifter, "fixed")
    # The address can be suppressed again; the lifted row stays.
    _, created = services.suppression_add(address="bob@example.org", reason=Reason.MANUAL)
    assert created and Suppression.objects.count() == 2


def test_soft_bounces_before_a_lift_do_not_count_after_it(settings):
    settings.CAMPAIGNS_SOFT_BOUNCE_THRESHOLD = 2
    event(Kind.BOUNCED, bounce_type="soft", n=1)
    event(Kind.BOUNCED, bounce_type="soft", n=2)
    lifter = UserFactory(permissions=["campaigns.lift_suppression"])
    services.suppressions_lift(Suppression.objects.all(), by=lifter)
    event(Kind.BOUNCED, bounce_type="soft", n=3)
    assert not Suppression.objects.filter(lifted_at__isnull=True).exists()


# The policy ---------------------------------------------------------------------------------


def test_the_policy_is_installed_and_on_by_default():
    assert installed_policy_classes()["campaigns_suppression"] is SuppressionPolicy
    services.suppression_add(address="ada@example.net", reason=Reason.HARD_BOUNCE, detail="550")
    allowed, reasons = ace_policy.evaluate(message(email="ADA@example.net"))
    assert ChannelType.EMAIL not in allowed
    assert ChannelType.PUSH in allowed  # a bounced address says nothing about devices
    assert "address suppressed: Hard bounce (550)" in reasons[ChannelType.EMAIL]
    allowed, _ = ace_policy.evaluate(message(email="bob@example.net"))
    assert ChannelType.EMAIL in allowed


def test_a_lifted_suppression_denies_nothing():
    suppression, _ = services.suppression_add(address="ada@example.net", reason=Reason.MANUAL)
    suppression.lifted_at = timezone.now()
    suppression.save()
    allowed, _ = ace_policy.evaluate(message(email="ada@example.net"))
    assert ChannelType.EMAIL in allowed


def test_a_toggle_turns_it_off():
    services.suppression_add(address="ada@example.net", reason=Reason.MANUAL)
    policy_toggle_set(policy="campaigns_suppression", enabled=False)
    allowed, _ = ace_policy.evaluate(message(email="ada@example.net"))
    assert ChannelType.EMAIL in allowed


def test_a_batch_costs_one_query_whatever_its_size():
    for i in range(0, 300, 3):
        services.suppression_add(address=f"u{i}@example.org", reason=Reason.HARD_BOUNCE)
    policy = SuppressionPolicy()
    small = [message(email=f"u{i}@example.org") for i in range(10)]
    big = [message(email=f"u{i}@example.org") for i in range(300)]
    for batch in (small, big):
        with CaptureQueriesContext(connection) as queries:
            policy.prefetch(batch)
            results = [policy.evaluate(m, {}) for m in batch]
        policy.clear_prefetch()
        assert len(queries) == 1
        assert sum(1 for r in results if r.deny) == len(range(0, len(batch), 3))
    # The same answers without a prefetch (one query each).
    assert [policy.evaluate(m, {}).deny for m in big[:6]] == [
        {ChannelType.EMAIL},
        set(),
        set(),
        {ChannelType.EMAIL},
        set(),
        set(),
    ]


def test_the_batch_path_prefetches_it():
    services.suppression_add(address="u3@example.org", reason=Reason.COMPLAINT)
    batch = [message(email=f"u{i}@example.org") for i in range(50)]
    ace_policy.policies()
    with policies_prefetched(batch), CaptureQueriesContext(connection) as queries:
        results = [ace_policy.evaluate(m) for m in batch]
    assert len(queries) == 0  # everything came from the prefetch
    assert [i for i, (allowed, _) in enumerate(results) if ChannelType.EMAIL not in allowed] == [3]


def test_old_events_are_kept_when_a_delivery_row_goes(sent_delivery):
    recorded, _ = event(Kind.OPENED, recipient=sent_delivery.email)
    assert recorded.delivery is None or recorded.delivery == sent_delivery
    sent_delivery.run.delete()
    recorded.refresh_from_db()
    assert recorded.delivery is None
    assert recorded.received_at <= timezone.now() + dt.timedelta(seconds=1)
