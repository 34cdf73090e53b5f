"""Recipient resolvers: built-ins, keyset chunks, one-query loading, parameters, plugins."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone
from stevedore import ExtensionManager
from stevedore.extension import Extension

from ace.message import MessageType
from campaigns import resolvers
from campaigns.resolvers import (
    AllActiveUsersResolver,
    CampaignRecipientResolver,
    GroupMembersResolver,
    RecipientListResolver,
    ResolvedRecipient,
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


def test_keyset_chunks_cover_the_audience_once_in_id_order(django_assert_num_queries):
    users = f.UserFactory.create_batch(7)
    f.UserFactory(is_active=False)
    resolver = AllActiveUsersResolver({})
    # One query per chunk, plus the last (short) chunk ends the walk without another query.
    with django_assert_num_queries(3):
        chunks = list(resolver.iter_id_chunks(chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [i for c in chunks for i in c] == [u.pk for u in users]
    # Resuming after a cursor continues from the next id.
    assert list(resolver.iter_id_chunks(after=users[4].pk, chunk_size=10)) == [
        [users[5].pk, users[6].pk]
    ]


def test_keyset_query_filters_on_id_and_never_offsets():
    f.UserFactory.create_batch(3)
    resolver = AllActiveUsersResolver({})
    queries = []
    from django.db import connection

    with mock.patch.object(connection, "force_debug_cursor", True):
        list(resolver.iter_id_chunks(chunk_size=2))
        queries = [q["sql"] for q in connection.queries[-2:]]
    assert all("OFFSET" not in q.upper() for q in queries)
    assert '"id" >' in queries[1]
    assert "ORDER BY" in queries[1].upper()


def test_exact_multiple_of_chunk_size_ends_with_one_empty_query(django_assert_num_queries):
    f.UserFactory.create_batch(4)
    with django_assert_num_queries(3):
        chunks = list(AllActiveUsersResolver({}).iter_id_chunks(chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2]


def test_recipients_for_ids_is_one_query_keeps_order_and_drops_missing(
    django_assert_num_queries,
):
    a, b, c = f.UserFactory.create_batch(3)
    resolver = AllActiveUsersResolver({})
    b.is_active = False
    b.save()
    with django_assert_num_queries(1):
        recipients = resolver.recipients_for_ids([c.pk, b.pk, a.pk, 999_999])
    assert [r.user_id for r in recipients] == [c.pk, a.pk]
    assert resolver.recipients_for_ids([]) == []


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


def test_unknown_parameter_and_non_object_are_refused():
    group = f.GroupFactory()
    with pytest.raises(ValidationError, match="Unknown parameter"):
        GroupMembersResolver.clean_parameters({"group": group.pk, "grup": 1})
    with pytest.raises(ValidationError, match="JSON object"):
        GroupMembersResolver.clean_parameters(["group"])
    with pytest.raises(ValidationError, match="takes no parameters"):
        AllActiveUsersResolver.clean_parameters({"group": 1})


def test_user_filter_applies_whitelisted_lookups():
    now = timezone.now()
    old = f.UserFactory(email="old@corp.example", date_joined=now - dt.timedelta(days=90))
    recent = f.UserFactory(email="new@CORP.example", date_joined=now - dt.timedelta(days=3))
    staff = f.UserFactory(
        email="staff@corp.example", date_joined=now - dt.timedelta(days=2), is_staff=True
    )
    f.UserFactory(email="x@other.example", date_joined=now - dt.timedelta(days=1))
    f.UserFactory(email="gone@corp.example", is_active=False, date_joined=now)

    params = UserFilterResolver.clean_parameters(
        {
            "filters": {"date_joined__gte": "-30d", "email__iendswith": "@corp.example"},
            "exclude": {"is_staff": True},
        }
    )
    ids = [r.user_id for r in UserFilterResolver(params).iter_recipients()]
    assert ids == [recent.pk]
    assert old.pk not in ids and staff.pk not in ids

    with_inactive = UserFilterResolver(
        UserFilterResolver.clean_parameters(
            {"filters": {"email__iendswith": "@corp.example"}, "include_inactive": True}
        )
    )
    assert with_inactive.count() == 4


def test_user_filter_dates_accept_iso_dates_and_last_login_lookups():
    never = f.UserFactory(last_login=None)
    long_ago = f.UserFactory(last_login=timezone.make_aware(dt.datetime(2020, 1, 1)))
    f.UserFactory(last_login=timezone.now())
    dormant = UserFilterResolver(
        UserFilterResolver.clean_parameters({"filters": {"last_login__lt": "2021-01-01"}})
    )
    assert [r.user_id for r in dormant.iter_recipients()] == [long_ago.pk]
    never_logged = UserFilterResolver(
        UserFilterResolver.clean_parameters({"filters": {"last_login__isnull": True}})
    )
    assert [r.user_id for r in never_logged.iter_recipients()] == [never.pk]


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ({"groups__name": "staff"}, "'groups__name' is not an allowed lookup"),
        ({"password__startswith": "md5"}, "'password__startswith' is not an allowed lookup"),
        ({"email__regex": ".*"}, "'email__regex' is not an allowed lookup"),
        ({"date_joined__year": 2020}, "'date_joined__year' is not an allowed lookup"),
        ({"is_staff": "yes"}, "'is_staff': expected true or false"),
        ({"date_joined__gte": "last week"}, "'date_joined__gte': 'last week' is not a date"),
        ({"id__gt": "10"}, "'id__gt': expected an integer"),
        ({"email__in": []}, "'email__in': expected a non-empty list"),
        ([1, 2], "Must be a JSON object"),
    ],
)
def test_user_filter_refuses_lookups_off_the_whitelist(filters, fragment):
    with pytest.raises(ValidationError) as exc:
        UserFilterResolver.clean_parameters({"filters": filters})
    assert any(fragment in m for m in exc.value.messages), exc.value.messages


def test_user_filter_relative_dates_are_computed_at_resolve_time():
    user = f.UserFactory(date_joined=timezone.now() - dt.timedelta(days=10))
    resolver = UserFilterResolver({"filters": {"date_joined__gte": "-7d"}})
    assert resolver.count() == 0
    with mock.patch(
        "django.utils.timezone.now", return_value=timezone.now() + dt.timedelta(days=-5)
    ):
        assert [r.user_id for r in resolver.iter_recipients()] == [user.pk]


def test_recipient_list_resolves_entries_with_their_context():
    rlist = f.RecipientListFactory()
    user = f.UserFactory(email="linked@example.org")
    first = f.RecipientListEntryFactory(
        recipient_list=rlist,
        email="linked@example.org",
        user=user,
        first_name="Lin",
        language="fr",
        time_zone="Europe/Paris",
        extra={"course": "Physics"},
    )
    second = f.RecipientListEntryFactory(recipient_list=rlist, email="free@example.org")
    f.RecipientListEntryFactory()  # another list
    resolver = RecipientListResolver(
        RecipientListResolver.clean_parameters({"recipient_list": rlist.pk})
    )
    assert resolver.count() == 2
    chunks = list(resolver.iter_id_chunks(chunk_size=1))
    assert chunks == [[first.pk], [second.pk]]
    linked, free = resolver.recipients_for_ids([first.pk, second.pk])
    assert linked == ResolvedRecipient(
        key="email:linked@example.org",
        user_id=user.pk,
        email="linked@example.org",
        language="fr",
        time_zone="Europe/Paris",
        context={"course": "Physics", "first_name": "Lin", "last_name": "Person"},
    )
    assert free.user_id is None and free.key == "email:free@example.org"


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


def test_send_personalizes_each_recipient_with_a_fresh_context():
    users = f.UserFactory.create_batch(3)
    msg_type = MessageType(app_label="campaigns", name="hello", context={"site": "Example"})
    with mock.patch("ace.ace.send") as send:
        assert AllActiveUsersResolver({}).send(msg_type, chunk_size=2) == 3
    messages = [call.args[0] for call in send.call_args_list]
    assert [m.recipient.lms_user_id for m in messages] == [u.pk for u in users]
    assert [m.context["first_name"] for m in messages] == [u.first_name for u in users]
    assert all(m.context["site"] == "Example" for m in messages)
    assert len({id(m.context) for m in messages}) == 3
    assert messages[0].options["recipient_key"] == f"user:{users[0].pk}"
    assert msg_type.context == {"site": "Example"}  # the shared context is untouched


def test_base_class_is_abstract_about_the_audience():
    with pytest.raises(NotImplementedError):
        list(CampaignRecipientResolver({}).iter_id_chunks())
    assert get_user_model()  # the user model is swappable; resolvers use get_user_model()
