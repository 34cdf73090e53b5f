"""Two-person approval through the admin, with the real role accounts (V1): an approval covers
one exact content and audience; editing the templates or the recipient source after it sends the
campaign back to draft (a scheduled one loses its schedule); nobody approves their own edit; the
history shows what was approved and by whom."""

import datetime as dt

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.models import Campaign, TemplatePart
from campaigns.services import campaigns as svc
from campaigns.services.schedules import campaign_schedule
from tests.campaigns.admin.helpers import admin_form_data, inline_prefixes, messages_of
from tests.campaigns.factories import CampaignFactory, RecipientSourceFactory, StaffUserFactory

ERROR_APPROVE_OWN_EDIT = "You can't approve a campaign you last edited; ask another approver."
ERROR_APPROVE_OWN_PART = (
    "You can't approve a campaign whose %(part)s you last edited; ask another approver."
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

S = Campaign.Status


def url(name, obj):
    return reverse(f"admin:campaigns_{obj._meta.model_name}_{name}", args=[obj.pk])


@pytest.fixture
def lead(db):
    """One user with both roles: Operators and Approvers."""
    user = StaffUserFactory(username="lead")
    user.groups.add(*Group.objects.filter(name__in=["Operators", "Approvers"]))
    return user


@pytest.fixture
def staff_group(db):
    return Group.objects.create(name="Staff newsletter")


@pytest.fixture
def source(staff_group):
    return RecipientSourceFactory(
        name="staff", resolver="group_members", parameters={"group": staff_group.pk}
    )


@pytest.fixture
def campaign(email_type, source, operator):
    return CampaignFactory(
        name="Spring",
        message_type=email_type,
        recipient_source=source,
        created_by=operator,
        context={"headline": "Spring is here"},
    )


def _approve(client, user, campaign):
    client.force_login(user)
    page = client.get(url("change", campaign))
    digest = page.context.get("content_digest", "")
    return client.post(url("approve", campaign), {"digest": digest}, follow=True)


def _edit_subject(client, user, message_type, content):
    """Change the email subject part (any language) in the message type's change form."""
    client.force_login(user)
    page = client.get(url("change", message_type))
    email = inline_prefixes(page)[0]
    forms = page.context["inline_admin_formsets"][0].formset.forms
    index = next(i for i, f in enumerate(forms) if f.instance.filename == "subject.txt")
    data = admin_form_data(page, **{f"{email}-{index}-content": content})
    return client.post(url("change", message_type), data, follow=True)


def _edit_source(client, user, source, **fields):
    client.force_login(user)
    page = client.get(url("change", source))
    return client.post(url("change", source), admin_form_data(page, **fields), follow=True)


def _status(campaign) -> str:
    campaign.refresh_from_db()
    return campaign.status


def test_editing_the_templates_after_approval_sends_the_campaign_back_to_draft(
    client, operator, approver, campaign, email_type
):
    assert any("is approved" in m for m in messages_of(_approve(client, approver, campaign)))
    assert _status(campaign) == S.APPROVED

    response = _edit_subject(client, operator, email_type, "URGENT: verify your password")
    assert response.status_code == 200
    assert any("sent it back to draft" in m and "Spring" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT
    assert campaign.approved_by is None and campaign.approved_digest == ""
    assert campaign.last_edited_by == operator
    history = LogEntry.objects.filter(object_id=str(campaign.pk)).values_list(
        "change_message", flat=True
    )
    assert any("Approval withdrawn" in m and "operator" in m for m in history)
    # Another approval, of the new content, is possible (the approver did not edit it).
    assert any("is approved" in m for m in messages_of(_approve(client, approver, campaign)))
    assert _status(campaign) == S.APPROVED


def test_editing_the_templates_of_a_scheduled_campaign_deletes_its_schedule(
    client, operator, approver, campaign, email_type
):
    Campaign.objects.filter(pk=campaign.pk).update(
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=timezone.now() + dt.timedelta(days=2),
    )
    campaign.refresh_from_db()
    _approve(client, approver, campaign)
    campaign.refresh_from_db()
    campaign_schedule(campaign=campaign)
    assert _status(campaign) == S.SCHEDULED
    assert PeriodicTask.objects.filter(name=f"campaign:{campaign.pk}", enabled=True).exists()

    _edit_subject(client, operator, email_type, "Tampered {{ first_name }}")
    assert _status(campaign) == S.DRAFT
    assert not PeriodicTask.objects.filter(name=f"campaign:{campaign.pk}").exists()
    assert campaign.periodic_task is None


def test_editing_the_recipient_source_after_approval_sends_the_campaign_back_to_draft(
    client, operator, approver, campaign, source
):
    _approve(client, approver, campaign)
    assert _status(campaign) == S.APPROVED
    response = _edit_source(client, operator, source, resolver="all_active_users", parameters="{}")
    assert any("sent it back to draft" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT and campaign.last_edited_by == operator
    source.refresh_from_db()
    assert source.last_edited_by == operator


def test_saving_without_a_change_keeps_the_approval(client, operator, approver, campaign, source):
    _approve(client, approver, campaign)
    _edit_source(client, operator, source)
    campaign.refresh_from_db()
    assert campaign.status == S.APPROVED
    source.refresh_from_db()
    assert source.last_edited_by is None  # saving unchanged makes nobody its editor


def test_a_user_with_both_roles_cannot_approve_their_own_edit(client, lead, approver, campaign):
    _approve(client, approver, campaign)
    client.force_login(lead)
    page = client.get(url("change", campaign))
    response = client.post(
        url("change", campaign),
        admin_form_data(page, context='{"headline": "Everything must go"}'),
        follow=True,
    )
    assert any("sent it back to draft" in m for m in messages_of(response))
    assert _status(campaign) == S.DRAFT

    response = _approve(client, lead, campaign)
    assert ERROR_APPROVE_OWN_EDIT in messages_of(response)
    assert _status(campaign) == S.DRAFT
    assert campaign.last_edited_by == lead
    # The bulk action refuses it too.
    changelist = reverse("admin:campaigns_campaign_changelist")
    response = client.post(
        changelist, {"action": "approve_selected", "_selected_action": [campaign.pk]}, follow=True
    )
    assert ERROR_APPROVE_OWN_EDIT in messages_of(response)
    assert _status(campaign) == S.DRAFT
    # Someone else approves the edited version.
    assert any("is approved" in m for m in messages_of(_approve(client, approver, campaign)))


def test_a_user_with_both_roles_cannot_approve_after_editing_its_templates(
    client, lead, approver, campaign, email_type, other_operator
):
    _edit_subject(client, lead, email_type, "Edited by the lead")
    # Even once someone else edits the campaign itself, the template edit is the lead's.
    client.force_login(other_operator)
    page = client.get(url("change", campaign))
    client.post(url("change", campaign), admin_form_data(page, name="Spring!"))
    response = _approve(client, lead, campaign)
    refusal = ERROR_APPROVE_OWN_PART % {"part": f"message type “{email_type}”"}
    assert refusal in messages_of(response)
    assert _status(campaign) == S.DRAFT
    assert campaign.last_edited_by == other_operator


def test_approving_content_that_changed_since_the_page_was_opened_is_refused(
    client, approver, campaign, email_type
):
    client.force_login(approver)
    page = client.get(url("change", campaign))
    seen = page.context["content_digest"]
    assert f'name="digest" value="{seen}"' in page.content.decode()
    part = TemplatePart.objects.get(message_type=email_type, filename="body.txt", language="")
    part.content = "Changed meanwhile"
    part.save()
    response = client.post(url("approve", campaign), {"digest": seen}, follow=True)
    assert any("changed after you opened it" in m for m in messages_of(response))
    assert _status(campaign) == S.DRAFT


def test_the_history_shows_the_approved_digest_and_the_approver(client, approver, campaign):
    _approve(client, approver, campaign)
    campaign.refresh_from_db()
    assert len(campaign.approved_digest) == 64
    assert campaign.approved_digest == svc.campaign_content_digest(campaign=campaign)
    entry = LogEntry.objects.get(object_id=str(campaign.pk), change_message__startswith="Approved")
    assert campaign.approved_digest in entry.change_message
    assert entry.user == approver and "approver" in entry.change_message
    page = client.get(url("change", campaign))
    html = page.content.decode()
    assert campaign.approved_digest in html
    assert "(what was approved)" in html
    history = client.get(reverse("admin:campaigns_campaign_history", args=[campaign.pk]))
    assert campaign.approved_digest in history.content.decode()


def test_templates_and_audience_of_a_sending_campaign_cannot_change(
    client, operator, campaign, email_type, source
):
    Campaign.objects.filter(pk=campaign.pk).update(status=S.RUNNING)
    response = _edit_subject(client, operator, email_type, "Mid-run change")
    assert "is being sent by campaign “Spring”" in response.content.decode()
    part = TemplatePart.objects.get(message_type=email_type, filename="subject.txt", language="")
    assert part.content != "Mid-run change"
    Campaign.objects.filter(pk=campaign.pk).update(status=S.PAUSED)
    response = _edit_source(client, operator, source, resolver="all_active_users", parameters="{}")
    assert "is being sent by campaign “Spring”" in response.content.decode()
    source.refresh_from_db()
    assert source.resolver == "group_members"
