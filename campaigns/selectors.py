"""Selectors: the reads the admin, services and tasks share (no writes here)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.template import TemplateDoesNotExist, TemplateSyntaxError, loader

from campaigns.models import (
    ChannelChoice,
    Delivery,
    MessageTypeDefinition,
)

# ----------------------------------------------------------------------------------------------
# Channels and message types
# ----------------------------------------------------------------------------------------------


def channel_enabled_choices() -> list[tuple[str, str]]:
    """ChannelChoice entries that have an enabled ACE channel (``ace.channel.channels()``)."""
    from ace.channel import ChannelType, channels

    channel_map = channels()
    return [
        (value, label)
        for value, label in ChannelChoice.choices
        if channel_map.has_channel_type(ChannelType(value))
    ]


def message_type_template_paths(*, definition: MessageTypeDefinition, channel: str) -> list[str]:
    """ACE template paths of every file the channel's renderer reads for this message type."""
    from campaigns.services.message_types import CHANNEL_FILES

    return [
        f"{definition.app_label}/edx_ace/{definition.name}/{channel}/{filename}"
        for filename in CHANNEL_FILES.get(channel, ())
    ]


def message_type_missing_templates(
    *, definition: MessageTypeDefinition, channel: str, language: str = ""
) -> list[str]:
    """Paths of the channel's templates that cannot be loaded (missing or invalid)."""
    from django.utils import translation

    missing = []
    with translation.override(language or definition.default_language or None):
        for path in message_type_template_paths(definition=definition, channel=channel):
            try:
                loader.get_template(path)
            except (TemplateDoesNotExist, TemplateSyntaxError):
                missing.append(path)
    return missing


def message_type_channels(*, definition: MessageTypeDefinition) -> list[str]:
    """Channels for which every template of the message type can be loaded."""
    return [
        channel
        for channel in ChannelChoice.values
        if not message_type_missing_templates(definition=definition, channel=channel)
    ]


# ----------------------------------------------------------------------------------------------
# The delivery log and users
# ----------------------------------------------------------------------------------------------


def delivery_log_queryset() -> QuerySet[Delivery]:
    """The delivery log with what its list and export show, without N+1 queries."""
    return Delivery.objects.select_related("run", "run__campaign")


def user_find(*, query: str):
    """A user by id ("42") or by email (case-insensitive); None when there is no match."""
    query = (query or "").strip()
    users = get_user_model().objects.all()
    if not query:
        return None
    if query.isdigit():
        return users.filter(pk=int(query)).first()
    return users.filter(email__iexact=query).order_by("pk").first()
