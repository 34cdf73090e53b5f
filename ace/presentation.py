"""
:mod:`ace.presentation` is the rendering step of the ACE pipeline (internal to
:func:`ace.ace.send`): it picks the renderer for the channel type and renders in the
message's language.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import translation

from ace import errors, renderers
from ace.channel import ChannelType

if TYPE_CHECKING:
    from ace.channel import Channel
    from ace.message import Message

RENDERERS: dict[ChannelType, renderers.AbstractRenderer] = {
    ChannelType.EMAIL: renderers.EmailRenderer(),
    ChannelType.PUSH: renderers.PushNotificationRenderer(),
}


def get_renderer(channel_type: ChannelType) -> renderers.AbstractRenderer:
    """The renderer for a channel type.

    Raises:
        UnsupportedChannelError: If none is registered for it.
    """
    renderer = RENDERERS.get(channel_type)
    if renderer is None:
        raise errors.UnsupportedChannelError(
            f"No renderer is registered for the channel type [{channel_type}]."
        )
    return renderer


def render(channel: Channel, message: Message) -> Any:
    """Render for the channel, in ``message.language`` (else the active language)."""
    renderer = get_renderer(channel.channel_type)
    language = message.language or translation.get_language()
    with translation.override(language):
        return renderer.render(channel, message)
