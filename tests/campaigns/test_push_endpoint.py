"""The Web Push subscription endpoint: login, CSRF, validation, own devices only, a real send."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from fake_dns import ConnectionGuard, CountingListener, FakeResolver
from fake_push_service import BrowserSubscription
from push_fixtures import *  # noqa: F403  (the fixtures)
from push_fixtures import VAPID_SUBJECT
from push_notifications.models import WebPushDevice

from ace.channel.push_notification import PushNotificationChannel
from ace.errors import FatalChannelDeliveryError
from ace.message import Message
from ace.recipient import Recipient
from ace.renderers import RenderedPushNotification
from ace.utils import netguard
from campaigns.push import services, views
from tests.campaigns.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/push/subscriptions/"
PUBLIC = "93.184.215.14"


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> FakeResolver:
    """Registration resolves endpoint hosts: a fake resolver answers, no DNS query is sent."""
    return FakeResolver(
        {
            "push.example.org": [PUBLIC],
            "intranet.example.org": ["10.0.0.1"],
            "loop.example.org": ["127.0.0.1"],
            "metadata.example.org": ["169.254.169.254"],
            "mixed.example.org": [PUBLIC, "192.168.0.7"],
        }
    ).install(monkeypatch)


@pytest.fixture
def guard(monkeypatch) -> ConnectionGuard:
    return ConnectionGuard().install(monkeypatch)


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def client_for(push_settings):
    """A logged-in client that enforces CSRF, with its token ready for the header."""

    def make(user) -> tuple[Client, str]:
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        client.get("/admin/login/")  # any page rendering a form sets the CSRF cookie
        token = client.cookies["csrftoken"].value
        return client, token

    return make


def post(client: Client, token: str | None, body, method: str = "post"):
    headers = {"HTTP_X_CSRFTOKEN": token} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(client, method)(URL, data=data, content_type="application/json", **headers)


def browser_json(subscription, browser: str = "firefox") -> dict:
    return {**subscription.to_json(), "browser": browser}


def test_the_url_is_routed():
    assert reverse("push:subscriptions") == URL
    assert reverse("push:vapid_public_key") == "/push/vapid-public-key/"


def test_register_creates_a_device_for_the_logged_in_user(client_for, user, push_service):
    client, token = client_for(user)
    sub = push_service.subscribe()
    response = post(client, token, browser_json(sub, "Chrome"))
    assert response.status_code == 201, response.content
    device = WebPushDevice.objects.get(pk=response.json()["id"])
    assert (device.user, device.registration_id, device.active) == (user, sub.endpoint, True)
    assert (device.p256dh, device.auth, device.browser) == (sub.p256dh, sub.auth, "CHROME")

    # Registering again (the browser re-sends on every page load) updates, never duplicates.
    device.active = False
    device.save()
    response = post(client, token, browser_json(sub))
    assert response.status_code == 200
    device.refresh_from_db()
    assert device.active is True and device.browser == "FIREFOX"
    assert WebPushDevice.objects.filter(registration_id=sub.endpoint).count() == 1


def test_csrf_is_enforced(client_for, user, push_service):
    client, _ = client_for(user)
    response = post(client, None, browser_json(push_service.subscribe()))
    assert response.status_code == 403
    assert not WebPushDevice.objects.exists()


def test_anonymous_is_refused(push_settings, push_service):
    client = Client()
    response = post(client, None, browser_json(push_service.subscribe()))
    assert response.status_code == 401
    assert response.json() == {"error": views.LOGIN_REQUIRED}


def test_other_methods_are_refused(client_for, user):
    client, _ = client_for(user)
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d.pop("endpoint"), "endpoint", services.ENDPOINT_REQUIRED),
        (lambda d: d.update(endpoint="ftp://push.example.org/x"), "endpoint", None),
        (lambda d: d.update(endpoint="https://10.0.0.5/push/x"), "endpoint", None),
        (lambda d: d.update(endpoint="https://db.localhost/push/x"), "endpoint", None),
        (lambda d: d.update(endpoint="https://[fd00::1]/push/x"), "endpoint", None),
        (lambda d: d.update(endpoint="https://169.254.169.254/x"), "endpoint", None),
        (lambda d: d.update(endpoint="https://u:p@push.example.org/x"), "endpoint", None),
        (lambda d: d.update(endpoint="https://p.example.org/" + "x" * 3000), "endpoint", None),
        (lambda d: d.pop("keys"), "keys", services.KEYS_REQUIRED),
        (lambda d: d["keys"].update(p256dh="AAAA"), "keys.p256dh", services.P256DH_INVALID),
        (lambda d: d["keys"].update(p256dh="B" * 87), "keys.p256dh", services.P256DH_INVALID),
        (lambda d: d["keys"].update(auth="c2hvcnQ"), "keys.auth", services.AUTH_INVALID),
        (lambda d: d["keys"].update(auth="!!!"), "keys.auth", services.AUTH_INVALID),
        (lambda d: d.update(browser="netscape"), "browser", None),
        (lambda d: d.pop("browser"), "browser", None),
        (lambda d: d.update(name="n" * 300), "name", services.NAME_TOO_LONG),
    ],
)
def test_invalid_subscriptions_are_refused_with_the_field(
    client_for, user, push_service, mutate, field, message
):
    client, token = client_for(user)
    body = browser_json(push_service.subscribe())
    mutate(body)
    response = post(client, token, body)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    if message:
        assert errors[field] == [message]
    assert not WebPushDevice.objects.exists()


def test_plain_http_loopback_needs_the_setting(client_for, user, push_service, push_settings):
    client, token = client_for(user)
    push_settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = False
    response = post(client, token, browser_json(push_service.subscribe()))
    assert response.status_code == 400
    assert response.json()["errors"]["endpoint"] == [services.ENDPOINT_NOT_HTTPS]
    body = {**browser_json(push_service.subscribe()), "endpoint": "https://127.0.0.1:8443/p/1"}
    response = post(client, token, body)
    assert response.json()["errors"]["endpoint"] == [services.ENDPOINT_PRIVATE_HOST]
    body["endpoint"] = "https://push.example.org/p/1"
    assert post(client, token, body).status_code == 201


@pytest.mark.parametrize(
    "body", ["not json", "[1, 2]", json.dumps({"endpoint": 1, "keys": "x", "browser": 3})]
)
def test_malformed_bodies(client_for, user, body):
    client, token = client_for(user)
    response = post(client, token, body)
    assert response.status_code == 400
    assert "error" in response.json() or "errors" in response.json()


def test_oversized_body(client_for, user):
    client, token = client_for(user)
    response = post(client, token, {"endpoint": "x" * (views.MAX_BODY_BYTES + 1)})
    assert response.status_code == 413


def test_remove_only_own_devices(client_for, user, push_service):
    other = UserFactory()
    mine, theirs = push_service.subscribe(), push_service.subscribe()
    client, token = client_for(user)
    assert post(client, token, browser_json(mine)).status_code == 201
    other_client, other_token = client_for(other)
    assert post(other_client, other_token, browser_json(theirs)).status_code == 201

    response = post(client, token, {"endpoint": theirs.endpoint}, method="delete")
    assert response.status_code == 404
    assert WebPushDevice.objects.filter(user=other, registration_id=theirs.endpoint).exists()

    response = post(client, token, {"endpoint": mine.endpoint}, method="delete")
    assert response.status_code == 204
    assert not WebPushDevice.objects.filter(user=user).exists()
    assert post(client, token, {}, method="delete").status_code == 400
    assert post(client, None, {"endpoint": theirs.endpoint}, method="delete").status_code == 403


def test_a_subscription_moves_to_whoever_registers_it_last(client_for, user, push_service):
    """Same browser, another account: the first account's pushes must stop going there."""
    sub = push_service.subscribe()
    first, first_token = client_for(user)
    assert post(first, first_token, browser_json(sub)).status_code == 201
    second_user = UserFactory()
    second, second_token = client_for(second_user)
    assert post(second, second_token, browser_json(sub)).status_code == 201
    assert list(
        WebPushDevice.objects.filter(registration_id=sub.endpoint).values_list("user", flat=True)
    ) == [second_user.pk]


def test_vapid_public_key(push_settings, vapid_keys):
    response = Client().get("/push/vapid-public-key/")
    assert response.status_code == 200
    assert response.json() == {"publicKey": vapid_keys[1]}
    push_settings.PUSH_NOTIFICATIONS_SETTINGS = {}
    response = Client().get("/push/vapid-public-key/")
    assert response.status_code == 503
    assert response.json() == {"error": views.NOT_CONFIGURED}


def test_a_registered_subscription_receives_a_decryptable_push(
    client_for, user, push_service, vapid_keys
):
    """Browser subscribes -> endpoint stores it -> the channel sends -> the browser decrypts."""
    from fake_push_service import verify_vapid

    sub = push_service.subscribe()
    client, token = client_for(user)
    key = client.get("/push/vapid-public-key/").json()["publicKey"]
    assert key == vapid_keys[1]
    assert post(client, token, browser_json(sub)).status_code == 201

    message = Message(app_label="pushtest", name="hello", recipient=Recipient(lms_user_id=user.pk))
    PushNotificationChannel().deliver(
        message, RenderedPushNotification(title="Welcome", body="Thanks for subscribing")
    )
    [request] = push_service.requests_for(sub)
    assert sub.decrypt_json(request.body)["body"] == "Thanks for subscribing"
    verify_vapid(
        request.headers["authorization"],
        public_key=key,
        audience=push_service.url,
        subject=VAPID_SUBJECT,
    )


def test_push_vapid_keys_command_prints_a_usable_pair(settings):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("push_vapid_keys", stdout=out)
    private_line, public_line = out.getvalue().splitlines()
    private = private_line.removeprefix("VAPID_PRIVATE_KEY=")
    public = public_line.rsplit(" ", 1)[-1]
    settings.PUSH_NOTIFICATIONS_SETTINGS = {
        "WP_PRIVATE_KEY": private,
        "WP_CLAIMS": {"sub": VAPID_SUBJECT},
    }
    from ace.channel.push_notification import configuration_problem, vapid_public_key

    assert configuration_problem() == ""
    assert vapid_public_key() == public


# SSRF: endpoints inside the network are refused in every spelling
# ------------------------------------------------------------------------------

PRIVATE = services.ENDPOINT_PRIVATE_HOST
INVALID = services.ENDPOINT_HOST_INVALID


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("https://127.0.0.1/p", PRIVATE),
        ("https://127.1/p", PRIVATE),
        ("https://2130706433/p", PRIVATE),
        ("https://0x7f000001/p", PRIVATE),
        ("https://0177.0.0.1/p", PRIVATE),
        ("https://0/p", PRIVATE),
        ("https://127.0.0.1./p", PRIVATE),
        ("https://[::1]/p", PRIVATE),
        ("https://[fe80::1]/p", PRIVATE),
        ("https://[fd12:3456::1]/p", PRIVATE),
        ("https://[::ffff:127.0.0.1]/p", PRIVATE),
        ("https://[::ffff:10.0.0.1]/p", PRIVATE),
        ("https://localhost/p", PRIVATE),
        ("https://localhost./p", PRIVATE),
        ("https://LOCALHOST/p", PRIVATE),
        ("https://intranet.example.org/p", PRIVATE),
        ("https://loop.example.org/p", PRIVATE),
        ("https://metadata.example.org/latest/meta-data/", PRIVATE),
        ("https://mixed.example.org/p", PRIVATE),
        ("https://224.0.0.1/p", PRIVATE),
        ("https://100.64.0.1/p", PRIVATE),
        ("https://134744072/p", INVALID),
        ("https://1.2.3.999/p", INVALID),
        ("https://nowhere.example.org/p", services.ENDPOINT_UNRESOLVABLE),
        ("http://push.example.org/p", services.ENDPOINT_NOT_HTTPS),
    ],
)
def test_internal_endpoints_are_refused_at_registration(
    client_for, user, push_settings, guard, endpoint, message
):
    push_settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = False
    client, token = client_for(user)
    body = {**browser_json(BrowserSubscription(endpoint)), "endpoint": endpoint}
    response = post(client, token, body)
    assert response.status_code == 400, response.content
    assert response.json() == {"errors": {"endpoint": [message]}}
    for internal in ("10.0.0.1", "169.254", "192.168", "gaierror", "Traceback"):
        assert internal not in response.content.decode(), "no internals in the message"
    assert not WebPushDevice.objects.exists()
    assert guard.attempts == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.1:8000/p",
        "http://2130706433:8000/p",
        "http://0:8000/p",
        "http://intranet.example.org:8000/p",
        "https://10.0.0.1/p",
        "https://[fd00::1]/p",
    ],
)
def test_the_loopback_allowance_admits_nothing_else(client_for, user, endpoint):
    client, token = client_for(user)  # push_settings: PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS on
    body = {**browser_json(BrowserSubscription(endpoint)), "endpoint": endpoint}
    response = post(client, token, body)
    assert response.status_code == 400, response.content
    assert not WebPushDevice.objects.exists()


def test_a_public_name_is_registered(client_for, user, push_settings, resolver):
    push_settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = False
    client, token = client_for(user)
    sub = BrowserSubscription("https://push.example.org/wpush/v2/abc")
    assert post(client, token, browser_json(sub)).status_code == 201
    assert resolver.lookups == ["push.example.org"]


def test_dns_rebinding_after_registration_is_refused_at_send(
    client_for, user, push_settings, resolver, guard
):
    """Public when registered, loopback when sent: the send refuses it and connects nowhere."""
    push_settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = False
    listener = CountingListener()
    try:
        sub = BrowserSubscription(f"https://push.example.org:{listener.port}/wpush/1")
        client, token = client_for(user)
        assert post(client, token, browser_json(sub)).status_code == 201
        resolver.answer("push.example.org", "127.0.0.1")

        message = Message(
            app_label="pushtest", name="hello", recipient=Recipient(lms_user_id=user.pk)
        )
        with pytest.raises(FatalChannelDeliveryError) as excinfo:
            PushNotificationChannel().deliver(
                message, RenderedPushNotification(title="Hi", body="there")
            )
        assert "endpoint refused, not sent" in str(excinfo.value)
        assert netguard.MESSAGES[netguard.NOT_PUBLIC] in str(excinfo.value)
        assert guard.attempts == []
        assert listener.connections == 0
    finally:
        listener.close()
