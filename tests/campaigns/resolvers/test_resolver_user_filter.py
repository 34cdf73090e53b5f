"""The saved user filter (campaigns/resolvers/user_filter.py)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.resolvers import UserFilterResolver
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


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
