"""Admin of policy toggles and opt-outs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import OptOut, PolicyToggle
from tests.campaigns import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_plugins")]


def test_toggle_policy_field_lists_installed_plugins(admin_client):
    response = admin_client.get(reverse("admin:campaigns_policytoggle_add"))
    choices = dict(response.context["adminform"].form.fields["policy"].choices)
    assert set(choices) == {
        "campaigns_optout",
        "campaigns_expiry",
        "campaigns_frequency_cap",
        "campaigns_quiet_hours",
        "campaigns_suppression",
    }


def test_toggle_parameters_are_validated_per_policy(admin_client):
    url = reverse("admin:campaigns_policytoggle_add")
    bad = admin_client.post(
        url,
        {
            "policy": "campaigns_quiet_hours",
            "enabled": "on",
            "parameters": '{"start_hour": 30, "end_hour": 8}',
        },
    )
    errors = bad.context["adminform"].form.errors
    assert any("start_hour:" in m for m in errors["parameters"])
    assert not PolicyToggle.objects.exists()

    digest = f.MessageTypeDefinitionFactory()
    good = admin_client.post(
        url,
        {
            "policy": "campaigns_quiet_hours",
            "message_type": digest.pk,
            "enabled": "on",
            "parameters": '{"start_hour": 22, "end_hour": 7}',
        },
    )
    assert good.status_code == 302
    toggle = PolicyToggle.objects.get()
    assert toggle.message_type == digest
    assert toggle.parameters["start_hour"] == 22
    assert toggle.parameters["channels"] == ["email", "push"]  # default filled in


def test_toggle_actions_switch_policies_and_report_counts(admin_client):
    toggle = f.PolicyToggleFactory(policy="campaigns_expiry", enabled=True)
    response = admin_client.post(
        reverse("admin:campaigns_policytoggle_changelist"),
        {"action": "disable_toggles", "_selected_action": [toggle.pk]},
        follow=True,
    )
    assert "1 toggle disabled." in response.content.decode()
    toggle.refresh_from_db()
    assert toggle.enabled is False


def test_optout_added_in_the_admin_is_normalised_and_linked(admin_client):
    user = f.UserFactory(email="pat@example.org")
    response = admin_client.post(
        reverse("admin:campaigns_optout_add"), {"email": "Pat@Example.org", "message_type": ""}
    )
    assert response.status_code == 302
    optout = OptOut.objects.get()
    assert (optout.email, optout.user, optout.message_type) == ("pat@example.org", user, None)
    listing = admin_client.get(reverse("admin:campaigns_optout_changelist"))
    assert "Everything" in listing.content.decode()
