"""Tests for ace.renderers."""

from __future__ import annotations

import attrs
import pytest
from ace_stubs import StubEmailChannel, StubPushChannel, make_message

from ace.errors import TemplateNotFoundError
from ace.renderers import (
    AbstractRenderer,
    EmailRenderer,
    PushNotificationRenderer,
    RenderedEmail,
    RenderedPushNotification,
)


def test_rendered_classes_fields():
    assert [f.name for f in attrs.fields(RenderedEmail)] == [
        "from_name",
        "subject",
        "body_html",
        "head_html",
        "body",
    ]
    assert [f.name for f in attrs.fields(RenderedPushNotification)] == ["title", "body"]
    assert EmailRenderer.rendered_message_cls is RenderedEmail
    assert PushNotificationRenderer.rendered_message_cls is RenderedPushNotification
    assert AbstractRenderer.rendered_message_cls is None


def test_template_files_per_field():
    assert EmailRenderer().template_files() == {
        "from_name": "from_name.txt",
        "subject": "subject.txt",
        "body_html": "body.html",
        "head_html": "head.html",
        "body": "body.txt",
    }
    assert PushNotificationRenderer().template_files() == {
        "title": "title.txt",
        "body": "body.txt",
    }


def test_email_renderer_renders_every_part_with_message_and_channel_in_context():
    message = make_message(context={"name": "Ada", "topic": "t", "items": ["x"]})
    rendered = EmailRenderer().render(StubEmailChannel(), message)
    assert rendered.from_name.strip() == "Test Platform"
    assert "Hello   Ada" in rendered.subject
    assert f"uuid={message.uuid}" in rendered.body
    assert "channel=email" in rendered.body
    assert "<li>x</li>" in rendered.body_html
    assert rendered.head_html.strip() == "<style>p { color: #123456; }</style>"


def test_message_context_wins_over_the_builtin_names():
    message = make_message(context={"name": "Ada", "items": [], "channel": "custom"})
    rendered = EmailRenderer().render(StubEmailChannel(), message)
    # {{ channel.channel_type.value }} now looks inside the string "custom": nothing.
    assert "channel=\n" in rendered.body


def test_get_template_for_message_uses_the_ace_path():
    template = EmailRenderer().get_template_for_message(
        StubPushChannel(), make_message(), "title.txt"
    )
    assert template.template.name == "testapp/edx_ace/testmessage/push/title.txt"


def test_missing_and_invalid_templates():
    renderer = EmailRenderer()
    with pytest.raises(TemplateNotFoundError, match="does not exist"):
        renderer.get_template_for_message(StubEmailChannel(), make_message(), "nope.txt")
    with pytest.raises(TemplateNotFoundError, match="is invalid"):
        renderer.render(StubEmailChannel(), make_message(name="broken"))


def test_render_templates_reuses_looked_up_templates():
    renderer = EmailRenderer()
    channel = StubEmailChannel()
    templates = renderer.get_templates(channel, make_message())
    first = renderer.render_templates(templates, channel, make_message(context={"name": "A"}))
    second = renderer.render_templates(templates, channel, make_message(context={"name": "B"}))
    assert "Hi A!" in first.body and "Hi B!" in second.body
