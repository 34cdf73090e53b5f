"""Roles do what they say (V5), with the real role accounts: Auditors read and export the
delivery log and nothing else -- no preview (it shows any user's address and context), no test
send, no dry run, no edit; Operators and Approvers preview, only Operators test-send; and no
preview ever carries a working unsubscribe link."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from campaigns.admin.previews import PLACEHOLDER_TOKEN
from campaigns.models import Campaign, OptOut
from tests.campaigns.admin.helpers import admin_form_data
from tests.campaigns.factories import (
    CampaignFactory,
    DeliveryFactory,
    MessageTypeDefinitionFactory,
    RecipientSourceFactory,
    UserFactory,
    email_template_parts,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

UNSUBSCRIBE_LINK = re.compile(r"https?://[^\s\"'<>]*/unsubscribe/[^\s\"'<>/]+/")


def url(name, obj):
    return reverse(f"admin:campaigns_{obj._meta.model_name}_{name}", args=[obj.pk])


@pytest.fixture
def victim(db):
    return UserFactory(username="victim", email="victim@example.org", first_name="Vic")


@pytest.fixture
def linked_type(db):
    """A message type whose text body prints the unsubscribe link."""
    definition = MessageTypeDefinitionFactory(name="with-link", sample_context={"headline": "H"})
    email_template_parts(
        definition,
        body_text="Hello {{ first_name }}. Unsubscribe: {{ unsubscribe_url }}",
        body_html='<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    )
    return definition


@pytest.fixture
def campaign(linked_type, operator):
    return CampaignFactory(
        name="Spring",
        message_type=linked_type,
        recipient_source=RecipientSourceFactory(resolver="all_active_users"),
        created_by=operator,
        context={"headline": "Spring"},
    )


# Auditors -------------------------------------------------------------------------------------


def test_an_auditor_cannot_preview_a_message_type_for_another_user(
    client, auditor, linked_type, victim
):
    client.force_login(auditor)
    response = client.get(url("preview", linked_type), {"recipient": victim.pk})
    assert response.status_code == 403
    assert victim.email not in response.content.decode()


def test_an_auditor_cannot_preview_dry_run_or_test_send_a_campaign(
    client, auditor, campaign, linked_type, victim
):
    client.force_login(auditor)
    assert client.get(url("preview", campaign), {"recipient": victim.pk}).status_code == 403
    assert client.get(url("dry_run", campaign)).status_code == 403
    assert client.post(url("test_send", campaign)).status_code == 403
    assert client.post(url("test_send", linked_type)).status_code == 403
    assert mail.outbox == []


def test_an_auditor_is_offered_no_preview_dry_run_or_test_send(client, auditor, campaign):
    client.force_login(auditor)
    for page in (
        client.get(url("change", campaign)),
        client.get(url("change", campaign.message_type)),
    ):
        assert page.status_code == 200
        html = page.content.decode()
        assert "/preview/" not in html and "/dry-run/" not in html and "/test-send/" not in html


def test_an_auditor_cannot_edit_approve_or_withdraw(client, auditor, campaign, linked_type):
    client.force_login(auditor)
    assert client.post(url("approve", campaign)).status_code == 403
    assert client.post(url("return_to_draft", campaign)).status_code == 403
    assert client.get(reverse("admin:campaigns_messagetypedefinition_add")).status_code == 403
    assert client.post(url("change", linked_type), {"name": "hacked"}).status_code == 403
    assert client.get(reverse("admin:campaigns_recipientsource_changelist")).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    linked_type.refresh_from_db()
    assert linked_type.name == "with-link"


def test_an_auditor_reads_and_exports_the_delivery_log(client, auditor):
    DeliveryFactory(email="logged@example.org")
    client.force_login(auditor)
    listing = client.get(reverse("admin:campaigns_delivery_changelist"))
    assert listing.status_code == 200 and "logged@example.org" in listing.content.decode()
    export_url = reverse("admin:campaigns_delivery_export")
    form = client.get(export_url).context["form"]
    data = {"format": "0", "resource": "0"}
    data.update({name: "on" for name in form.fields if name.startswith("deliveryresource_")})
    export = client.post(export_url, data)
    assert export.status_code == 200
    body = b"".join(export.streaming_content) if export.streaming else export.content
    assert b"logged@example.org" in body


# Operators and Approvers ----------------------------------------------------------------------


def test_approvers_preview_and_dry_run_but_do_not_test_send(client, approver, campaign):
    client.force_login(approver)
    assert client.get(url("preview", campaign)).status_code == 200
    assert client.get(url("preview", campaign.message_type)).status_code == 200
    assert client.get(url("dry_run", campaign)).status_code == 200
    page = client.get(url("change", campaign)).content.decode()
    assert "/preview/" in page and "/test-send/" not in page
    assert client.post(url("test_send", campaign)).status_code == 403
    assert mail.outbox == []


def test_a_staff_user_without_a_role_cannot_preview(client, bare_staff, campaign, victim):
    client.force_login(bare_staff)
    assert client.get(
        url("preview", campaign.message_type), {"recipient": victim.pk}
    ).status_code in (
        302,
        403,
    )
    assert not OptOut.objects.exists()


# No live unsubscribe link in a preview ------------------------------------------------------


def _links(response) -> list[str]:
    return sorted(set(UNSUBSCRIBE_LINK.findall(response.content.decode())))


@pytest.mark.parametrize("what", ["message_type", "campaign"])
def test_a_preview_for_another_user_carries_only_a_placeholder_link(
    client, operator, campaign, victim, what
):
    client.force_login(operator)
    target = campaign.message_type if what == "message_type" else campaign
    response = client.get(url("preview", target), {"recipient": victim.pk})
    assert response.status_code == 200
    assert f"For {victim.email}" in response.content.decode()  # operators compose: they may
    links = _links(response)
    assert links, "the template prints the unsubscribe link"
    assert all(f"/unsubscribe/{PLACEHOLDER_TOKEN}/" in link for link in links), links
    preview = response.context["preview"]
    assert f"/unsubscribe/{PLACEHOLDER_TOKEN}/" in preview.channels[0].fields["body"]
    headers = preview.message.options.get("headers") or {}
    assert PLACEHOLDER_TOKEN in headers.get("List-Unsubscribe", PLACEHOLDER_TOKEN)
    # Following it (as a one-click POST or a visit) opts nobody out.
    for link in links:
        path = link.split("://", 1)[1].split("/", 1)[1]
        client.post("/" + path)
        client.get("/" + path)
    assert not OptOut.objects.filter(email__iexact=victim.email).exists()


def test_the_test_send_still_signs_the_operators_own_link(client, operator, campaign):
    client.force_login(operator)
    client.post(url("test_send", campaign))
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [operator.email]
    assert PLACEHOLDER_TOKEN not in mail.outbox[0].body


def test_an_operator_edit_page_still_works(client, operator, linked_type):
    """Operators keep composing (regression guard for the role checks)."""
    client.force_login(operator)
    page = client.get(url("change", linked_type))
    assert page.status_code == 200
    response = client.post(url("change", linked_type), admin_form_data(page, description="New"))
    assert response.status_code == 302
    linked_type.refresh_from_db()
    assert linked_type.description == "New" and linked_type.last_edited_by == operator


# The groups -----------------------------------------------------------------------------------


def test_preview_is_granted_to_the_composing_and_approving_roles_only(operator, approver, auditor):
    for perm in ("campaigns.preview_campaign", "campaigns.preview_messagetypedefinition"):
        assert operator.has_perm(perm) and approver.has_perm(perm)
        assert not auditor.has_perm(perm)
    assert operator.has_perm("campaigns.test_send_campaign")
    assert not approver.has_perm("campaigns.test_send_campaign")
    assert not approver.has_perm("campaigns.test_send_messagetypedefinition")
    assert not auditor.has_perm("campaigns.test_send_campaign")


def test_the_early_groups_migration_skips_permissions_made_later(db):
    """0003_groups calls setup_groups before 0005 creates the preview permissions."""
    from django.contrib.auth.models import Group, Permission
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from campaigns.permissions import setup_groups

    Permission.objects.filter(codename="preview_campaign").delete()
    setup_groups(Group, Permission)  # no LookupError
    with pytest.raises(CommandError, match=r"campaigns\.preview_campaign does not exist"):
        call_command("setup_groups")
