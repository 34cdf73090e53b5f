"""All active users and group members (campaigns/resolvers/users.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.resolvers import AllActiveUsersResolver, GroupMembersResolver, ResolvedRecipient
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


def test_all_active_users_skips_inactive_and_builds_user_recipients():
    alice = f.UserFactory(first_name="Alice", last_name="A", email="Alice@Example.org")
    f.UserFactory(is_active=False)
    bob = f.UserFactory()
    resolver = AllActiveUsersResolver({})
    assert resolver.count() == 2
    recipients = resolver.preview()
    assert [r.user_id for r in recipients] == [alice.pk, bob.pk]
    assert recipients[0] == ResolvedRecipient(
        key=f"user:{alice.pk}",
        user_id=alice.pk,
        email="Alice@Example.org",
        context={"first_name": "Alice", "last_name": "A", "username": alice.username},
    )


def test_group_members_resolves_active_members_only():
    members = f.UserFactory.create_batch(2)
    inactive = f.UserFactory(is_active=False)
    group = f.GroupFactory(members=[*members, inactive])
    f.UserFactory()  # not a member
    params = GroupMembersResolver.clean_parameters({"group": group.pk})
    assert params == {"group": group.pk}
    resolver = GroupMembersResolver(params)
    assert resolver.count() == 2
    assert [r.user_id for r in resolver.iter_recipients()] == [u.pk for u in members]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "group: This field is required."),
        ({"group": 987654}, "group: Select a valid choice."),
        ({"group": "staff"}, "group: Select a valid choice."),
    ],
)
def test_group_members_parameter_errors_name_the_parameter(parameters, message):
    with pytest.raises(ValidationError) as exc:
        GroupMembersResolver.clean_parameters(parameters)
    assert any(m.startswith(message) for m in exc.value.messages), exc.value.messages
