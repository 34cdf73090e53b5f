"""Campaigns in the admin: compose with validation, approval by a second user, edits, preview,
test send, dry run, runs with progress, and permissions checked on the server."""

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from tests.campaigns.admin.helpers import admin_form_data, messages_of
from tests.campaigns.factories import (
    CampaignFactory,
    CampaignRunFactory,
    MessageTypeDefinitionFactory,
    RecipientSourceFactory,
    UserFactory,
    email_template_parts,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

ADD_URL = reverse("admin:campaigns_campaign_add")
S = Campaign.Status


def url(name, campaign):
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk])


@pytest.fixture
def source(db):
    return RecipientSourceFactory(name="everyone", resolver="all_active_users")


@pytest.fixture
def campaign(email_type, source, operator):
    return CampaignFactory(
        name="Spring",
        message_type=email_type,
        recipient_source=source,
        created_by=operator,
        context={"headline": "Spring is here"},
    )


def _add(client, **overrides):
    page = client.get(ADD_URL)
    assert page.status_code == 200
    return client.post(ADD_URL, admin_form_data(page, **overrides))


def _form_errors(response) -> dict:
    return response.context["adminform"].form.errors


def _valid(email_type, source, **extra):
    data = {
        "name": "Spring",
        "message_type": str(email_type.pk),
        "recipient_source": str(source.pk),
        "context": '{"headline": "Spring"}',
        "channels": ["email"],
        "schedule_kind": "now",
        "time_zone": "UTC",
    }
    data.update(extra)
    return data


def test_operator_composes_a_draft(client, operator, email_type, source):
    client.force_login(operator)
    response = _add(client, **_valid(email_type, source))
    assert response.status_code == 302, _form_errors(response)
    campaign = Campaign.objects.get(name="Spring")
    assert campaign.status == S.DRAFT
    assert campaign.created_by == operator
    assert campaign.context == {"headline": "Spring"}
    assert campaign.channels == ["email"]


def test_compose_warns_about_variables_nobody_provides(client, operator, source):
    definition = MessageTypeDefinitionFactory(name="promo")
    email_template_parts(definition, subject="{{ headline }} {{ promo_code }} {{ first_name }}")
    client.force_login(operator)
    response = client.post(
        ADD_URL,
        admin_form_data(client.get(ADD_URL), **_valid(definition, source)),
        follow=True,
    )
    texts = messages_of(response)
    # first_name comes from the recipients, headline from the context: only promo_code is missing.
    assert any("promo_code" in t and "render blank" in t for t in texts), texts
    assert not any("first_name" in t or "headline" in t for t in texts if "render blank" in t)


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"context": "[1, 2]"}, "context", "Must be a JSON object"),
        ({"context": "{not json"}, "context", "Enter a valid JSON"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "Unknown time zone"),
        ({"channels": ["fax"]}, "channels", "Select a valid choice"),
        ({"channels": []}, "channels", "required"),
        ({"schedule_kind": "crontab", "crontab": "61 * * * *"}, "crontab", "Invalid crontab"),
        ({"schedule_kind": "crontab", "crontab": "0 9 * *"}, "crontab", "five fields"),
        ({"schedule_kind": "interval", "interval_seconds": "5"}, "interval_seconds", "at least"),
        ({"schedule_kind": "once"}, "scheduled_at", "needs a date and time"),
        (
            {"schedule_kind": "once", "scheduled_at_0": "2001-01-01", "scheduled_at_1": "09:00"},
            "scheduled_at",
            "in the past",
        ),
    ],
)
def test_bad_input_is_refused_on_the_field(
    client, operator, email_type, source, overrides, field, text
):
    client.force_login(operator)
    response = _add(client, **_valid(email_type, source, **overrides))
    assert response.status_code == 200
    errors = _form_errors(response)
    assert field in errors, errors
    assert text in " ".join(errors[field]), errors[field]
    assert not Campaign.objects.exists()


def test_channel_without_templates_is_refused(client, operator, source):
    empty = MessageTypeDefinitionFactory(name="empty")
    client.force_login(operator)
    response = _add(client, **_valid(empty, source))
    assert "has no email templates" in " ".join(_form_errors(response)["channels"])


def test_scheduled_time_is_read_in_the_campaign_time_zone(client, operator, email_type, source):
    client.force_login(operator)
    next_year = timezone.now().year + 1
    response = _add(
        client,
        **_valid(
            email_type,
            source,
            schedule_kind="once",
            scheduled_at_0=f"{next_year}-01-15",
            scheduled_at_1="09:00:00",
            time_zone="Europe/Paris",
        ),
    )
    assert response.status_code == 302, _form_errors(response)
    campaign = Campaign.objects.get()
    assert campaign.scheduled_at == dt.datetime(next_year, 1, 15, 8, 0, tzinfo=dt.UTC)
    # Shown back in Paris time, so saving again does not shift it.
    page = client.get(url("change", campaign))
    assert page.context["adminform"].form["scheduled_at"].value() == dt.datetime(
        next_year, 1, 15, 9, 0
    )
    client.post(url("change", campaign), admin_form_data(page))
    campaign.refresh_from_db()
    assert campaign.scheduled_at == dt.datetime(next_year, 1, 15, 8, 0, tzinfo=dt.UTC)


def test_approval_needs_permission_server_side(client, operator, other_operator, campaign):
    client.force_login(other_operator)
    assert client.post(url("approve", campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT


def test_approver_cannot_approve_own_campaign(client, approver, email_type, source):
    own = CampaignFactory(message_type=email_type, recipient_source=source, created_by=approver)
    client.force_login(approver)
    response = client.post(url("approve", own), follow=True)
    assert any("can't approve a campaign you created" in m for m in messages_of(response))
    own.refresh_from_db()
    assert own.status == S.DRAFT


def test_second_user_approves(client, approver, campaign):
    client.force_login(approver)
    page = client.get(url("change", campaign))
    assert "Approve</button>" in page.content.decode()
    response = client.post(url("approve", campaign), follow=True)
    assert any("is approved" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == S.APPROVED and campaign.approved_by == approver


def test_approve_button_hidden_without_permission(client, operator, campaign):
    client.force_login(operator)
    page = client.get(url("change", campaign))
    assert "Approve</button>" not in page.content.decode()


def test_approve_action_needs_permission(client, operator, approver, campaign):
    changelist = reverse("admin:campaigns_campaign_changelist")
    data = {"action": "approve_selected", "_selected_action": [campaign.pk]}
    client.force_login(operator)
    action_form = client.get(changelist).context["action_form"]
    assert action_form is None or "approve_selected" not in dict(
        action_form.fields["action"].choices
    )
    client.post(changelist, data)
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT
    client.force_login(approver)
    response = client.post(changelist, data, follow=True)
    assert any("1 campaign approved" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == S.APPROVED


def test_editing_approved_campaign_sends_it_back_to_draft(client, operator, approver, campaign):
    client.force_login(approver)
    client.post(url("approve", campaign))
    client.force_login(operator)
    page = client.get(url("change", campaign))
    response = client.post(
        url("change", campaign),
        admin_form_data(page, context='{"headline": "Changed"}'),
        follow=True,
    )
    assert any("sent it back to draft" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT and campaign.approved_by is None


def test_running_campaign_is_read_only(client, operator, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status=S.RUNNING)
    client.force_login(operator)
    page = client.get(url("change", campaign))
    assert page.status_code == 200
    assert "name" not in page.context["adminform"].form.fields
    response = client.post(url("change", campaign), {"name": "Renamed", "context": "{}"})
    campaign.refresh_from_db()
    assert campaign.name == "Spring"
    assert response.status_code in (200, 302)


def test_preview_uses_first_recipient_and_reports_missing(client, operator, campaign):
    UserFactory(username="aaa", email="first@example.org", first_name="Zed")
    client.force_login(operator)
    response = client.get(url("preview", campaign))
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.recipient.key.startswith("user:")
    channel = preview.channels[0]
    assert channel.fields["subject"].startswith("Spring is here for ")
    assert channel.missing == []
    assert 'sandbox=""' in response.content.decode()
    # Without the shared context, the headline is reported missing.
    Campaign.objects.filter(pk=campaign.pk).update(context={})
    missing = client.get(url("preview", campaign)).context["preview"].channels[0].missing
    assert missing == ["headline"]


def test_preview_of_a_chosen_sample_recipient(client, operator, campaign):
    other = UserFactory(first_name="Chosen")
    client.force_login(operator)
    response = client.get(url("preview", campaign), {"sample": f"user:{other.pk}"})
    assert response.context["preview"].recipient.user_id == other.pk
    assert "Chosen" in response.context["preview"].channels[0].fields["subject"]


def test_campaign_test_send(client, operator, auditor, campaign):
    client.force_login(auditor)
    assert client.post(url("test_send", campaign)).status_code == 403
    assert mail.outbox == []
    client.force_login(operator)
    response = client.post(url("test_send", campaign), follow=True)
    assert [m.to for m in mail.outbox] == [[operator.email]]
    assert mail.outbox[0].subject == f"[TEST] Spring is here for {operator.first_name}"
    assert any("Test sent to" in m for m in messages_of(response))


def test_test_send_reports_policy_denial(client, operator, campaign):
    from tests.campaigns.factories import OptOutFactory

    OptOutFactory(email=operator.email)
    client.force_login(operator)
    response = client.post(url("test_send", campaign), follow=True)
    assert mail.outbox == []
    assert any("not sent" in m and "denied" in m for m in messages_of(response))


def test_dry_run_page(client, operator, campaign):
    from tests.campaigns.factories import OptOutFactory

    users = UserFactory.create_batch(3)
    OptOutFactory(email=users[0].email)
    client.force_login(operator)
    response = client.get(url("dry_run", campaign))
    assert response.status_code == 200
    report = response.context["report"]
    assert report.audience >= 3
    assert report.channels["email"].denied >= 1
    html = response.content.decode()
    assert "Would reach" in html and "campaigns_optout" in html


def test_runs_shown_with_counts_and_progress(client, auditor, campaign):
    CampaignRunFactory(campaign=campaign, status="running", total=200, sent=90, failed=10)
    client.force_login(auditor)
    page = client.get(url("change", campaign))
    assert page.status_code == 200
    html = page.content.decode()
    # The dispatch mixin's live progress bar.
    assert '<progress value="50' in html
    assert "(100 / 200)" in html
    assert "run__id__exact" in html


def test_auditor_cannot_add_or_change(client, auditor, campaign, email_type, source):
    client.force_login(auditor)
    assert client.get(ADD_URL).status_code == 403
    response = client.post(url("change", campaign), _valid(email_type, source, name="Hacked"))
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.name == "Spring"
