"""The device admin: django-push-notifications' device lists, filterable and searchable by user."""

from __future__ import annotations

import pytest
from django.contrib import admin
from fake_push_service import BrowserSubscription
from push_fixtures import *  # noqa: F403  (the fixtures)
from push_fixtures import add_device
from push_notifications.models import APNSDevice, GCMDevice, WebPushDevice, WNSDevice

from campaigns.push.admin import PushWebPushDeviceAdmin
from tests.campaigns.factories import SuperUserFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/push_notifications/webpushdevice/"


@pytest.fixture
def admin_client_logged_in(client):
    client.force_login(SuperUserFactory())
    return client


@pytest.fixture
def devices():
    ada, bob = UserFactory(username="ada"), UserFactory(username="bob")
    made = {
        "ada-phone": add_device(ada, BrowserSubscription("https://push.example.org/p/ada1")),
        "ada-laptop": add_device(ada, BrowserSubscription("https://push.example.org/p/ada2")),
        "bob-laptop": add_device(bob, BrowserSubscription("https://fcm.example.com/p/bob1")),
    }
    return ada, bob, made


def test_every_device_model_has_a_user_filter():
    for model in (WebPushDevice, GCMDevice, APNSDevice, WNSDevice):
        model_admin = admin.site._registry[model]
        assert any(
            (f[0] if isinstance(f, tuple) else f) == "user" for f in model_admin.list_filter
        ), model
        assert "user__email" in model_admin.search_fields
    assert isinstance(admin.site._registry[WebPushDevice], PushWebPushDeviceAdmin)


def test_changelist_lists_devices_with_their_user(admin_client_logged_in, devices):
    response = admin_client_logged_in.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "By user" in html
    assert "push.example.org" in html and "fcm.example.com" in html  # the push service column
    assert response.context["cl"].result_count == 3


def test_filter_by_user_shows_only_their_devices(admin_client_logged_in, devices):
    ada, _bob, made = devices
    response = admin_client_logged_in.get(CHANGELIST, {"user__id__exact": ada.pk})
    assert response.status_code == 200
    shown = {device.pk for device in response.context["cl"].result_list}
    assert shown == {made["ada-phone"].pk, made["ada-laptop"].pk}

    response = admin_client_logged_in.get(CHANGELIST, {"q": "bob@example.org"})
    assert [d.pk for d in response.context["cl"].result_list] == [made["bob-laptop"].pk]


def test_user_filter_lists_only_users_with_devices(admin_client_logged_in, devices):
    UserFactory(username="carol")  # no device
    response = admin_client_logged_in.get(CHANGELIST)
    user_filter = next(
        spec for spec in response.context["cl"].filter_specs if spec.field_path == "user"
    )
    names = {label for _, label in user_filter.lookup_choices}
    assert names == {"ada", "bob"}


def test_test_notification_action_sends_campaign_json_and_deactivates_gone(
    admin_client_logged_in, push_settings, push_service
):
    from fake_push_service import Reply

    from campaigns.push.services import TEST_TITLE

    user = UserFactory(username="tess")
    alive, gone = push_service.subscribe(), push_service.subscribe()
    alive_device, gone_device = add_device(user, alive), add_device(user, gone)
    push_service.script(gone, Reply(410))

    response = admin_client_logged_in.post(
        CHANGELIST,
        {
            "action": "send_test_notification",
            "_selected_action": [alive_device.pk, gone_device.pk],
        },
        follow=True,
    )
    assert response.status_code == 200
    [notice] = [str(m) for m in response.context["messages"]]
    assert notice == "Test notification: gone: 1, sent: 1."
    [request] = push_service.requests_for(alive)
    assert alive.decrypt_json(request.body)["title"] == TEST_TITLE
    gone_device.refresh_from_db()
    assert gone_device.active is False


def test_test_notification_action_needs_the_test_send_permission(
    client, push_settings, push_service
):
    from django.contrib.auth.models import Permission

    device = add_device(UserFactory(username="vic"), push_service.subscribe())
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_webpushdevice"),
        Permission.objects.get(codename="change_webpushdevice"),
    )
    client.force_login(viewer)
    assert client.get(CHANGELIST).status_code == 200
    response = client.post(
        CHANGELIST,
        {"action": "send_test_notification", "_selected_action": [device.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert push_service.requests == []


def test_test_notification_action_says_when_push_is_not_configured(
    admin_client_logged_in, push_settings, push_service
):
    device = add_device(UserFactory(username="tom"), push_service.subscribe())
    push_settings.PUSH_NOTIFICATIONS_SETTINGS = {}
    response = admin_client_logged_in.post(
        CHANGELIST,
        {"action": "send_test_notification", "_selected_action": [device.pk]},
        follow=True,
    )
    [notice] = [str(m) for m in response.context["messages"]]
    assert notice.startswith("Web Push is not configured: VAPID_PRIVATE_KEY is not set")
    assert push_service.requests == []
