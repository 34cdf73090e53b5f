"""What an approval covers (DESIGN.md, invariant 7): the content digest, who may approve, and
edits after approval withdrawing it -- the services, without the admin."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, TemplatePart
from campaigns.services import approvals
from campaigns.services import campaigns as svc
from campaigns.services.schedules import campaign_schedule
from tests.campaigns.factories import (
    CampaignFactory,
    MessageTypeDefinitionFactory,
    RecipientListEntryFactory,
    RecipientListFactory,
    RecipientSourceFactory,
    StaffUserFactory,
    TemplatePartFactory,
    email_template_parts,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

S = Campaign.Status


@pytest.fixture
def campaign(email_type, operator):
    return CampaignFactory(
        message_type=email_type,
        created_by=operator,
        last_edited_by=operator,
        context={"headline": "H"},
    )


def _digest(campaign) -> str:
    campaign = Campaign.objects.select_related("message_type", "recipient_source").get(
        pk=campaign.pk
    )
    return svc.campaign_content_digest(campaign=campaign)


def _approved(campaign, approver):
    svc.campaign_approve(campaign=campaign, user=approver)
    campaign.refresh_from_db()
    return campaign


# The digest -----------------------------------------------------------------------------------


def test_the_digest_is_stable_and_a_canonical_sha256(campaign):
    first = _digest(campaign)
    assert len(first) == 64 and int(first, 16) >= 0
    assert _digest(campaign) == first
    content = svc.campaign_content(campaign=campaign)
    assert set(content) == {"version", "campaign", "message_type", "recipient_source"}
    assert set(content["campaign"]) == set(svc.CONTENT_FIELDS)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: Campaign.objects.filter(pk=c.pk).update(context={"x": 1}), id="ctx"),
        pytest.param(lambda c: Campaign.objects.filter(pk=c.pk).update(language="fr"), id="lang"),
        pytest.param(
            lambda c: Campaign.objects.filter(pk=c.pk).update(channels=["email", "push"]),
            id="channels",
        ),
        pytest.param(
            lambda c: TemplatePart.objects.filter(
                message_type=c.message_type, filename="body.html"
            ).update(content="<p>phish</p>"),
            id="html-part",
        ),
        pytest.param(
            lambda c: TemplatePart.objects.filter(
                message_type=c.message_type, filename="head.html"
            ).update(content="<style></style>"),
            id="optional-part",
        ),
        pytest.param(
            lambda c: TemplatePartFactory(
                message_type=c.message_type, language="fr", content="Bonjour"
            ),
            id="new-language",
        ),
        pytest.param(
            lambda c: (
                type(c.recipient_source)
                .objects.filter(pk=c.recipient_source_id)
                .update(resolver="user_filter", parameters={"filters": {"is_staff": True}})
            ),
            id="source",
        ),
        pytest.param(
            lambda c: (
                type(c.message_type)
                .objects.filter(pk=c.message_type_id)
                .update(default_language="de")
            ),
            id="type-language",
        ),
    ],
)
def test_everything_that_decides_what_is_sent_changes_the_digest(campaign, change):
    before = _digest(campaign)
    change(campaign)
    assert _digest(campaign) != before


def test_the_sample_context_is_for_previews_and_does_not_change_the_digest(campaign):
    before = _digest(campaign)
    type(campaign.message_type).objects.filter(pk=campaign.message_type_id).update(
        sample_context={"headline": "Other sample"}
    )
    assert _digest(campaign) == before


def test_an_included_template_of_another_message_type_is_covered(operator):
    footer_type = MessageTypeDefinitionFactory(name="footer")
    footer = TemplatePartFactory(
        message_type=footer_type, filename="body.txt", content="Regards, the team"
    )
    main = MessageTypeDefinitionFactory(name="main")
    email_template_parts(
        main,
        body_text='Hi {{ first_name }}. {% include "campaigns/edx_ace/footer/email/body.txt" %}',
    )
    campaign = CampaignFactory(message_type=main, created_by=operator)
    sources = svc.message_type_template_sources(definition=main)
    assert sources["campaigns/edx_ace/footer/email/body.txt"]["database"] == {
        "": "Regards, the team"
    }
    before = _digest(campaign)
    footer.content = "Click here: http://evil.example"
    footer.save()
    assert _digest(campaign) != before


def test_who_matches_the_source_is_not_frozen(operator, email_type):
    """A recurring campaign to a growing list is a use case: the source's definition (resolver
    and parameters) is approved, not its members at that moment."""
    recipients = RecipientListFactory()
    RecipientListEntryFactory(recipient_list=recipients, email="a@example.org")
    source = RecipientSourceFactory(
        resolver="recipient_list", parameters={"recipient_list": recipients.pk}
    )
    campaign = CampaignFactory(
        message_type=email_type, recipient_source=source, created_by=operator
    )
    before = _digest(campaign)
    RecipientListEntryFactory(recipient_list=recipients, email="b@example.org")
    assert _digest(campaign) == before
    other = RecipientListFactory()
    type(source).objects.filter(pk=source.pk).update(parameters={"recipient_list": other.pk})
    assert _digest(campaign) != before


# Who may approve ------------------------------------------------------------------------------


def test_approval_stores_the_digest_approver_and_time(campaign, approver):
    campaign = _approved(campaign, approver)
    assert campaign.approved_by == approver and campaign.approved_at is not None
    assert campaign.approved_digest == _digest(campaign)
    assert svc.campaign_approval_current(campaign=campaign)


def test_the_last_editor_cannot_approve(campaign, approver, operator):
    svc.campaign_update(campaign=campaign, user=approver, context={"headline": "Mine"})
    campaign.refresh_from_db()
    assert campaign.last_edited_by == approver
    with pytest.raises(CampaignError) as info:
        svc.campaign_approve(campaign=campaign, user=approver)
    assert info.value.message == svc.ERROR_APPROVE_OWN_EDIT
    assert Campaign.objects.get(pk=campaign.pk).status == S.DRAFT


@pytest.mark.parametrize("part", ["message_type", "recipient_source"])
def test_the_last_editor_of_its_templates_or_audience_cannot_approve(campaign, approver, part):
    component = getattr(campaign, part)
    type(component).objects.filter(pk=component.pk).update(last_edited_by=approver)
    with pytest.raises(CampaignError, match=r"whose .* you last edited"):
        svc.campaign_approve(campaign=campaign, user=approver)


def test_an_approval_of_other_content_than_reviewed_is_refused(campaign, approver):
    reviewed = _digest(campaign)
    Campaign.objects.filter(pk=campaign.pk).update(context={"headline": "Swapped"})
    with pytest.raises(CampaignError, match="changed after you opened it"):
        svc.campaign_approve(campaign=campaign, user=approver, digest=reviewed)
    svc.campaign_approve(campaign=campaign, user=approver, digest=_digest(campaign))


def test_no_digest_means_no_current_approval(campaign, approver):
    campaign = _approved(campaign, approver)
    Campaign.objects.filter(pk=campaign.pk).update(approved_digest="")
    campaign.refresh_from_db()
    assert not svc.campaign_approval_current(campaign=campaign)


def test_a_change_behind_the_admins_back_makes_the_approval_stale(campaign, approver):
    campaign = _approved(campaign, approver)
    part = TemplatePart.objects.get(message_type=campaign.message_type, filename="subject.txt")
    part.content = "Tampered"
    part.save()  # not through the admin: nothing withdrew the approval
    fresh = Campaign.objects.get(pk=campaign.pk)
    assert fresh.status == S.APPROVED
    assert not svc.campaign_approval_current(campaign=fresh)


# Edits after approval -------------------------------------------------------------------------


def test_an_edit_withdraws_approved_and_scheduled_approvals(email_type, operator, approver):
    approved = _approved(CampaignFactory(message_type=email_type, created_by=operator), approver)
    scheduled = _approved(
        CampaignFactory(
            message_type=email_type,
            created_by=operator,
            schedule_kind=Campaign.ScheduleKind.ONCE,
            scheduled_at=timezone.now() + dt.timedelta(days=1),
        ),
        approver,
    )
    campaign_schedule(campaign=scheduled)
    assert PeriodicTask.objects.filter(name=f"campaign:{scheduled.pk}").exists()
    running = _approved(CampaignFactory(message_type=email_type, created_by=operator), approver)
    Campaign.objects.filter(pk=running.pk).update(status=S.RUNNING)
    draft = CampaignFactory(message_type=email_type, created_by=operator)
    other_type = MessageTypeDefinitionFactory()
    email_template_parts(other_type)
    unrelated = _approved(CampaignFactory(message_type=other_type, created_by=operator), approver)

    editor = StaffUserFactory(username="editor")
    TemplatePart.objects.filter(message_type=email_type, filename="subject.txt").update(
        content="Changed"
    )
    withdrawn = approvals.content_edited(user=editor, message_type=email_type)

    assert sorted(c.pk for c in withdrawn) == sorted([approved.pk, scheduled.pk])
    for campaign in (approved, scheduled):
        campaign.refresh_from_db()
        assert campaign.status == S.DRAFT and campaign.approved_digest == ""
        assert campaign.last_edited_by == editor
    assert not PeriodicTask.objects.filter(name=f"campaign:{scheduled.pk}").exists()
    assert Campaign.objects.get(pk=running.pk).status == S.RUNNING  # locked, not reverted
    draft.refresh_from_db()
    assert draft.status == S.DRAFT and draft.last_edited_by == editor
    assert Campaign.objects.get(pk=unrelated.pk).status == S.APPROVED
    email_type.refresh_from_db()
    assert email_type.last_edited_by == editor


def test_an_unchanged_save_withdraws_nothing(campaign, approver):
    campaign = _approved(campaign, approver)
    other = StaffUserFactory()
    assert (
        approvals.content_edited(user=other, message_type=campaign.message_type, changed=False)
        == []
    )
    campaign.refresh_from_db()
    assert campaign.status == S.APPROVED and campaign.last_edited_by != other


def test_editing_an_included_template_withdraws_the_including_campaigns(operator, approver):
    footer_type = MessageTypeDefinitionFactory(name="footer")
    TemplatePartFactory(message_type=footer_type, filename="body.txt", content="Regards")
    main = MessageTypeDefinitionFactory(name="main")
    email_template_parts(
        main, body_text='Hi. {% include "campaigns/edx_ace/footer/email/body.txt" %}'
    )
    campaign = _approved(CampaignFactory(message_type=main, created_by=operator), approver)
    TemplatePart.objects.filter(message_type=footer_type).update(content="Evil")
    withdrawn = approvals.content_edited(user=operator, message_type=footer_type)
    assert [c.pk for c in withdrawn] == [campaign.pk]


def test_an_audience_edit_withdraws_campaigns_sent_to_it(campaign, approver, operator):
    campaign = _approved(campaign, approver)
    group = Group.objects.create(name="few")
    source = campaign.recipient_source
    source.resolver, source.parameters = "group_members", {"group": group.pk}
    source.save()
    withdrawn = approvals.content_edited(user=operator, recipient_source=source)
    assert [c.pk for c in withdrawn] == [campaign.pk]
    assert Campaign.objects.get(pk=campaign.pk).status == S.DRAFT


def test_return_to_draft_is_only_for_approved_campaigns(campaign, approver):
    campaign = _approved(campaign, approver)
    campaign_schedule(campaign=campaign)
    with pytest.raises(CampaignError, match="is scheduled; it can't become draft"):
        svc.campaign_return_to_draft(campaign=campaign, user=approver)


# A run starts only with a current approval ------------------------------------------------------


def _scheduled(campaign, approver):
    campaign = _approved(campaign, approver)
    Campaign.objects.filter(pk=campaign.pk).update(status=S.SCHEDULED)
    return campaign


def test_a_run_starts_while_the_approval_covers_the_content(campaign, approver, enqueued):
    from campaigns.services.runs import run_start

    campaign = _scheduled(campaign, approver)
    assert run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))


def test_a_run_does_not_start_when_the_content_changed_after_approval(campaign, approver, enqueued):
    from campaigns.models import CampaignRun
    from campaigns.services.runs import run_start

    campaign = _scheduled(campaign, approver)
    TemplatePart.objects.filter(message_type=campaign.message_type, filename="subject.txt").update(
        content="Tampered"
    )
    assert run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0)) is None
    assert not CampaignRun.objects.filter(campaign=campaign).exists()


def test_a_scheduled_campaign_changed_behind_its_approval_goes_back_to_draft_at_run_start(
    campaign, approver, enqueued
):
    from campaigns.models import Campaign
    from campaigns.services.runs import run_start

    campaign = _scheduled(campaign, approver)
    TemplatePart.objects.filter(message_type=campaign.message_type, filename="subject.txt").update(
        content="Tampered"
    )
    assert run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0)) is None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.periodic_task is None
