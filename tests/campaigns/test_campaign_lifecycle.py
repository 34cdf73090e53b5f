"""Campaign lifecycle services: the transition table, edits, and the approval rules."""

import pytest
from django.core.exceptions import ValidationError

from campaigns.exceptions import CampaignError
from campaigns.models import Campaign
from campaigns.services import campaigns as svc
from tests.campaigns.factories import (
    CampaignFactory,
    MessageTypeDefinitionFactory,
    RecipientSourceFactory,
    StaffUserFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

S = Campaign.Status


@pytest.fixture
def campaign(email_type, operator):
    return CampaignFactory(message_type=email_type, created_by=operator, context={"headline": "H"})


def test_table_covers_every_status_and_terminal_states_are_final():
    assert set(svc.TRANSITIONS) == set(S.values)
    assert svc.TRANSITIONS[S.COMPLETED] == frozenset()
    assert svc.TRANSITIONS[S.CANCELLED] == frozenset()
    assert not svc.campaign_transition_allowed(current=S.DRAFT, target=S.RUNNING)
    assert svc.campaign_transition_allowed(current=S.RUNNING, target=S.PAUSED)


@pytest.mark.parametrize(
    ("start", "target"),
    [(S.DRAFT, S.SCHEDULED), (S.COMPLETED, S.RUNNING), (S.CANCELLED, S.DRAFT), (S.DRAFT, S.PAUSED)],
)
def test_invalid_transition_is_refused_with_message(campaign, start, target):
    Campaign.objects.filter(pk=campaign.pk).update(status=start)
    campaign.refresh_from_db()
    with pytest.raises(CampaignError) as info:
        svc.campaign_transition(campaign=campaign, to=target)
    assert "can't become" in info.value.message
    assert info.value.extra == {"campaign_id": campaign.pk, "from": start, "to": target}
    campaign.refresh_from_db()
    assert campaign.status == start


def test_transition_checks_stored_status_not_stale_instance(campaign):
    stale = Campaign.objects.get(pk=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status=S.CANCELLED)
    with pytest.raises(CampaignError):
        svc.campaign_transition(campaign=stale, to=S.APPROVED)


def test_approve_needs_permission(campaign, other_operator):
    with pytest.raises(CampaignError, match="permission to approve"):
        svc.campaign_approve(campaign=campaign, user=other_operator)
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT


def test_cannot_approve_own_campaign(email_type):
    author = StaffUserFactory(permissions=["campaigns.approve_campaign"])
    campaign = CampaignFactory(message_type=email_type, created_by=author)
    with pytest.raises(CampaignError) as info:
        svc.campaign_approve(campaign=campaign, user=author)
    assert info.value.message == svc.ERROR_APPROVE_OWN
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT and campaign.approved_by is None


def test_approver_approves(campaign, approver):
    svc.campaign_approve(campaign=campaign, user=approver)
    campaign.refresh_from_db()
    assert campaign.status == S.APPROVED
    assert campaign.approved_by == approver and campaign.approved_at is not None
    with pytest.raises(CampaignError, match="is approved; it can't become approved"):
        svc.campaign_approve(campaign=campaign, user=approver)


def test_approval_refuses_campaign_that_cannot_be_sent(approver, operator):
    no_templates = MessageTypeDefinitionFactory()
    campaign = CampaignFactory(message_type=no_templates, created_by=operator, channels=["push"])
    with pytest.raises(CampaignError) as info:
        svc.campaign_approve(campaign=campaign, user=approver)
    assert "the push channel is not enabled" in info.value.message
    campaign.channels = ["email"]
    campaign.save()
    with pytest.raises(CampaignError, match="no email templates"):
        svc.campaign_approve(campaign=campaign, user=approver)


def test_editing_approved_campaign_sends_it_back_to_draft(campaign, approver, operator):
    svc.campaign_approve(campaign=campaign, user=approver)
    svc.campaign_update(campaign=campaign, user=operator, context={"headline": "New"})
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT
    assert campaign.approved_by is None and campaign.approved_at is None
    assert campaign.context == {"headline": "New"}


def test_saving_approved_campaign_unchanged_keeps_approval(campaign, approver, operator):
    svc.campaign_approve(campaign=campaign, user=approver)
    svc.campaign_update(campaign=campaign, user=operator, name=campaign.name)
    campaign.refresh_from_db()
    assert campaign.status == S.APPROVED


@pytest.mark.parametrize("status", [S.SCHEDULED, S.RUNNING, S.PAUSED, S.COMPLETED, S.CANCELLED])
def test_campaign_past_approval_cannot_be_edited(campaign, operator, status):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    with pytest.raises(CampaignError, match="can no longer be edited"):
        svc.campaign_update(campaign=campaign, user=operator, name="changed")
    assert Campaign.objects.get(pk=campaign.pk).name != "changed"


def test_create_makes_a_validated_draft(email_type, operator):
    source = RecipientSourceFactory()
    campaign = svc.campaign_create(
        user=operator,
        name="Spring",
        message_type=email_type,
        recipient_source=source,
        channels=["email"],
    )
    assert campaign.status == S.DRAFT and campaign.created_by == operator
    with pytest.raises(ValidationError):
        svc.campaign_create(
            user=operator, name="x", message_type=email_type, recipient_source=source, channels=[]
        )
    with pytest.raises(CampaignError, match="Unknown campaign field"):
        svc.campaign_create(user=operator, status=S.APPROVED)


def test_return_to_draft(campaign, approver, bare_staff):
    svc.campaign_approve(campaign=campaign, user=approver)
    with pytest.raises(CampaignError):
        svc.campaign_return_to_draft(campaign=campaign, user=bare_staff)
    svc.campaign_return_to_draft(campaign=campaign, user=approver)
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT and campaign.approved_by is None


def test_context_must_be_object():
    assert svc.campaign_validate_context(None) == {}
    with pytest.raises(ValidationError, match="JSON object"):
        svc.campaign_validate_context(["a"])
