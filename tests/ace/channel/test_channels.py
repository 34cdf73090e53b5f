"""Tests for ace.channel: ChannelType, Channel, ChannelSession, ChannelMap, channels(),
get_channel_for_message."""

from __future__ import annotations

import logging

import pytest
from ace_stubs import StubEmailChannel, StubPushChannel, make_message
from django.core.exceptions import ImproperlyConfigured

from ace.channel import (
    Channel,
    ChannelMap,
    ChannelSession,
    ChannelType,
    channels,
    get_channel_for_message,
)
from ace.channel.django_email import DjangoEmailChannel
from ace.errors import (
    FatalChannelDeliveryError,
    RecoverableChannelDeliveryError,
    UnsupportedChannelError,
)
from ace.test_utils import patch_channels
from ace.utils.date import get_current_time


def test_channel_type_values():
    assert ChannelType.EMAIL.value == "email"
    assert ChannelType.PUSH.value == "push"
    assert str(ChannelType.EMAIL) == "email"
    assert ChannelType("push") is ChannelType.PUSH


def test_channel_is_abstract_with_defaults():
    with pytest.raises(TypeError):
        Channel()

    class Minimal(Channel):
        channel_type = ChannelType.EMAIL

        def deliver(self, message, rendered_message):
            return None

    assert Channel.channel_type is None
    assert Minimal.enabled() is True
    assert Minimal().overrides_delivery_for_message(make_message()) is False
    assert type(Minimal().open_session()) is ChannelSession


def test_default_session_delivers_each_item_and_returns_errors():
    channel = StubEmailChannel()
    retry = RecoverableChannelDeliveryError("later", get_current_time())
    channel.errors = [retry]
    messages = [make_message() for _ in range(3)]
    with ChannelSession(channel) as session:
        results = session.deliver_many([(m, f"rendered-{i}") for i, m in enumerate(messages)])
    assert results == [retry, None, None]
    assert channel.delivered == [(messages[1], "rendered-1"), (messages[2], "rendered-2")]


def test_default_session_turns_unexpected_exceptions_into_fatal_errors():
    channel = StubEmailChannel()
    channel.errors = [KeyError("bug")]
    (result, ok) = ChannelSession(channel).deliver_many([(make_message(), None)] * 2)
    assert isinstance(result, FatalChannelDeliveryError)
    assert isinstance(result.__cause__, KeyError)
    assert ok is None


def test_channel_map_registration_and_lookup():
    default, transactional, push = StubEmailChannel(), StubEmailChannel(), StubPushChannel()
    channel_map = ChannelMap([["default", default], ["transactional", transactional]])
    channel_map.register_channel(push, "push")
    assert channel_map.get_channel_by_name(ChannelType.EMAIL, "transactional") is transactional
    assert channel_map.get_default_channel(ChannelType.EMAIL) is default  # first registered
    assert channel_map.get_default_channel(ChannelType.PUSH) is push
    assert channel_map.name_of(transactional) == "transactional"
    assert channel_map.name_of(StubEmailChannel()) is None
    assert channel_map.has_channel_type(ChannelType.PUSH)
    with pytest.raises(KeyError):
        channel_map.get_channel_by_name(ChannelType.PUSH, "default")
    assert "transactional" in str(channel_map)


def test_channel_map_without_a_type_raises_unsupported():
    channel_map = ChannelMap([["default", StubEmailChannel()]])
    assert not channel_map.has_channel_type(ChannelType.PUSH)
    with pytest.raises(UnsupportedChannelError, match="push"):
        channel_map.get_default_channel(ChannelType.PUSH)


def test_channel_map_refuses_a_channel_without_a_type():
    class Untyped(StubEmailChannel):
        channel_type = None

    with pytest.raises(ImproperlyConfigured, match="untyped"):
        ChannelMap([["untyped", Untyped()]])


# channels(): real entry points ----------------------------------------------------------


def test_channels_loads_the_enabled_entry_points(settings):
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    channel_map = channels()
    assert isinstance(channel_map, ChannelMap)
    assert isinstance(channel_map.get_default_channel(ChannelType.EMAIL), DjangoEmailChannel)
    assert channels() is channel_map  # loaded once
    assert not channel_map.has_channel_type(ChannelType.PUSH)


def test_channels_reload_when_an_ace_setting_changes(settings):
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    first = channels()
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    assert channels() is not first


def test_unknown_channel_name_is_an_error_naming_it(settings):
    settings.ACE_ENABLED_CHANNELS = ["django_email", "djangoemail"]
    with pytest.raises(ImproperlyConfigured, match="djangoemail"):
        channels()


def test_disabled_channel_is_left_out_with_a_log_line(settings, caplog):
    settings.ACE_ENABLED_CHANNELS = ["sailthru_email", "django_email"]
    settings.ACE_CHANNEL_SAILTHRU_API_KEY = ""
    settings.ACE_CHANNEL_SAILTHRU_API_SECRET = ""
    settings.ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME = ""
    with caplog.at_level(logging.WARNING, logger="ace.utils.plugins"):
        channel_map = channels()
    assert list(channel_map.channel_type_to_channel_impl[ChannelType.EMAIL]) == ["django_email"]
    assert "sailthru_email" in channel_map.disabled
    assert any("sailthru_email" in r.getMessage() for r in caplog.records)


def test_several_channels_of_one_type_in_settings_order(settings):
    class OtherEmail(StubEmailChannel):
        pass

    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    channel_map = channels()
    channel_map.register_channel(OtherEmail(), "other")
    names = list(channel_map.channel_type_to_channel_impl[ChannelType.EMAIL])
    assert names == ["django_email", "other"]


# get_channel_for_message ------------------------------------------------------------------


@pytest.fixture
def two_emails(request, settings):
    chans = {"default": StubEmailChannel(), "transactional": StubEmailChannel()}
    patch_channels(request, chans)
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "default"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "transactional"
    return chans


def test_default_and_transactional_email(two_emails):
    assert get_channel_for_message(ChannelType.EMAIL, make_message()) is two_emails["default"]
    transactional = make_message(options={"transactional": True})
    assert get_channel_for_message(ChannelType.EMAIL, transactional) is two_emails["transactional"]


def test_override_default_channel_option(two_emails):
    message = make_message(options={"override_default_channel": "transactional"})
    assert get_channel_for_message(ChannelType.EMAIL, message) is two_emails["transactional"]


def test_a_channel_can_claim_a_message(two_emails):
    two_emails["default"].claims.add("testmessage")
    transactional = make_message(options={"transactional": True})
    assert get_channel_for_message(ChannelType.EMAIL, transactional) is two_emails["default"]


def test_misconfigured_setting_names_the_channel(two_emails, settings):
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "braze_email"
    with pytest.raises(ImproperlyConfigured, match=r"ACE_CHANNEL_DEFAULT_EMAIL.*braze_email"):
        get_channel_for_message(ChannelType.EMAIL, make_message())
    message = make_message(options={"override_default_channel": "nope"})
    with pytest.raises(ImproperlyConfigured, match="nope"):
        get_channel_for_message(ChannelType.EMAIL, message)


def test_named_channel_that_disabled_itself_falls_back_with_a_warning(request, settings, caplog):
    django_email = StubEmailChannel()
    channel_map = ChannelMap([["django_email", django_email]])
    channel_map.disabled["sailthru_email"] = "no API key"
    patch_channels(request, channel_map)
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "sailthru_email"
    with caplog.at_level(logging.WARNING, logger="ace.channel"):
        assert get_channel_for_message(ChannelType.EMAIL, make_message()) is django_email
    assert "no API key" in caplog.text


def test_without_settings_the_first_channel_of_the_type_is_used(request, settings):
    first = StubEmailChannel()
    patch_channels(request, {"first": first, "second": StubEmailChannel()})
    del settings.ACE_CHANNEL_DEFAULT_EMAIL
    del settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL
    assert get_channel_for_message(ChannelType.EMAIL, make_message()) is first


def test_push_channel_selection(request, settings):
    one, two = StubPushChannel(), StubPushChannel()
    patch_channels(request, {"one": one, "two": two})
    assert get_channel_for_message(ChannelType.PUSH, make_message()) is one
    settings.ACE_CHANNEL_DEFAULT_PUSH = "two"
    assert get_channel_for_message(ChannelType.PUSH, make_message()) is two
    with pytest.raises(UnsupportedChannelError):
        patch_channels(request, {"one": StubEmailChannel()})
        del settings.ACE_CHANNEL_DEFAULT_PUSH
        get_channel_for_message(ChannelType.PUSH, make_message())
