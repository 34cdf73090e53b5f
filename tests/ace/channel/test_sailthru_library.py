"""Tests for the Sailthru email channel through the library (ace.send, BatchSender, the
acetags template tag, channels()), over real HTTP against a loopback fake Sailthru API."""

from __future__ import annotations

import datetime
import logging
import socket
import time
from unittest import mock

import pytest
from fake_sailthru import TEST_TEMPLATE as SAILTHRU_TEMPLATE

from ace import ace
from ace.batch import BatchSender
from ace.channel import ChannelType, channels
from ace.channel import sailthru as sailthru_module
from ace.channel.sailthru import RecoverableErrorCodes, SailthruEmailChannel
from ace.errors import RecoverableChannelDeliveryError
from ace.message import Message
from ace.outcome import OutcomeStatus
from ace.recipient import Recipient
from ace.renderers import RenderedEmail
from ace.utils import once

RENDERED = RenderedEmail(
    from_name="Demo Course Team",
    subject="Welcome, Ada ✓",
    body_html="<p>Hello Ada, <a href='{view_url}'>view online</a></p>",
    head_html="<style>p { color: #333 }</style>",
    body="Hello Ada",
)


def make_message(email: str | None = "ada@example.com") -> Message:
    return Message(
        app_label="campaigns",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address=email),
        context={"first_name": "Ada"},
    )


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


TEMPLATE_DIR = "sailthru_test/edx_ace/welcome/email/"
MESSAGE_TEMPLATES = {
    TEMPLATE_DIR + "from_name.txt": "{{ course_name }} Team",
    TEMPLATE_DIR + "subject.txt": "Welcome, {{ first_name }}",
    TEMPLATE_DIR + "head.html": "<title>Welcome</title>",
    TEMPLATE_DIR + "body.txt": "Hello {{ first_name }}",
    TEMPLATE_DIR + "body.html": (
        "{% load acetags %}<p>Hello {{ first_name }}</p>"
        "{% get_action_links channel as links %}"
        '{% for url, label in links %}<a href="{{ url }}">{{ label }}</a>{% endfor %}'
        '{% for src in channel.tracker_image_sources %}<img src="{{ src }}">{% endfor %}'
    ),
}


@pytest.fixture
def ace_over_sailthru(sailthru_settings):
    """ACE configured with Sailthru as its only email channel, no policies, and the message
    templates above served from memory."""
    sailthru_settings.ACE_ENABLED_CHANNELS = ["sailthru_email"]
    sailthru_settings.ACE_CHANNEL_DEFAULT_EMAIL = "sailthru_email"
    sailthru_settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "sailthru_email"
    sailthru_settings.ACE_ENABLED_POLICIES = []
    sailthru_settings.ACE_DEFAULT_EXPIRATION_DELAY = 5
    sailthru_settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader", MESSAGE_TEMPLATES)]},
        }
    ]
    once.reset_all()
    yield sailthru_settings
    once.reset_all()


def welcome(email: str | None = "ada@example.com", **context) -> Message:
    return Message(
        app_label="sailthru_test",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address=email),
        context={"first_name": "Ada", "course_name": "Demo Course", **context},
        language="en",
    )


def test_ace_send_renders_and_delivers_through_sailthru(ace_over_sailthru, fake_sailthru):
    [outcome] = ace.send(welcome())

    assert (outcome.status, outcome.channel_name) == (OutcomeStatus.SENT, "sailthru_email")
    [sent] = fake_sailthru.sends
    assert sent["template"] == SAILTHRU_TEMPLATE
    assert sent["email"] == "ada@example.com"
    template_vars = sent["vars"]
    assert template_vars["ace_template_from_name"] == "Demo Course Team"
    assert template_vars["ace_template_subject"] == "Welcome, Ada"
    assert template_vars["ace_template_head_html"] == "<title>Welcome</title>"
    # The acetags tag and the tracker list put Sailthru's own placeholders in the body, which
    # the Sailthru template code then replaces per recipient.
    body_html = template_vars["ace_template_body_html"]
    assert body_html == (
        '<p>Hello Ada</p><a href="{view_url}">View on Web</a>'
        '<a href="{optout_confirm_url}">Unsubscribe from this list</a>'
        '<img src="{beacon_src}">'
    )
    for placeholder in ("{beacon_src}", "{view_url}", "{optout_confirm_url}"):
        assert placeholder in body_html


def test_omitting_the_unsubscribe_link_in_a_template_keeps_view_on_web(
    ace_over_sailthru, fake_sailthru
):
    ace.send(welcome(omit_unsubscribe_link=True))
    body_html = fake_sailthru.sends[0]["vars"]["ace_template_body_html"]
    assert '<a href="{view_url}">View on Web</a>' in body_html
    assert "{optout_confirm_url}" not in body_html


def test_ace_send_reports_a_sailthru_refusal_as_failed(ace_over_sailthru, fake_sailthru):
    fake_sailthru.queue_error(11, "Invalid email: ada@example.com")

    [outcome] = ace.send(welcome())

    assert outcome.status is OutcomeStatus.FAILED
    assert "Sailthru error 11" in outcome.reason
    assert fake_sailthru.sends == []


def test_ace_send_retries_after_the_rate_limit_reset(ace_over_sailthru, fake_sailthru):
    fake_sailthru.queue_error(
        RecoverableErrorCodes.RATE_LIMIT, "slow down", headers={"X-Rate-Limit-Reset": "0"}
    )

    with mock.patch.object(sailthru_module, "DEFAULT_RETRY_DELAY", datetime.timedelta(0)):
        [outcome] = ace.send(welcome())

    # The first request was refused with a reset in the past; ace.send waited (not a negative
    # time) and the second request went through.
    assert outcome.status is OutcomeStatus.SENT
    assert [r.status for r in fake_sailthru.requests] == [429, 200]
    assert len(fake_sailthru.sends) == 1


def test_batch_stops_calling_sailthru_once_rate_limited(ace_over_sailthru, fake_sailthru):
    reset = int(time.time()) + 120
    fake_sailthru.queue_error(
        RecoverableErrorCodes.RATE_LIMIT, "slow down", headers={"X-Rate-Limit-Reset": str(reset)}
    )
    messages = [welcome(f"user{i}@example.com") for i in range(4)]

    with BatchSender() as sender:
        outcomes = sender.send(messages)

    retry_at = datetime.datetime.fromtimestamp(reset, datetime.UTC)
    assert [o.status for o in outcomes] == [OutcomeStatus.RETRY] * 4
    assert {o.next_attempt_time for o in outcomes} == {retry_at}
    assert len(fake_sailthru.requests) == 1  # the other three never hit the API
    assert "earlier in this batch" in outcomes[1].reason


def test_batch_reports_missing_address_and_sends_the_rest(ace_over_sailthru, fake_sailthru):
    messages = [welcome("a@example.com"), welcome(None), welcome("c@example.com")]

    with BatchSender() as sender:
        outcomes = sender.send(messages)

    assert [o.status for o in outcomes] == [
        OutcomeStatus.SENT,
        OutcomeStatus.NO_ADDRESS,
        OutcomeStatus.SENT,
    ]
    assert [s["email"] for s in fake_sailthru.sends] == ["a@example.com", "c@example.com"]


def test_session_resumes_after_the_pause_and_pauses_on_unreachable_api(
    sailthru_settings, fake_sailthru
):
    channel = SailthruEmailChannel()
    fake_sailthru.queue_error(RecoverableErrorCodes.RATE_LIMIT, "slow down")
    with channel.open_session() as session:
        first = session.deliver_many([(make_message(), RENDERED)])[0]
        assert isinstance(first, RecoverableChannelDeliveryError)
        assert session.paused_until == first.next_attempt_time

        session.paused_until = utcnow() - datetime.timedelta(seconds=1)  # the reset has passed
        assert session.deliver_many([(make_message(), RENDERED)]) == [None]
        assert len(fake_sailthru.sends) == 1

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        sailthru_settings.ACE_CHANNEL_SAILTHRU_API_URL = f"http://127.0.0.1:{port}"
        errors = session.deliver_many([(make_message(), RENDERED)] * 3)
    assert all(isinstance(e, RecoverableChannelDeliveryError) for e in errors)
    assert "Could not reach Sailthru" in errors[0].message
    assert all("earlier in this batch" in e.message for e in errors[1:])


def test_an_internal_error_does_not_pause_the_batch(sailthru_settings, fake_sailthru):
    """Error 9 concerns one request; the next message is still tried."""
    fake_sailthru.queue_error(RecoverableErrorCodes.INTERNAL_ERROR, "oops")
    with SailthruEmailChannel().open_session() as session:
        errors = session.deliver_many([(make_message(), RENDERED)] * 2)
    assert isinstance(errors[0], RecoverableChannelDeliveryError)
    assert errors[1] is None
    assert len(fake_sailthru.sends) == 1


def test_omit_unsubscribe_link_leaves_it_out():
    channel = SailthruEmailChannel()
    assert channel.get_action_links(omit_unsubscribe_link=False) == channel.action_links
    assert channel.get_action_links(omit_unsubscribe_link=True) == [("{view_url}", "View on Web")]


def test_channels_leaves_out_an_unconfigured_sailthru_and_says_why(ace_over_sailthru, caplog):
    ace_over_sailthru.ACE_ENABLED_CHANNELS = ["sailthru_email", "django_email"]
    ace_over_sailthru.ACE_CHANNEL_SAILTHRU_API_SECRET = ""
    once.reset_all()

    with caplog.at_level(logging.WARNING):
        channel_map = channels()

    assert not isinstance(channel_map.get_default_channel(ChannelType.EMAIL), SailthruEmailChannel)
    assert "ACE_CHANNEL_SAILTHRU_API_SECRET" in channel_map.disabled["sailthru_email"]
    assert any(
        "sailthru_email" in r.getMessage() and "ACE_CHANNEL_SAILTHRU_API_SECRET" in r.getMessage()
        for r in caplog.records
    )


def test_channels_loads_sailthru_when_configured(ace_over_sailthru):
    channel = channels().get_channel_by_name(ChannelType.EMAIL, "sailthru_email")
    assert isinstance(channel, SailthruEmailChannel)
