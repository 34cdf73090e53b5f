"""
:mod:`ace.templatetags.acetags` holds template tags for ACE message templates
(``{% load acetags %}``), compatible with templates written for the reference.
"""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def get_action_links(
    context: Any, channel: Any = None, omit_unsubscribe_link: bool = False
) -> list:
    """
    The action links (view online, unsubscribe...) the channel offers for this message.

    Usage: ``{% get_action_links channel omit_unsubscribe_link=True as action_links %}``.
    The unsubscribe link is omitted if the argument is true or the context's
    ``omit_unsubscribe_link`` is (the reference ignored the argument). Without a channel
    argument, the context's ``channel`` is used.
    """
    channel = channel if channel is not None else context.get("channel")
    get_links = getattr(channel, "get_action_links", None)
    if get_links is None:
        return []
    omit = bool(omit_unsubscribe_link or context.get("omit_unsubscribe_link"))
    return list(get_links(omit_unsubscribe_link=omit))
