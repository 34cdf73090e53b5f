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
