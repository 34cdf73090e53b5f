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

    As in the reference, the channel's ``action_links`` attribute is read as is, and
    ``channel.get_action_links(omit_unsubscribe_link=True)`` is only called when the
    unsubscribe link is to be left out. It is left out if the argument is true or the
    context's ``omit_unsubscribe_link`` is (the reference ignored the context variable).
    Without a channel argument, the context's ``channel`` is used. A channel with only one of
    the two gets the other's behaviour: no ``action_links`` -> ``get_action_links()``; no
    ``get_action_links`` when omitting -> no links (which link unsubscribes is unknown).
    """
    channel = channel if channel is not None else context.get("channel")
    if channel is None:
        return []
    omit = bool(omit_unsubscribe_link or context.get("omit_unsubscribe_link"))
    get_links = getattr(channel, "get_action_links", None)
    if omit:
        return list(get_links(omit_unsubscribe_link=True)) if callable(get_links) else []
    links = getattr(channel, "action_links", None)
    if links is None:
        return list(get_links(omit_unsubscribe_link=False)) if callable(get_links) else []
    return list(links)
