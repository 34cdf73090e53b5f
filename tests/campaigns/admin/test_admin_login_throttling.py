"""Admin logins are throttled (V8, django-axes): 10 failures for one username from one address
lock that pair out for 15 minutes, the right password included."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db

LOGIN_URL = reverse("admin:login")
PASSWORD = "the-right-password-42"


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(
        username="operator", email="operator@example.org", password=PASSWORD
    )


def attempt(client: Client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post(
        LOGIN_URL,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_defaults_are_ten_failures_and_fifteen_minutes():
    assert settings.AXES_ENABLED is True
    assert settings.AXES_FAILURE_LIMIT == 10
    assert dt.timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_the_eleventh_attempt_is_refused_even_with_the_right_password(client, operator):
    for _ in range(9):
        response = attempt(client, "operator", "wrong")
        assert response.status_code == 200  # the login form again, with its error
    tenth = attempt(client, "operator", "wrong")
    assert tenth.status_code == 429  # this failure reached the limit

    eleventh = attempt(client, "operator", PASSWORD)
    assert eleventh.status_code == 429
    assert "too many login attempts" in eleventh.content.decode()
    assert not logged_in(client)
    assert client.get(reverse("admin:index")).status_code == 302  # still sent to the login


def test_the_lockout_is_per_username_and_address(operator, django_user_model):
    django_user_model.objects.create_superuser(username="other", password=PASSWORD)
    attacker = Client()
    for _ in range(10):
        attempt(attacker, "operator", "wrong")

    owner = Client()  # the same account from another address
    assert attempt(owner, "operator", PASSWORD, address="198.51.100.20").status_code == 302
    assert logged_in(owner)
    colleague = Client()  # another account from the attacker's address
    assert attempt(colleague, "other", PASSWORD).status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, operator):
    for _ in range(10):
        attempt(client, "operator", "wrong")
    assert attempt(client, "operator", PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=16))
    assert attempt(client, "operator", PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_success_before_the_limit_resets_the_count(client, operator):
    for _ in range(9):
        attempt(client, "operator", "wrong")
    assert attempt(client, "operator", PASSWORD).status_code == 302
    client.logout()
    for _ in range(9):
        assert attempt(client, "operator", "wrong").status_code == 200
    assert attempt(client, "operator", PASSWORD).status_code == 302
