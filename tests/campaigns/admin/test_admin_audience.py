"""Admin of recipient sources (recipient list import and export: tests/campaigns/audience/
test_recipient_import.py)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse
from stevedore import ExtensionManager
from stevedore.extension import Extension

from campaigns import resolvers
from campaigns.models import RecipientSource
from tests.campaigns import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_plugins")]


def test_source_add_validates_parameters_through_the_resolver_form(admin_client):
    url = reverse("admin:campaigns_recipientsource_add")
    response = admin_client.post(
        url, {"name": "Staff", "resolver": "group_members", "parameters": '{"group": 999}'}
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "group: Select a valid choice." in errors["parameters"][0]
    assert not RecipientSource.objects.exists()

    response = admin_client.post(
        url,
        {
            "name": "Recent",
            "resolver": "user_filter",
            "parameters": '{"filters": {"groups__name": "x"}}',
        },
    )
    assert (
        "'groups__name' is not an allowed lookup"
        in response.context["adminform"].form.errors["parameters"][0]
    )

    group = f.GroupFactory()
    response = admin_client.post(
        url,
        {"name": "Staff", "resolver": "group_members", "parameters": f'{{"group": {group.pk}}}'},
    )
    assert response.status_code == 302
    assert RecipientSource.objects.get().parameters == {"group": group.pk}


def test_source_page_shows_the_count_and_the_first_recipients(admin_client):
    members = f.UserFactory.create_batch(25)
    group = f.GroupFactory(members=members)
    source = f.RecipientSourceFactory(resolver="group_members", parameters={"group": group.pk})
    response = admin_client.get(reverse("admin:campaigns_recipientsource_change", args=[source.pk]))
    body = response.content.decode()
    assert "<strong>25</strong> recipients. First 20:" in body
    assert members[0].email in body and members[19].email in body
    assert members[20].email not in body


def test_source_page_explains_an_audience_that_cannot_resolve(admin_client):
    source = f.RecipientSourceFactory(resolver="group_members", parameters={"group": 4242})
    response = admin_client.get(reverse("admin:campaigns_recipientsource_change", args=[source.pk]))
    assert "Cannot resolve: group: Select a valid choice." in response.content.decode()


class VipResolver(resolvers.UserResolver):
    """A developer's plugin."""

    label = "VIP customers"


def test_resolver_plugins_appear_in_the_admin_choices(admin_client):
    builtins = [Extension(n, None, c, None) for n, c in resolvers.available_resolvers().items()]
    manager = ExtensionManager.make_test_instance(
        [*builtins, Extension("vip", None, VipResolver, None)], namespace=resolvers.NAMESPACE
    )
    resolvers.available_resolvers.cache_clear()
    with mock.patch.object(resolvers.plugins, "ExtensionManager", return_value=manager):
        response = admin_client.get(reverse("admin:campaigns_recipientsource_add"))
        choices = dict(response.context["adminform"].form.fields["resolver"].choices)
        assert choices["vip"] == "VIP customers"
        assert choices["user_filter"] == "Users matching a filter"
        assert "<code>vip</code>" in response.content.decode()


def test_sources_changelist(admin_client):
    f.RecipientSourceFactory(name="Everyone")
    response = admin_client.get(reverse("admin:campaigns_recipientsource_changelist"))
    assert response.status_code == 200 and "Everyone" in response.content.decode()


IMPORT_URL = reverse("admin:campaigns_recipientlistentry_import")
EXPORT_URL = reverse("admin:campaigns_recipientlistentry_export")


@pytest.mark.parametrize("who", ["auditor", "approver", "bare_staff"])
def test_only_who_may_add_or_view_entries_imports_or_exports_them(client, request, who):
    """import-export allows both to every staff user unless told otherwise: an auditor could
    export every address, or import into any list."""
    rlist = f.RecipientListFactory()
    f.RecipientListEntryFactory(recipient_list=rlist)
    client.force_login(request.getfixturevalue(who))
    assert client.get(IMPORT_URL).status_code == 403
    upload = {"recipient_list": rlist.pk, "resource": "0", "format": "0"}
    assert client.post(IMPORT_URL, upload).status_code == 403
    assert client.get(EXPORT_URL).status_code == 403
    assert client.post(EXPORT_URL, {"format": "0", "resource": "0"}).status_code == 403


def test_operators_import_and_export_entries(client, operator):
    client.force_login(operator)
    assert client.get(IMPORT_URL).status_code == 200
    assert client.get(EXPORT_URL).status_code == 200
