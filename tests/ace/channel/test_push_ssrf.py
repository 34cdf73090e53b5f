"""The push channel never sends to the server's own network (SSRF), whatever a device row holds.

Endpoints are refused at send time in every spelling, with no connection attempted: a counting
listener on loopback and a connection guard (which refuses any non-loopback address before a
packet leaves) both stay silent. Names are answered by a fake resolver, never by DNS.
"""

from __future__ import annotations

import logging

import pytest
from fake_dns import ConnectionGuard, CountingListener, FakeResolver
from fake_push_service import BrowserSubscription, FakePushService, Reply, tls_server_context
from push_fixtures import *  # noqa: F403  (the fixtures)
from push_fixtures import add_device

from ace import ace
from ace.channel.push_notification import PushNotificationChannel
from ace.errors import (
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.message import Message
from ace.outcome import OutcomeStatus
from ace.recipient import Recipient
from ace.renderers import RenderedPushNotification
from ace.utils.netguard import MESSAGES, NOT_PUBLIC

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.215.14"
SECRET = b"internal service: db_password=hunter2"


@pytest.fixture
def channel(push_settings) -> PushNotificationChannel:
    return PushNotificationChannel()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.org")


@pytest.fixture
def resolver(monkeypatch) -> FakeResolver:
    return FakeResolver(
        {
            "intranet.example.org": ["10.0.0.1"],
            "loop.example.org": ["127.0.0.1"],
            "loop6.example.org": ["::1"],
            "metadata.example.org": ["169.254.169.254"],
        }
    ).install(monkeypatch)


@pytest.fixture
def guard(monkeypatch) -> ConnectionGuard:
    return ConnectionGuard().install(monkeypatch)


@pytest.fixture
def listener():
    listening = CountingListener()
    yield listening
    listening.close()


def message_for(user) -> Message:
    return Message(app_label="pushtest", name="hello", recipient=Recipient(lms_user_id=user.pk))


def rendered() -> RenderedPushNotification:
    return RenderedPushNotification(title="Hello", body="Your course starts today")


SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "0",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[fe80::1]",
    "[fd00::1]",
    "localhost",
    "localhost.",
    "LOCALHOST",
    "loop.example.org",
    "loop6.example.org",
    "intranet.example.org",
    "metadata.example.org",
    "10.0.0.1",
    "169.254.169.254",
]


@pytest.mark.parametrize("host", SPELLINGS)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_internal_endpoints_fail_at_send_without_a_connection(
    channel, push_settings, user, resolver, guard, listener, host, scheme
):
    push_settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = False
    add_device(user, BrowserSubscription(f"{scheme}://{host}:{listener.port}/push/x"))
    with pytest.raises(FatalChannelDeliveryError) as excinfo:
        channel.deliver(message_for(user), rendered())
    assert not isinstance(excinfo.value, RecipientAddressMissingError)
    assert "endpoint refused, not sent" in str(excinfo.value)
    assert guard.attempts == [], "no connection was attempted"
    assert listener.connections == 0


def test_odd_spellings_stay_refused_with_the_loopback_allowance(
    channel, user, resolver, guard, listener
):
    for host in ("127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0", "intranet.example.org"):
        add_device(user, BrowserSubscription(f"http://{host}:{listener.port}/push/{host}"))
    with pytest.raises(FatalChannelDeliveryError, match="endpoint refused"):
        channel.deliver(message_for(user), rendered())
    assert guard.attempts == [] and listener.connections == 0


def test_a_refused_device_does_not_stop_the_others(
    channel, user, resolver, guard, push_service, caplog
):
    add_device(user, BrowserSubscription("https://intranet.example.org/push/x"))
    good = push_service.subscribe()
    add_device(user, good)
    with caplog.at_level(logging.WARNING, logger="ace.channel.push_notification"):
        channel.deliver(message_for(user), rendered())
    assert len(push_service.requests_for(good)) == 1
    assert MESSAGES[NOT_PUBLIC] in caplog.text
    assert {host for host, _ in guard.attempts} == {"127.0.0.1"}


def test_dns_rebinding_cannot_redirect_the_connection(
    channel, push_settings, user, resolver, guard, listener, tmp_path
):
    """The name is public when checked, loopback on any later look-up: the push goes to the
    checked address (here rerouted to a loopback push service standing in for it)."""
    push_settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = False
    context, certificate = tls_server_context(tmp_path, "push.example.org")
    with FakePushService(tls=context) as service:
        port = int(service.url.rsplit(":", 1)[1])
        resolver.sequence("push.example.org", [PUBLIC], ["127.0.0.1"])
        guard.reroute[PUBLIC] = ("127.0.0.1", port)
        subscription = BrowserSubscription(f"https://push.example.org:{port}/push/a")
        add_device(user, subscription)
        with channel.open_session() as session:
            session.http.verify = str(certificate)
            [error] = session.deliver_many([(message_for(user), rendered())])
        assert error is None
        [request] = service.requests
        assert subscription.decrypt_json(request.body)["title"] == "Hello"
        assert request.headers["host"] == f"push.example.org:{port}"
        assert service.sni == ["push.example.org"]
    assert guard.attempts == [(PUBLIC, port)]
    assert resolver.lookups == ["push.example.org"]
    assert listener.connections == 0

    # Sent again, the name is looked up again: now loopback, refused without a connection.
    with pytest.raises(FatalChannelDeliveryError, match=MESSAGES[NOT_PUBLIC]):
        channel.deliver(message_for(user), rendered())
    assert guard.attempts == [(PUBLIC, port)]
    assert listener.connections == 0


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (301, "HTTP 301 Moved Permanently"),
        (302, "HTTP 302 Found"),
        (303, "HTTP 303 See Other"),
        (307, "HTTP 307 Temporary Redirect"),
        (308, "HTTP 308 Permanent Redirect"),
    ],
)
def test_a_redirect_is_not_followed_and_fails_the_delivery(
    channel, user, push_service, status, line
):
    """With loopback allowed, so that only not following stops the redirect."""
    with FakePushService() as target:
        sub = push_service.subscribe()
        add_device(user, sub)
        push_service.script(sub, Reply(status, {"Location": target.endpoint("internal")}))
        with pytest.raises(FatalChannelDeliveryError) as excinfo:
            channel.deliver(message_for(user), rendered())
        assert f"{line} (redirects are not followed)" in str(excinfo.value)
        assert target.requests == [], "the Location was not requested"
    assert len(push_service.requests_for(sub)) == 1


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, FatalChannelDeliveryError),
        (403, FatalChannelDeliveryError),
        (500, RecoverableChannelDeliveryError),
        (429, RecoverableChannelDeliveryError),
    ],
)
def test_the_reply_body_is_never_kept(channel, user, push_service, caplog, status, error_class):
    sub = push_service.subscribe()
    add_device(user, sub)
    push_service.script(sub, Reply(status, body=SECRET))
    with caplog.at_level(logging.DEBUG), pytest.raises(error_class) as excinfo:
        channel.deliver(message_for(user), rendered())
    assert f"HTTP {status} " in str(excinfo.value)
    assert b"hunter2" not in str(excinfo.value).encode()
    assert "hunter2" not in caplog.text


def test_the_outcome_reason_has_the_status_line_only(
    push_settings, user, push_service, tmp_path, settings
):
    folder = tmp_path / "pushtest" / "edx_ace" / "hello" / "push"
    folder.mkdir(parents=True)
    (folder / "title.txt").write_text("Hello")
    (folder / "body.txt").write_text("Hi")
    settings.TEMPLATES = [
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [tmp_path]}
    ]
    settings.ACE_ENABLED_POLICIES = []
    sub = push_service.subscribe()
    add_device(user, sub)
    push_service.script(sub, Reply(400, body=SECRET))
    [outcome] = ace.send(message_for(user))
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.reason.endswith("HTTP 400 Bad Request")
    assert "hunter2" not in outcome.reason
