"""Resolver plugins: the entry points, developer plugins, the resolver of a source
(campaigns/resolvers/plugins.py)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from stevedore import ExtensionManager
from stevedore.extension import Extension

from campaigns import resolvers
from campaigns.resolvers import (
    AllActiveUsersResolver,
    GroupMembersResolver,
    RecipientListResolver,
    UserFilterResolver,
    available_resolvers,
    resolver_for_source,
)
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


def test_entry_points_declare_the_four_builtins():
    assert available_resolvers() == {
        "all_active_users": AllActiveUsersResolver,
        "group_members": GroupMembersResolver,
        "recipient_list": RecipientListResolver,
        "user_filter": UserFilterResolver,
    }


def test_resolver_for_source_validates_again_and_reports_unknown_resolvers():
    group = f.GroupFactory()
    source = f.RecipientSourceFactory(resolver="group_members", parameters={"group": group.pk})
    assert isinstance(resolver_for_source(source), GroupMembersResolver)
    group.delete()
    with pytest.raises(ValidationError, match="group: Select a valid choice"):
        resolver_for_source(source)
    source.resolver = "nope"
    with pytest.raises(ValidationError, match="Unknown recipient resolver 'nope'"):
        resolver_for_source(source)


class StaffOnlyResolver(resolvers.UserResolver):
    """A developer's plugin: active staff."""

    label = "Staff"

    def users(self):
        return super().users().filter(is_staff=True)


def _plugins_with_staff():
    builtins = [Extension(name, None, cls, None) for name, cls in available_resolvers().items()]
    extra = Extension("staff_only", None, StaffOnlyResolver, None)
    return ExtensionManager.make_test_instance([*builtins, extra], namespace=resolvers.NAMESPACE)


def test_a_plugin_subclass_is_found_through_entry_points():
    manager = _plugins_with_staff()
    resolvers.available_resolvers.cache_clear()
    with mock.patch.object(resolvers.plugins, "ExtensionManager", return_value=manager):
        found = available_resolvers()
        assert found["staff_only"] is StaffOnlyResolver
        assert ("staff_only", "Staff") in resolvers.resolver_choices()
        staff = f.UserFactory(is_staff=True)
        f.UserFactory()
        source = f.RecipientSourceFactory(resolver="staff_only")
        assert [r.user_id for r in resolver_for_source(source).iter_recipients()] == [staff.pk]


def test_a_plugin_that_is_not_a_campaign_resolver_is_ignored():
    manager = ExtensionManager.make_test_instance(
        [Extension("bogus", None, object, None)], namespace=resolvers.NAMESPACE
    )
    resolvers.available_resolvers.cache_clear()
    with mock.patch.object(resolvers.plugins, "ExtensionManager", return_value=manager):
        assert available_resolvers() == {}
