"""get_channel_for_message over the real plugins (braze_email, django_email, file_email,
push_notification, loaded from their entry points), as the reference's rules choose:

- email: ``options['override_default_channel']`` if set (that channel only); else, for
  ``options['transactional']``, ACE_CHANNEL_TRANSACTIONAL_EMAIL then ACE_CHANNEL_DEFAULT_EMAIL;
  else ACE_CHANNEL_DEFAULT_EMAIL. Among those candidates, one whose
  ``overrides_delivery_for_message`` is true wins (Braze, for a message mapped to one of its
  campaigns), else the first.
- push: ACE_CHANNEL_DEFAULT_PUSH, else the first push channel.

No request is made: only the choice is tested (the endpoint is a name that cannot resolve)."""

from __future__ import annotations

from unittest import mock

import pytest
from push_fixtures import *  # noqa: F403  (the fixtures)

from ace.channel import ChannelType, channels, get_channel_for_message
from ace.channel.braze import BrazeEmailChannel
from ace.channel.django_email import DjangoEmailChannel
from ace.channel.file import FileEmailChannel
from ace.channel.push_notification import PushNotificationChannel
from ace.message import Message
from ace.recipient import Recipient

EMAIL, PUSH = ChannelType.EMAIL, ChannelType.PUSH


@pytest.fixture
def all_channels(push_settings):
    settings = push_settings
    settings.ACE_ENABLED_CHANNELS = [
        "braze_email",
        "django_email",
        "file_email",
        "push_notification",
    ]
    settings.ACE_CHANNEL_BRAZE_API_KEY = "key"
    settings.ACE_CHANNEL_BRAZE_APP_ID = "app"
    settings.ACE_CHANNEL_BRAZE_REST_ENDPOINT = "rest.braze.invalid"
    settings.ACE_CHANNEL_BRAZE_CAMPAIGNS = {"campaign_msg": "campaign-id"}
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "braze_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "django_email"
    return settings


def message(name="regular_msg", **options) -> Message:
    return Message(
        app_label="testapp",
        name=name,
        recipient=Recipient(lms_user_id=7, email_address="ada@example.org"),
        options=options,
    )


def chosen(msg, channel_type=EMAIL):
    channel = get_channel_for_message(channel_type, msg)
    return channels().name_of(channel)


def test_every_plugin_is_loaded_from_its_entry_point(all_channels):
    channel_map = channels()
    assert isinstance(channel_map.get_channel_by_name(EMAIL, "braze_email"), BrazeEmailChannel)
    assert isinstance(channel_map.get_channel_by_name(EMAIL, "django_email"), DjangoEmailChannel)
    assert isinstance(channel_map.get_channel_by_name(EMAIL, "file_email"), FileEmailChannel)
    push = channel_map.get_channel_by_name(PUSH, "push_notification")
    assert isinstance(push, PushNotificationChannel)
    assert channel_map.disabled == {}


@pytest.mark.parametrize(
    "name, options, expected",
    [
        # Default braze: a regular message goes to Braze (/messages/send).
        ("regular_msg", {}, "braze_email"),
        # Transactional, no Braze campaign, braze does not claim it: the transactional channel.
        ("regular_msg", {"transactional": True}, "django_email"),
        # Transactional with a Braze campaign: Braze claims it over the transactional channel.
        ("campaign_msg", {"transactional": True}, "braze_email"),
        ("campaign_msg", {}, "braze_email"),
        # override_default_channel: that channel, whatever else the options say.
        ("regular_msg", {"override_default_channel": "file_email"}, "file_email"),
        ("campaign_msg", {"override_default_channel": "file_email"}, "file_email"),
        (
            "campaign_msg",
            {"override_default_channel": "django_email", "transactional": True},
            "django_email",
        ),
        # A false transactional flag is no flag.
        ("regular_msg", {"transactional": False}, "braze_email"),
    ],
)
def test_email_with_braze_as_the_default(all_channels, name, options, expected):
    assert chosen(message(name, **options)) == expected


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("regular_msg", {}, "django_email"),
        ("regular_msg", {"transactional": True}, "file_email"),
        # Braze is not a candidate here, so it cannot claim its campaign message.
        ("campaign_msg", {}, "django_email"),
        ("campaign_msg", {"transactional": True}, "file_email"),
        ("regular_msg", {"override_default_channel": "braze_email"}, "braze_email"),
    ],
)
def test_email_with_django_as_the_default(all_channels, name, options, expected):
    all_channels.ACE_CHANNEL_DEFAULT_EMAIL = "django_email"
    all_channels.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "file_email"
    assert chosen(message(name, **options)) == expected


def test_an_unconfigured_braze_default_falls_back_to_another_email_channel(all_channels, caplog):
    all_channels.ACE_CHANNEL_BRAZE_API_KEY = ""
    assert "braze_email" in channels().disabled
    assert chosen(message()) == "django_email"  # the first enabled email channel
    assert chosen(message("campaign_msg", transactional=True)) == "django_email"
    assert "braze_email" in caplog.text


def test_push_uses_the_default_push_setting_or_the_first_push_channel(all_channels):
    assert chosen(message(), PUSH) == "push_notification"
    all_channels.ACE_CHANNEL_DEFAULT_PUSH = "push_notification"
    assert chosen(message("campaign_msg", transactional=True), PUSH) == "push_notification"


def test_a_message_whose_options_are_not_a_mapping_gets_the_default(all_channels):
    msg = mock.Mock()
    msg.name = "regular_msg"
    msg.language = None
    assert chosen(msg) == "braze_email"
    msg.name = "campaign_msg"
    assert chosen(msg) == "braze_email"
