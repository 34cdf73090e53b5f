"""Tests for the acetags template tag library (ace.templatetags.acetags)."""

from __future__ import annotations

from django.template import Context, Template

from ace.templatetags.acetags import get_action_links


class LinkChannel:
    def get_action_links(self, omit_unsubscribe_link=False):
        links = [("{view_url}", "View on web")]
        if not omit_unsubscribe_link:
            links.append(("{optout_url}", "Unsubscribe"))
        return links


TEMPLATE = (
    "{% load acetags %}{% get_action_links channel ARGS as links %}"
    "{% for url, text in links %}[{{ text }}]{% endfor %}"
)


def render(args="", **context):
    return Template(TEMPLATE.replace("ARGS", args)).render(Context(context))


def test_links_from_the_channel():
    assert render(channel=LinkChannel()) == "[View on web][Unsubscribe]"


def test_omit_unsubscribe_link_argument_is_honoured():
    # The reference ignored the argument and only read the context variable.
    assert render("omit_unsubscribe_link=True", channel=LinkChannel()) == "[View on web]"


def test_omit_unsubscribe_link_context_variable_is_honoured():
    assert render(channel=LinkChannel(), omit_unsubscribe_link=True) == "[View on web]"


def test_channel_without_links_gives_none():
    assert render(channel=object()) == ""


def test_channel_defaults_to_the_context_channel():
    assert get_action_links({"channel": LinkChannel()}) == [
        ("{view_url}", "View on web"),
        ("{optout_url}", "Unsubscribe"),
    ]
    assert get_action_links({}) == []


# Drop-in fidelity with edx-ace 1.15: the tag reads ``channel.action_links`` and only calls
# ``get_action_links(omit_unsubscribe_link=True)`` when the unsubscribe link is left out.


class PlainLinksChannel:
    """A test double with nothing but a plain ``action_links`` list."""

    action_links = [("{view_url}", "View on web"), ("{optout_url}", "Unsubscribe")]


def test_a_channel_with_a_plain_action_links_list_renders():
    assert render(channel=PlainLinksChannel()) == "[View on web][Unsubscribe]"


def test_action_links_is_read_and_get_action_links_is_not_called():
    from unittest import mock

    channel = mock.Mock(action_links=[("{view_url}", "View on web")])
    assert render(channel=channel) == "[View on web]"
    channel.get_action_links.assert_not_called()


def test_omitting_calls_get_action_links_with_omit_true_only():
    from unittest import mock

    channel = mock.Mock(action_links=[("{view_url}", "View"), ("{optout_url}", "Unsubscribe")])
    channel.get_action_links.return_value = [("{view_url}", "View")]
    assert render("omit_unsubscribe_link=True", channel=channel) == "[View]"
    channel.get_action_links.assert_called_once_with(omit_unsubscribe_link=True)


def test_omitting_on_a_channel_without_get_action_links_gives_no_links():
    # Which of the plain links unsubscribes is unknown: none is safer than the unsubscribe one.
    assert render("omit_unsubscribe_link=True", channel=PlainLinksChannel()) == ""


def test_the_tag_without_as_renders_inline():
    template = Template("{% load acetags %}{% get_action_links channel %}")
    assert "View on web" in template.render(Context({"channel": PlainLinksChannel()}))
