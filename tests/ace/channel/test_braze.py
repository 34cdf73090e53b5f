"""Tests for the Braze email channel, over real HTTP against a loopback fake Braze API."""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Iterator

import pytest
from fake_braze import (
    CAMPAIGN_SEND,
    MESSAGE_SEND,
    TEST_API_KEY,
    TEST_APP_ID,
    TEST_CAMPAIGN,
    FakeBraze,
)

from ace import ace
from ace.batch import BatchSender
from ace.channel import ChannelType, channels
from ace.channel.braze import (
    DEFAULT_RETRY_DELAY,
    REQUIRED_SETTINGS,
    UNSUBSCRIBE_URL,
    BrazeAPIError,
    BrazeEmailChannel,
    NoBrazeUserError,
)
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    InvalidMessageError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.message import Message
from ace.outcome import OutcomeStatus
from ace.recipient import Recipient
from ace.renderers import RenderedEmail

RENDERED = RenderedEmail(
    from_name="Demo Team",
    subject="Welcome,\n  Ada ✓",
    body_html="<p>Hello Ada</p>",
    head_html="<style>p { color: #333 }</style>",
    body="Hello Ada",
)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_message(name="welcome", user_id=7, language=None, **options) -> Message:
    return Message(
        app_label="testapp",
        name=name,
        recipient=Recipient(lms_user_id=user_id, email_address="ada@example.org"),
        language=language,
        options=options,
    )


def free_port() -> int:
    with socket.socket() as sock:  # a loopback port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_braze() -> Iterator[FakeBraze]:
    with FakeBraze() as fake:
        yield fake


@pytest.fixture
def braze_settings(settings, fake_braze):
    settings.ACE_CHANNEL_BRAZE_API_KEY = TEST_API_KEY
    settings.ACE_CHANNEL_BRAZE_APP_ID = TEST_APP_ID
    settings.ACE_CHANNEL_BRAZE_REST_ENDPOINT = fake_braze.url
    settings.ACE_CHANNEL_BRAZE_CAMPAIGNS = {"campaign_message": TEST_CAMPAIGN}
    settings.ACE_CHANNEL_BRAZE_FROM_EMAIL = "noreply@example.org"
    settings.ACE_CHANNEL_BRAZE_TIMEOUT = 5
    return settings


# -- enabled() ------------------------------------------------------------------------------------


def test_enabled_with_the_required_settings(braze_settings):
    assert BrazeEmailChannel.enabled() is True
    assert BrazeEmailChannel.disabled_reason() is None
    braze_settings.ACE_CHANNEL_BRAZE_REST_ENDPOINT = "rest.iad-01.braze.com"  # https implied
    assert BrazeEmailChannel.enabled() is True


@pytest.mark.parametrize("missing", REQUIRED_SETTINGS)
def test_disabled_without_a_required_setting(braze_settings, missing):
    setattr(braze_settings, missing, "")
    assert BrazeEmailChannel.enabled() is False
    assert missing in BrazeEmailChannel.disabled_reason()
    delattr(braze_settings, missing)
    assert BrazeEmailChannel.enabled() is False


def test_plain_http_is_only_for_loopback(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_REST_ENDPOINT = "http://rest.iad-01.braze.com"
    assert BrazeEmailChannel.enabled() is False
    assert "https" in BrazeEmailChannel.disabled_reason()
    with pytest.raises(FatalChannelDeliveryError, match="https"):
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert fake_braze.requests == []


def test_channels_loads_braze_email_and_leaves_it_out_when_unconfigured(braze_settings):
    braze_settings.ACE_ENABLED_CHANNELS = ["braze_email", "django_email"]
    channel = channels().get_channel_by_name(ChannelType.EMAIL, "braze_email")
    assert isinstance(channel, BrazeEmailChannel)

    braze_settings.ACE_CHANNEL_BRAZE_API_KEY = ""
    channel_map = channels()
    assert "ACE_CHANNEL_BRAZE_API_KEY" in channel_map.disabled["braze_email"]
    assert list(channel_map.channel_type_to_channel_impl[ChannelType.EMAIL]) == ["django_email"]


# -- regular sends: /messages/send ----------------------------------------------------------------


def test_a_regular_send_posts_an_email_object_with_the_bearer_key(braze_settings, fake_braze):
    BrazeEmailChannel().deliver(make_message(), RENDERED)

    [request] = fake_braze.requests
    assert (request.method, request.path, request.status) == ("POST", MESSAGE_SEND, 201)
    assert request.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body["external_user_ids"] == ["7"]
    assert body["recipient_subscription_state"] == "subscribed"
    email = body["messages"]["email"]
    assert email["app_id"] == TEST_APP_ID
    assert email["subject"] == "Welcome, Ada ✓"
    assert email["from"] == "Demo Team <noreply@example.org>"
    assert email["plaintext_body"] == "Hello Ada"
    assert "<style>p { color: #333 }</style>" in email["body"]
    assert "<p>Hello Ada</p>" in email["body"]
    assert "reply_to" not in email and "headers" not in email
    assert "campaign_id" not in body


def test_transactional_messages_go_to_every_user(braze_settings, fake_braze):
    BrazeEmailChannel().deliver(make_message(transactional=True), RENDERED)
    assert fake_braze.requests[0].json["recipient_subscription_state"] == "all"


def test_reply_to_and_headers_are_passed(braze_settings, fake_braze):
    message = make_message(reply_to=["help@example.org"], headers={"X-Course": "demo"})
    BrazeEmailChannel().deliver(message, RENDERED)
    email = fake_braze.requests[0].json["messages"]["email"]
    assert email["reply_to"] == "help@example.org"
    assert email["headers"] == {"X-Course": "demo"}


@pytest.mark.parametrize(
    "setting, from_address, expected",
    [
        ("Platform <noreply@example.org>", None, "Platform <noreply@example.org>"),
        ("", "custom@example.org", "Demo Team <custom@example.org>"),
        (None, None, "Platform <noreply@example.org>"),  # DEFAULT_FROM_EMAIL (tests' conftest)
    ],
)
def test_the_from_address(braze_settings, fake_braze, setting, from_address, expected):
    braze_settings.ACE_CHANNEL_BRAZE_FROM_EMAIL = setting
    options = {"from_address": from_address} if from_address else {}
    BrazeEmailChannel().deliver(make_message(**options), RENDERED)
    assert fake_braze.requests[0].json["messages"]["email"]["from"] == expected


def test_a_display_name_with_special_characters_is_quoted(braze_settings, fake_braze):
    rendered = RenderedEmail(
        from_name='Team "A", Inc.', subject="s", body_html="<p>b</p>", head_html="", body="b"
    )
    BrazeEmailChannel().deliver(make_message(), rendered)
    email = fake_braze.requests[0].json["messages"]["email"]
    assert email["from"] == '"Team \\"A\\", Inc." <noreply@example.org>'
    assert fake_braze.requests[0].status == 201


def test_a_newline_in_the_from_address_is_refused_before_any_request(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_FROM_EMAIL = "a@example.org\nBcc: eve@example.org"
    with pytest.raises(FatalChannelDeliveryError, match="Newlines"):
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert fake_braze.requests == []


@pytest.mark.parametrize("user_id", [None, ""])
def test_a_recipient_without_a_braze_user_is_refused_before_any_request(
    braze_settings, fake_braze, user_id
):
    with pytest.raises(NoBrazeUserError, match="No Braze user") as excinfo:
        BrazeEmailChannel().deliver(make_message(user_id=user_id), RENDERED)
    assert isinstance(excinfo.value, InvalidMessageError)
    assert isinstance(excinfo.value, RecipientAddressMissingError)
    assert fake_braze.requests == []


# -- campaign sends: /campaigns/trigger/send ------------------------------------------------------


def test_a_message_mapped_to_a_campaign_triggers_it(braze_settings, fake_braze):
    BrazeEmailChannel().deliver(make_message("campaign_message"), RENDERED)

    [request] = fake_braze.requests
    assert (request.path, request.status) == (CAMPAIGN_SEND, 201)
    assert request.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    body = request.json
    assert body["campaign_id"] == TEST_CAMPAIGN
    [recipient] = body["recipients"]
    assert recipient["external_user_id"] == "7"
    properties = recipient["trigger_properties"]
    assert properties["ace_template_subject"] == "Welcome,\n  Ada ✓"
    assert properties["ace_template_body_html"] == "<p>Hello Ada</p>"
    assert properties["ace_template_from_name"] == "Demo Team"
    assert "messages" not in body


def test_a_language_specific_campaign_wins_for_that_language(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_CAMPAIGNS = {
        "campaign_message": TEST_CAMPAIGN,
        "campaign_message:es": "campaign-es",
    }
    fake_braze.campaigns.add("campaign-es")
    channel = BrazeEmailChannel()
    channel.deliver(make_message("campaign_message", language="es"), RENDERED)
    channel.deliver(make_message("campaign_message", language="fr"), RENDERED)
    assert [r.json["campaign_id"] for r in fake_braze.requests] == ["campaign-es", TEST_CAMPAIGN]


def test_an_unknown_campaign_is_a_fatal_error(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_CAMPAIGNS = {"campaign_message": "no-such-campaign"}
    with pytest.raises(FatalChannelDeliveryError, match=r"HTTP 400.*Invalid campaign_id"):
        BrazeEmailChannel().deliver(make_message("campaign_message"), RENDERED)


def test_overrides_delivery_only_for_campaign_messages(braze_settings):
    channel = BrazeEmailChannel()
    assert channel.overrides_delivery_for_message(make_message("campaign_message")) is True
    assert channel.overrides_delivery_for_message(make_message("welcome")) is False
    braze_settings.ACE_CHANNEL_BRAZE_CAMPAIGNS = None
    assert channel.overrides_delivery_for_message(make_message("campaign_message")) is False


# -- errors by HTTP status ------------------------------------------------------------------------


def test_429_is_recoverable_at_the_rate_limit_reset(braze_settings, fake_braze):
    reset = int(time.time()) + 90
    fake_braze.queue(429, {"message": "Rate limit exceeded"}, {"X-RateLimit-Reset": str(reset)})
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert excinfo.value.next_attempt_time == datetime.datetime.fromtimestamp(reset, datetime.UTC)
    assert "HTTP 429" in excinfo.value.message
    assert "Rate limit exceeded" in excinfo.value.message
    assert isinstance(excinfo.value.__cause__, BrazeAPIError)
    assert fake_braze.sends == []


def test_retry_after_is_honoured(braze_settings, fake_braze):
    fake_braze.rate_limit_reset = 0  # in the past: unusable
    fake_braze.queue(429, {"message": "slow down"}, {"Retry-After": "120"})
    before = utcnow()
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    when = excinfo.value.next_attempt_time
    two_minutes = datetime.timedelta(seconds=120)
    assert before + two_minutes - datetime.timedelta(seconds=1) <= when <= utcnow() + two_minutes


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_recoverable_after_the_default_delay(braze_settings, fake_braze, status):
    fake_braze.rate_limit_reset = 0
    fake_braze.queue(status, {"message": "Internal Server Error"})
    before = utcnow()
    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert before + DEFAULT_RETRY_DELAY <= excinfo.value.next_attempt_time
    assert excinfo.value.next_attempt_time <= utcnow() + DEFAULT_RETRY_DELAY
    assert f"HTTP {status}" in excinfo.value.message


@pytest.mark.parametrize("status", [400, 403, 404, 413, 422])
def test_other_4xx_are_fatal(braze_settings, fake_braze, status):
    fake_braze.queue(status, {"message": "nope", "errors": ["bad thing"]})
    with pytest.raises(FatalChannelDeliveryError) as excinfo:
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert not isinstance(excinfo.value, RecoverableChannelDeliveryError)
    assert f"HTTP {status}" in str(excinfo.value)
    assert "nope" in str(excinfo.value) and "bad thing" in str(excinfo.value)


def test_a_wrong_api_key_is_refused_by_the_fake_and_fatal(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_API_KEY = "someone-elses-key"
    with pytest.raises(FatalChannelDeliveryError, match=r"HTTP 401.*Invalid API key"):
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert fake_braze.requests[0].status == 401
    assert fake_braze.sends == []


def test_a_wrong_app_id_is_refused(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_APP_ID = "other-app"
    with pytest.raises(FatalChannelDeliveryError, match="Invalid app_id"):
        BrazeEmailChannel().deliver(make_message(), RENDERED)


def test_a_redirect_is_not_followed_and_is_fatal(braze_settings, fake_braze):
    fake_braze.queue(302, {"message": "moved"}, {"Location": "http://127.0.0.1:1/elsewhere"})
    with pytest.raises(FatalChannelDeliveryError, match="HTTP 302"):
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert len(fake_braze.requests) == 1


def test_a_success_with_minor_errors_is_a_success(braze_settings, fake_braze, caplog):
    fake_braze.queue(201, {"message": "success", "errors": ["one user unknown"]})
    BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert "one user unknown" in caplog.text


def test_connection_refused_is_recoverable(braze_settings):
    braze_settings.ACE_CHANNEL_BRAZE_REST_ENDPOINT = f"http://127.0.0.1:{free_port()}"
    before = utcnow()
    with pytest.raises(RecoverableChannelDeliveryError, match="Could not reach Braze") as excinfo:
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert excinfo.value.next_attempt_time >= before + DEFAULT_RETRY_DELAY


def test_a_dropped_connection_after_the_request_is_an_unknown_outcome(braze_settings, fake_braze):
    fake_braze.queue_drop()
    with pytest.raises(DeliveryOutcomeUnknownError, match="No answer from Braze"):
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert len(fake_braze.requests) == 1  # not retried


def test_a_read_timeout_is_an_unknown_outcome(braze_settings, fake_braze):
    braze_settings.ACE_CHANNEL_BRAZE_TIMEOUT = 0.2
    fake_braze.delay = 1.0
    started = time.monotonic()
    with pytest.raises(DeliveryOutcomeUnknownError) as excinfo:
        BrazeEmailChannel().deliver(make_message(), RENDERED)
    assert time.monotonic() - started < 0.9
    assert not isinstance(excinfo.value, RecoverableChannelDeliveryError)
    assert len(fake_braze.sends) == 1  # Braze had accepted it: a retry would send it twice


# -- links, and through the library ---------------------------------------------------------------


def test_action_links_are_braze_unsubscribe_liquid():
    channel = BrazeEmailChannel()
    assert channel.action_links == [(UNSUBSCRIBE_URL, "Unsubscribe from this list")]
    assert UNSUBSCRIBE_URL == "{{${unsubscribe_url}}}"
    assert channel.get_action_links(omit_unsubscribe_link=True) == []
    assert channel.tracker_image_sources == []


@pytest.fixture
def ace_over_braze(braze_settings):
    braze_settings.ACE_ENABLED_CHANNELS = ["braze_email"]
    braze_settings.ACE_CHANNEL_DEFAULT_EMAIL = "braze_email"
    braze_settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "braze_email"
    braze_settings.ACE_DEFAULT_EXPIRATION_DELAY = 5
    return braze_settings


def course_update(user_id=7, **context) -> Message:
    return Message(
        app_label="testapp",
        name="testmessage",
        recipient=Recipient(lms_user_id=user_id, email_address="learner@example.org"),
        context={"name": "Ada", "topic": "course", "items": ["one"], **context},
        language="en",
    )


def test_ace_send_renders_and_delivers_through_braze(ace_over_braze, fake_braze):
    [outcome] = ace.send(course_update())
    assert (outcome.status, outcome.channel_name) == (OutcomeStatus.SENT, "braze_email")
    [sent] = fake_braze.sends
    email = sent["messages"]["email"]
    assert email["subject"] == "Hello Ada, your course update"
    assert email["from"] == "Test Platform <noreply@example.org>"
    assert f'<a href="{UNSUBSCRIBE_URL}">Unsubscribe from this list</a>' in email["body"]


def test_ace_send_reports_a_braze_refusal_as_failed(ace_over_braze, fake_braze):
    fake_braze.queue(400, {"message": "Invalid request"})
    [outcome] = ace.send(course_update())
    assert outcome.status is OutcomeStatus.FAILED
    assert "Invalid request" in outcome.reason


def test_a_batch_uses_one_connection_and_stops_once_rate_limited(ace_over_braze, fake_braze):
    with BatchSender() as sender:
        outcomes = sender.send([course_update(user_id=i) for i in (1, 2, 3)])
    assert [o.status for o in outcomes] == [OutcomeStatus.SENT] * 3
    assert len({r.client_port for r in fake_braze.requests}) == 1  # one kept-alive connection

    reset = int(time.time()) + 120
    fake_braze.queue(429, {"message": "Rate limit exceeded"}, {"X-RateLimit-Reset": str(reset)})
    with BatchSender() as sender:
        outcomes = sender.send([course_update(user_id=i) for i in (4, 5, 6)])
    retry_at = datetime.datetime.fromtimestamp(reset, datetime.UTC)
    assert [o.status for o in outcomes] == [OutcomeStatus.RETRY] * 3
    assert {o.next_attempt_time for o in outcomes} == {retry_at}
    assert len(fake_braze.requests) == 4  # the two after the 429 never hit the API
    assert "earlier in this batch" in outcomes[1].reason


def test_a_5xx_in_a_batch_does_not_stop_it(ace_over_braze, fake_braze):
    fake_braze.queue(500, {"message": "oops"})
    with BatchSender() as sender:
        outcomes = sender.send([course_update(user_id=i) for i in (1, 2)])
    assert [o.status for o in outcomes] == [OutcomeStatus.RETRY, OutcomeStatus.SENT]


def test_a_batch_reports_a_recipient_without_user_id_and_sends_the_rest(ace_over_braze, fake_braze):
    with BatchSender() as sender:
        outcomes = sender.send([course_update(user_id=1), course_update(user_id=None)])
    assert [o.status for o in outcomes] == [OutcomeStatus.SENT, OutcomeStatus.NO_ADDRESS]
    assert len(fake_braze.requests) == 1


def test_the_fake_checks_what_braze_checks(fake_braze):
    """The fake's checks are independent of the channel: a request Braze would refuse is
    refused (wrong auth scheme, form-encoded body, missing app id), a correct one accepted."""
    import requests

    url = fake_braze.url + MESSAGE_SEND
    good = {
        "external_user_ids": ["7"],
        "messages": {"email": {"app_id": TEST_APP_ID, "from": "a@example.org", "body": "<p/>"}},
    }
    bearer = {"Authorization": f"Bearer {TEST_API_KEY}"}
    assert requests.post(url, json=good, headers=bearer, timeout=5).status_code == 201
    token = {"Authorization": f"Token {TEST_API_KEY}"}
    assert requests.post(url, json=good, headers=token, timeout=5).status_code == 401
    assert requests.post(url, data={"x": "1"}, headers=bearer, timeout=5).status_code == 400
    no_app = {**good, "messages": {"email": {"from": "a@example.org", "body": "<p/>"}}}
    assert requests.post(url, json=no_app, headers=bearer, timeout=5).status_code == 400
    assert len(fake_braze.sends) == 1
