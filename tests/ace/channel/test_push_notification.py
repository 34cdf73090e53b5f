"""The push_notification channel against a real Web Push exchange on loopback.

Every delivery here goes over HTTP to :class:`FakePushService` on 127.0.0.1; the test decrypts
what arrived with the browser's private key (RFC 8291) and verifies the VAPID JWT (RFC 8292).
"""

from __future__ import annotations

import base64
import logging
import runpy
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fake_push_service import Reply, verify_vapid
from push_fixtures import *  # noqa: F403  (the fixtures)
from push_fixtures import VAPID_SUBJECT, add_device
from push_notifications.models import WebPushDevice

from ace import ace
from ace.batch import BatchSender
from ace.channel import ChannelType, channels, get_channel_for_message
from ace.channel.push_notification import (
    ALL_GONE,
    EMPTY_TITLE,
    MAX_PAYLOAD_BYTES,
    NO_DEVICE,
    PushNotificationChannel,
    configuration_problem,
    load_vapid_key,
    parse_retry_after,
    vapid_public_key,
)
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.message import Message
from ace.outcome import OutcomeStatus
from ace.presentation import render
from ace.recipient import Recipient
from ace.renderers import RenderedPushNotification

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def channel(push_settings) -> PushNotificationChannel:
    return PushNotificationChannel()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.org")


def make_message(user_id: int | None, **kwargs) -> Message:
    return Message(
        app_label="pushtest",
        name="hello",
        recipient=Recipient(lms_user_id=user_id, email_address="ada@example.org"),
        **kwargs,
    )


def rendered(title: str = "Hello Ada", body: str = "Your course starts today") -> object:
    return RenderedPushNotification(title=title, body=body)


# Configuration: enabled() is false-safe
# ------------------------------------------------------------------------------


def test_enabled_when_vapid_is_configured(push_settings):
    assert configuration_problem() == ""
    assert PushNotificationChannel.enabled() is True
    assert channels().has_channel_type(ChannelType.PUSH)


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ({}, "VAPID_PRIVATE_KEY is not set"),
        ({"WP_PRIVATE_KEY": None, "WP_CLAIMS": {"sub": VAPID_SUBJECT}}, "VAPID_PRIVATE_KEY is not"),
        ({"WP_PRIVATE_KEY": "not-a-key!", "WP_CLAIMS": {"sub": VAPID_SUBJECT}}, "cannot be used"),
        ({"WP_PRIVATE_KEY": "KEY", "WP_CLAIMS": None}, "VAPID_SUBJECT is not set"),
        ({"WP_PRIVATE_KEY": "KEY", "WP_CLAIMS": {"sub": "ops@example.org"}}, "mailto: or https:"),
    ],
)
def test_disabled_with_a_log_line_when_vapid_is_missing(
    push_settings, vapid_keys, caplog, conf, expected
):
    if conf.get("WP_PRIVATE_KEY") == "KEY":
        conf = {**conf, "WP_PRIVATE_KEY": vapid_keys[0]}
    push_settings.PUSH_NOTIFICATIONS_SETTINGS = conf
    with caplog.at_level(logging.INFO, logger="ace.channel.push_notification"):
        assert PushNotificationChannel.enabled() is False
        channel_map = channels()
    assert expected in configuration_problem()
    assert not channel_map.has_channel_type(ChannelType.PUSH)
    assert "push_notification" in channel_map.disabled
    lines = [r.getMessage() for r in caplog.records if "push_notification is disabled" in r.message]
    assert lines, caplog.text
    assert expected in lines[0]
    assert vapid_keys[0] not in caplog.text, "the private key must never be logged"


def test_settings_read_vapid_from_the_environment(monkeypatch, vapid_keys):
    monkeypatch.setenv("VAPID_PRIVATE_KEY", vapid_keys[0])
    monkeypatch.setenv("VAPID_SUBJECT", "mailto:ops@example.org")
    namespace = runpy.run_path(str(ROOT / "config" / "settings" / "base.py"))
    conf = namespace["PUSH_NOTIFICATIONS_SETTINGS"]
    assert conf["WP_PRIVATE_KEY"] == vapid_keys[0]
    assert conf["WP_CLAIMS"] == {"sub": "mailto:ops@example.org"}
    assert "push_notifications" in namespace["INSTALLED_APPS"]

    monkeypatch.delenv("VAPID_PRIVATE_KEY")
    monkeypatch.delenv("VAPID_SUBJECT")
    monkeypatch.delenv("ACE_ENABLED_CHANNELS", raising=False)
    namespace = runpy.run_path(str(ROOT / "config" / "settings" / "base.py"))
    assert namespace["PUSH_NOTIFICATIONS_SETTINGS"]["WP_PRIVATE_KEY"] is None
    assert namespace["PUSH_NOTIFICATIONS_SETTINGS"]["WP_CLAIMS"] is None
    assert "push_notification" in namespace["ACE_ENABLED_CHANNELS"]


def test_default_channel_list_is_safe_without_vapid(settings, caplog):
    """The default ACE_ENABLED_CHANNELS lists push; without keys only email is loaded."""
    settings.PUSH_NOTIFICATIONS_SETTINGS = {"WP_PRIVATE_KEY": None, "WP_CLAIMS": None}
    settings.ACE_ENABLED_CHANNELS = ["django_email", "push_notification"]
    with caplog.at_level(logging.INFO):
        channel_map = channels()
    assert channel_map.has_channel_type(ChannelType.EMAIL)
    assert not channel_map.has_channel_type(ChannelType.PUSH)
    assert "VAPID_PRIVATE_KEY is not set" in channel_map.disabled["push_notification"]
    assert "VAPID_PRIVATE_KEY is not set" in caplog.text


def test_vapid_key_formats_give_the_same_public_key(tmp_path, vapid_keys):
    raw, public = vapid_keys
    key = load_vapid_key(raw).private_key
    der = base64.urlsafe_b64encode(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    ).decode()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    pem_file = tmp_path / "vapid.pem"
    pem_file.write_text(pem)
    for value in (raw, der, pem, str(pem_file)):
        point = load_vapid_key(value).public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        assert base64.urlsafe_b64encode(point).rstrip(b"=").decode() == public
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError):
        load_vapid_key(str(missing))
    assert not missing.exists(), "a missing key file must not be created"


def test_vapid_public_key_matches_the_private_key(push_settings, vapid_keys):
    assert vapid_public_key() == vapid_keys[1]


# A real Web Push exchange
# ------------------------------------------------------------------------------


@pytest.fixture
def push_templates(tmp_path, settings) -> Path:
    """title.txt and body.txt of pushtest/hello at the ACE template path."""
    folder = tmp_path / "pushtest" / "edx_ace" / "hello" / "push"
    folder.mkdir(parents=True)
    (folder / "title.txt").write_text("Hello {{ first_name }}\n")
    (folder / "body.txt").write_text("{{ course }} starts today. Enjoy, {{ first_name }}!\n")
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [tmp_path],
            "APP_DIRS": False,
        }
    ]
    settings.ACE_ENABLED_POLICIES = []
    return folder


def test_message_is_encrypted_for_the_subscription_and_signed_with_vapid(
    channel, user, push_service, vapid_keys, push_templates
):
    """Templates at the ACE path -> render -> channel -> loopback push service -> decrypt."""
    subscription = push_service.subscribe()
    add_device(user, subscription)
    message = make_message(user.pk, context={"first_name": "Ada", "course": "Analytical Engines"})

    assert get_channel_for_message(ChannelType.PUSH, message).__class__ is PushNotificationChannel
    channel.deliver(message, render(channel, message))

    [request] = push_service.requests_for(subscription)
    assert request.method == "POST"
    assert request.path == f"/push/{subscription.endpoint.rsplit('/', 1)[-1]}"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert 0 < int(request.headers["ttl"]) <= 3600
    payload = subscription.decrypt_json(request.body)
    assert payload["title"] == "Hello Ada"
    assert payload["body"] == "Analytical Engines starts today. Enjoy, Ada!"
    assert payload["data"]["message_uuid"] == str(message.uuid)
    assert payload["data"]["name"] == "hello"
    # The library's own decryption agrees with ours.
    import http_ece

    assert http_ece.decrypt(
        request.body,
        private_key=subscription.private_key,
        auth_secret=subscription.auth_secret,
        version="aes128gcm",
    ) == subscription.decrypt(request.body)

    claims = verify_vapid(
        request.headers["authorization"],
        public_key=vapid_keys[1],
        audience=push_service.url,
        subject=VAPID_SUBJECT,
    )
    assert claims["exp"] > datetime.now(UTC).timestamp() + 3600


def test_a_tampered_vapid_token_does_not_verify(channel, user, push_service, vapid_keys):
    subscription = push_service.subscribe()
    add_device(user, subscription)
    channel.deliver(make_message(user.pk), rendered())
    header = push_service.requests[0].headers["authorization"]
    other_public = base64.urlsafe_b64encode(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    ).rstrip(b"=")
    forged = header.replace(vapid_keys[1], other_public.decode())
    with pytest.raises(AssertionError, match="k is not"):
        verify_vapid(
            forged, public_key=vapid_keys[1], audience=push_service.url, subject=VAPID_SUBJECT
        )
    with pytest.raises(AssertionError, match="does not verify"):
        verify_vapid(
            forged,
            public_key=other_public.decode(),
            audience=push_service.url,
            subject=VAPID_SUBJECT,
        )


def test_every_active_device_of_the_recipient_gets_it(
    channel, user, push_service, django_user_model
):
    phone, laptop, old = (push_service.subscribe() for _ in range(3))
    add_device(user, phone)
    add_device(user, laptop)
    add_device(user, old, active=False)
    stranger = django_user_model.objects.create_user("bob")
    stranger_sub = push_service.subscribe()
    add_device(stranger, stranger_sub)

    channel.deliver(make_message(user.pk), rendered(title="Hi"))

    for subscription in (phone, laptop):
        [request] = push_service.requests_for(subscription)
        assert subscription.decrypt_json(request.body)["title"] == "Hi"
    assert push_service.requests_for(old) == []
    assert push_service.requests_for(stranger_sub) == []


def test_no_device_is_reported_as_no_address_without_a_request(channel, user, push_service, caplog):
    add_device(user, push_service.subscribe(), active=False)
    with (
        caplog.at_level(logging.INFO, logger="ace.channel.push_notification"),
        pytest.raises(RecipientAddressMissingError) as excinfo,
    ):
        channel.deliver(make_message(user.pk), rendered())
    assert str(excinfo.value) == NO_DEVICE.format(user_id=user.pk)
    assert NO_DEVICE.format(user_id=user.pk) in caplog.text
    assert push_service.requests == []
    with pytest.raises(RecipientAddressMissingError):
        channel.deliver(make_message(None), rendered())


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_device_is_deactivated_and_the_others_still_get_it(
    channel, user, push_service, status
):
    gone, alive = push_service.subscribe(), push_service.subscribe()
    gone_device = add_device(user, gone)
    alive_device = add_device(user, alive)
    push_service.script(gone, Reply(status))

    channel.deliver(make_message(user.pk), rendered())  # no error: one device got it

    gone_device.refresh_from_db()
    alive_device.refresh_from_db()
    assert gone_device.active is False
    assert alive_device.active is True
    assert len(push_service.requests_for(alive)) == 1

    channel.deliver(make_message(user.pk), rendered())
    assert len(push_service.requests_for(gone)) == 1, "a deactivated device is not tried again"


def test_every_device_gone_means_no_address(channel, user, push_service):
    subs = [push_service.subscribe(), push_service.subscribe()]
    for sub in subs:
        add_device(user, sub)
        push_service.script(sub, Reply(410))
    with pytest.raises(RecipientAddressMissingError) as excinfo:
        channel.deliver(make_message(user.pk), rendered())
    assert str(excinfo.value).startswith(ALL_GONE.split("(")[0].format(user_id=user.pk))
    assert "HTTP 410" in str(excinfo.value)
    assert not WebPushDevice.objects.filter(user=user, active=True).exists()


def test_one_failing_device_does_not_stop_the_others(channel, user, push_service):
    first, second, third = (push_service.subscribe() for _ in range(3))
    for sub in (first, second, third):
        add_device(user, sub)
    push_service.script(first, Reply(500))
    push_service.script(second, Reply(400, body=b"bad request"))
    channel.deliver(make_message(user.pk), rendered())
    assert len(push_service.requests_for(third)) == 1
    assert WebPushDevice.objects.filter(user=user, active=True).count() == 3


def test_429_with_retry_after_seconds_is_recoverable(channel, user, push_service):
    sub = push_service.subscribe()
    device = add_device(user, sub)
    push_service.script(sub, Reply(429, {"Retry-After": "120"}))
    before = datetime.now(UTC)
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        channel.deliver(make_message(user.pk), rendered())
    error = excinfo.value
    assert before + timedelta(seconds=119) <= error.next_attempt_time
    assert error.next_attempt_time <= datetime.now(UTC) + timedelta(seconds=121)
    assert "HTTP 429" in error.message
    device.refresh_from_db()
    assert device.active is True
    channel.deliver(make_message(user.pk), rendered())  # the retry goes through
    assert len(push_service.requests_for(sub)) == 2


def test_503_with_an_http_date_retry_after(channel, user, push_service):
    sub = push_service.subscribe()
    add_device(user, sub)
    when = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    push_service.script(sub, Reply(503, {"Retry-After": format_datetime(when, usegmt=True)}))
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        channel.deliver(make_message(user.pk), rendered())
    assert excinfo.value.next_attempt_time == when


def test_5xx_without_retry_after_uses_the_default_delay(channel, user, push_service):
    sub = push_service.subscribe()
    add_device(user, sub)
    push_service.script(sub, Reply(502))
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        channel.deliver(make_message(user.pk), rendered())
    delay = (excinfo.value.next_attempt_time - datetime.now(UTC)).total_seconds()
    assert 55 < delay <= 60


def test_the_latest_retry_after_wins_when_every_device_must_wait(channel, user, push_service):
    a, b = push_service.subscribe(), push_service.subscribe()
    add_device(user, a)
    add_device(user, b)
    push_service.script(a, Reply(429, {"Retry-After": "30"}))
    push_service.script(b, Reply(429, {"Retry-After": "300"}))
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        channel.deliver(make_message(user.pk), rendered())
    delay = (excinfo.value.next_attempt_time - datetime.now(UTC)).total_seconds()
    assert 295 < delay <= 300


def test_an_unreachable_push_service_is_recoverable(channel, user, push_service):
    sub = push_service.subscribe()
    add_device(user, sub)
    push_service.stop()  # nothing listens on that port any more
    with pytest.raises(RecoverableChannelDeliveryError, match="unreachable"):
        channel.deliver(make_message(user.pk), rendered())


def test_no_answer_after_the_request_is_unknown_not_retried(channel, user, push_service):
    sub = push_service.subscribe()
    add_device(user, sub)
    push_service.script(sub, Reply(drop=True))
    with pytest.raises(DeliveryOutcomeUnknownError, match="may or may not have arrived"):
        channel.deliver(make_message(user.pk), rendered())
    assert len(push_service.requests_for(sub)) == 1  # the service got it


def test_an_unknown_device_beats_a_retry_but_not_a_delivery(channel, user, push_service):
    silent, busy = push_service.subscribe(), push_service.subscribe()
    add_device(user, silent)
    add_device(user, busy)
    push_service.script(silent, Reply(drop=True))
    push_service.script(busy, Reply(503))
    # Retrying would notify the silent device a second time: unknown, not retried.
    with pytest.raises(DeliveryOutcomeUnknownError):
        channel.deliver(make_message(user.pk), rendered())
    # With another device reached, the message was delivered.
    push_service.script(silent, Reply(drop=True))
    channel.deliver(make_message(user.pk), rendered())
    assert len(push_service.requests_for(busy)) == 2


def test_a_client_error_is_fatal_with_the_reply(channel, user, push_service):
    sub = push_service.subscribe()
    add_device(user, sub)
    push_service.script(sub, Reply(413, body=b"payload too large"))
    with pytest.raises(FatalChannelDeliveryError) as excinfo:
        channel.deliver(make_message(user.pk), rendered())
    assert not isinstance(excinfo.value, RecipientAddressMissingError)
    assert "HTTP 413 Request Entity Too Large" in str(excinfo.value)
    assert "payload too large" not in str(excinfo.value), "the status line only, never the body"


def test_unusable_stored_keys_fail_that_device_only(channel, user, push_service):
    broken = push_service.subscribe()
    add_device(user, broken).__class__.objects.filter(registration_id=broken.endpoint).update(
        p256dh="AAAA"
    )
    with pytest.raises(FatalChannelDeliveryError, match="invalid subscription"):
        channel.deliver(make_message(user.pk), rendered())
    assert push_service.requests == []


def test_empty_title_and_oversized_payload_are_refused_before_sending(channel, user, push_service):
    add_device(user, push_service.subscribe())
    with pytest.raises(FatalChannelDeliveryError, match=EMPTY_TITLE.split("(")[0].strip()):
        channel.deliver(make_message(user.pk), rendered(title="  \n"))
    with pytest.raises(FatalChannelDeliveryError, match=str(MAX_PAYLOAD_BYTES)):
        channel.deliver(make_message(user.pk), rendered(body="x" * MAX_PAYLOAD_BYTES))
    assert push_service.requests == []


def test_ttl_is_capped_by_the_message_expiration(channel, user, push_service):
    sub = push_service.subscribe()
    add_device(user, sub)
    expires = datetime.now(UTC) + timedelta(seconds=600)
    channel.deliver(make_message(user.pk, expiration_time=expires), rendered())
    ttl = int(push_service.requests[0].headers["ttl"])
    assert 590 <= ttl <= 600


def test_misconfigured_session_fails_every_item_clearly(channel, user, push_service, push_settings):
    add_device(user, push_service.subscribe())
    push_settings.PUSH_NOTIFICATIONS_SETTINGS = {}
    with channel.open_session() as session:
        errors = session.deliver_many([(make_message(user.pk), rendered())] * 2)
    assert all(isinstance(e, FatalChannelDeliveryError) for e in errors)
    assert "VAPID_PRIVATE_KEY is not set" in str(errors[0])
    assert push_service.requests == []


# Through ace.send and the batch path
# ------------------------------------------------------------------------------


def test_ace_send_reports_sent_and_no_address(push_settings, push_templates, push_service, user):
    sub = push_service.subscribe()
    add_device(user, sub)
    context = {"first_name": "Ada", "course": "Looms"}
    [outcome] = ace.send(make_message(user.pk, context=context))
    assert (outcome.status, outcome.channel_type) == (OutcomeStatus.SENT, ChannelType.PUSH)
    assert outcome.channel_name == "push_notification"
    assert sub.decrypt_json(push_service.requests[0].body)["title"] == "Hello Ada"

    nobody = user.__class__.objects.create_user("nobody")
    [outcome] = ace.send(make_message(nobody.pk, context=context))
    assert outcome.status is OutcomeStatus.NO_ADDRESS
    assert outcome.reason == NO_DEVICE.format(user_id=nobody.pk)
    assert outcome.exception_type == "RecipientAddressMissingError"


def test_batch_sender_returns_sent_no_address_and_retry_without_sleeping(
    push_settings, push_templates, push_service, django_user_model
):
    users = [django_user_model.objects.create_user(f"b{i}") for i in range(3)]
    ok, busy = push_service.subscribe(), push_service.subscribe()
    add_device(users[0], ok)
    add_device(users[2], busy)
    push_service.script(busy, Reply(429, {"Retry-After": "45"}))
    context = {"first_name": "Ada", "course": "Looms"}
    messages = [make_message(u.pk, context=context) for u in users]

    started = time.monotonic()
    with BatchSender(limit_to_channels=[ChannelType.PUSH]) as sender:
        outcomes = sender.send(messages)
    assert time.monotonic() - started < 5, "a retry is returned, not slept on"

    assert [o.status for o in outcomes] == [
        OutcomeStatus.SENT,
        OutcomeStatus.NO_ADDRESS,
        OutcomeStatus.RETRY,
    ]
    delay = (outcomes[2].next_attempt_time - datetime.now(UTC)).total_seconds()
    assert 40 < delay <= 45
    assert "HTTP 429" in outcomes[2].reason


# The session (batch path)
# ------------------------------------------------------------------------------


def test_session_loads_devices_once_and_reuses_connection_and_token(
    channel, push_service, django_user_model
):
    users = [django_user_model.objects.create_user(f"user{i}") for i in range(5)]
    subs = []
    for u in users[:4]:
        sub = push_service.subscribe()
        add_device(u, sub)
        subs.append(sub)
    gone = push_service.subscribe()
    add_device(users[0], gone)
    push_service.script(gone, Reply(410))
    push_service.script(subs[1], Reply(429, {"Retry-After": "30"}))
    items = [(make_message(u.pk), rendered(title=f"For {u.username}")) for u in users]

    with channel.open_session() as session, CaptureQueriesContext(connection) as queries:
        errors = session.deliver_many(items)

    selects = [q for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 1, "one query loads every recipient's devices"
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, "one update deactivates the gone device"
    assert errors[0] is None
    assert isinstance(errors[1], RecoverableChannelDeliveryError)
    assert errors[2] is None and errors[3] is None
    assert isinstance(errors[4], RecipientAddressMissingError)
    for i, sub in enumerate(subs):
        [request] = push_service.requests_for(sub)
        assert sub.decrypt_json(request.body)["title"] == f"For user{i}"
    assert len({r.client_port for r in push_service.requests}) == 1, "one kept-alive connection"
    assert len({r.headers["authorization"] for r in push_service.requests}) == 1


def test_parse_retry_after():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    default = timedelta(seconds=60)
    assert parse_retry_after("90", now=now, default=default) == now + timedelta(seconds=90)
    assert parse_retry_after(None, now=now, default=default) == now + default
    assert parse_retry_after("soon", now=now, default=default) == now + default
    past = format_datetime(now - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, now=now, default=default) == now + default
    later = now + timedelta(hours=2)
    assert parse_retry_after(format_datetime(later, usegmt=True), now=now, default=default) == later
