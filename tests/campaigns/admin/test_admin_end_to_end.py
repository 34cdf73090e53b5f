"""The operator's whole path in the admin alone: define a message type, switch a policy, compose
a campaign, preview it, test-send it, have a second user approve it, send it, then read and
export its delivery log as an auditor."""

import csv
import io

import pytest
from django.core import mail
from django.urls import reverse

from campaigns.models import (
    Campaign,
    Delivery,
    MessageTypeDefinition,
    PolicyToggle,
    RecipientSource,
)
from tests.campaigns.admin.helpers import admin_form_data, inline_prefixes, messages_of
from tests.campaigns.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]


def _post_form(client, url, **overrides):
    page = client.get(url)
    assert page.status_code == 200, url
    response = client.post(url, admin_form_data(page, **overrides))
    errors = response.context and response.context.get("errors")
    assert response.status_code == 302, errors
    return response


def test_operator_to_auditor_in_the_admin(
    client, operator, approver, auditor, django_capture_on_commit_callbacks
):
    readers = UserFactory.create_batch(3)
    client.force_login(operator)

    # 1. A message type with email templates, English fallback and a French subject.
    add_type = reverse("admin:campaigns_messagetypedefinition_add")
    email = inline_prefixes(client.get(add_type))[0]
    _post_form(
        client,
        add_type,
        name="spring-news",
        sample_context='{"headline": "Sample"}',
        **{
            f"{email}-0-content": "{{ headline }}",
            f"{email}-1-content": "Hello {{ first_name }}, {{ headline }}",
            f"{email}-2-content": "<p>Hello {{ first_name }}</p><p>{{ headline }}</p>",
            f"{email}-TOTAL_FORMS": "4",
            f"{email}-3-channel": "email",
            f"{email}-3-filename": "subject.txt",
            f"{email}-3-language": "fr",
            f"{email}-3-content": "Nouvelles : {{ headline }}",
        },
    )
    definition = MessageTypeDefinition.objects.get(name="spring-news")

    # 2. Switch a policy off for this message type.
    _post_form(
        client,
        reverse("admin:campaigns_policytoggle_add"),
        policy="campaigns_expiry",
        message_type=str(definition.pk),
        enabled=None,
        parameters="{}",
    )
    assert (
        PolicyToggle.objects.get(policy="campaigns_expiry", message_type=definition).enabled
        is False
    )

    # 3. An audience and a campaign.
    _post_form(
        client,
        reverse("admin:campaigns_recipientsource_add"),
        name="Everyone",
        resolver="all_active_users",
        parameters="{}",
    )
    _post_form(
        client,
        reverse("admin:campaigns_campaign_add"),
        name="Spring",
        message_type=str(definition.pk),
        recipient_source=str(RecipientSource.objects.get(name="Everyone").pk),
        context='{"headline": "Spring is here"}',
        channels=["email"],
        schedule_kind="now",
        time_zone="Europe/Paris",
    )
    campaign = Campaign.objects.get(name="Spring")

    def url(name, *args):
        return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk, *args])

    # 4. Preview: nothing missing; 5. test send to the operator.
    preview = client.get(url("preview")).context["preview"]
    assert preview.missing == []
    assert client.post(url("test_send")).status_code == 302
    assert [m.to for m in mail.outbox] == [[operator.email]]
    mail.outbox.clear()

    # 6. The operator can't approve; a second user can.
    assert client.post(url("approve")).status_code == 403
    client.force_login(approver)
    client.post(url("approve"))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.APPROVED

    # 7. The operator sends it now (dispatch's button; eager Celery runs the tasks).
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("dispatch", "schedule"), follow=True)
    assert not [m for m in messages_of(response) if "error" in m.lower()]
    recipients = {u.email for u in [operator, approver, auditor, *readers]}
    sent_to = {m.to[0] for m in mail.outbox}
    assert recipients <= sent_to
    assert all("List-Unsubscribe" in m.extra_headers for m in mail.outbox)

    # 8. An auditor reads and exports the log of that campaign.
    client.force_login(auditor)
    log = client.get(
        reverse("admin:campaigns_delivery_changelist"), {"run__campaign__id__exact": campaign.pk}
    )
    assert log.status_code == 200
    deliveries = Delivery.objects.filter(run__campaign=campaign)
    assert deliveries.count() == len(sent_to)
    export_url = (
        reverse("admin:campaigns_delivery_export") + f"?run__campaign__id__exact={campaign.pk}"
    )
    form = client.get(export_url).context["form"]
    data = {"format": "0", "resource": "0"}
    data.update({name: "on" for name in form.fields if name.startswith("deliveryresource_")})
    exported = client.post(export_url, data)
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert {row["email"] for row in rows} == sent_to
    assert {row["status"] for row in rows} == {"sent"}
    assert {row["campaign"] for row in rows} == {"Spring"}
