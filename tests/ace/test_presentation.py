"""Tests for ace.presentation.render: the renderer per channel type, in the right language."""

from __future__ import annotations

import pytest
from ace_stubs import StubEmailChannel, StubPushChannel, make_message
from django.utils import translation

from ace import presentation
from ace.errors import TemplateNotFoundError, UnsupportedChannelError
from ace.renderers import RenderedEmail, RenderedPushNotification


def test_renders_email_in_the_message_language():
    with translation.override("en"):
        rendered = presentation.render(StubEmailChannel(), make_message(language="de"))
        assert translation.get_language() == "en"  # restored afterwards
    assert isinstance(rendered, RenderedEmail)
    assert "lang=de yes=Ja" in rendered.body


def test_falls_back_to_the_active_language():
    with translation.override("fr"):
        rendered = presentation.render(StubEmailChannel(), make_message(language=None))
    assert "lang=fr" in rendered.body


def test_renders_push():
    rendered = presentation.render(StubPushChannel(), make_message(language="fr"))
    assert rendered == RenderedPushNotification(
        title="Title for Ada (fr)", body="Push body for Ada"
    )


def test_missing_template_raises_template_not_found():
    with pytest.raises(TemplateNotFoundError, match=r"testapp/edx_ace/nohtml/email/body\.html"):
        presentation.render(StubEmailChannel(), make_message(name="nohtml"))


def test_unknown_channel_type_is_unsupported():
    channel = StubEmailChannel()
    channel.channel_type = "sms"
    with pytest.raises(UnsupportedChannelError, match="sms"):
        presentation.render(channel, make_message())
