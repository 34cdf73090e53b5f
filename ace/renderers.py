"""
:mod:`ace.renderers` renders messages for each type of channel. Each :class:`ChannelType`
has an :class:`AbstractRenderer` subclass, used for every channel of that type.

Templates live at ``{app_label}/edx_ace/{name}/{channel_type}/{file}``, one file per field
of the rendered message class (``body_html`` -> ``body.html``, ``subject`` -> ``subject.txt``).
The template context is the message context plus ``message`` and ``channel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from django.template import TemplateDoesNotExist, TemplateSyntaxError, loader

from ace.errors import TemplateNotFoundError

if TYPE_CHECKING:
    from ace.channel import Channel
    from ace.message import Message


def _filename(field_name: str) -> str:
    if field_name.endswith("_html"):
        return field_name[: -len("_html")] + ".html"
    return field_name + ".txt"


class AbstractRenderer:
    """
    Turns one message into one rendered message (an instance of :attr:`rendered_message_cls`)
    for a specific kind of channel (email, push...).
    """

    rendered_message_cls: type | None = None

    def template_files(self) -> dict[str, str]:
        """Field name -> template file name, for every field of :attr:`rendered_message_cls`."""
        return {
            field.name: _filename(field.name) for field in attrs.fields(self.rendered_message_cls)
        }

    def get_template_for_message(self, channel: Channel, message: Message, filename: str) -> Any:
        """
        Look up one template of this message.

        Args:
            channel: The channel rendering the message.
            message: The message being rendered.
            filename: The base name of the template file.

        Returns:
            The compiled template at ``{app_label}/edx_ace/{name}/{channel_type}/{filename}``.

        Raises:
            TemplateNotFoundError: If it does not exist or does not compile.
        """
        template_path = (
            f"{message.app_label}/edx_ace/{message.name}/{channel.channel_type.value}/{filename}"
        )
        try:
            return loader.get_template(template_path)
        except TemplateDoesNotExist as error:
            raise TemplateNotFoundError(f"Template {template_path} does not exist") from error
        except TemplateSyntaxError as error:
            raise TemplateNotFoundError(f"Template {template_path} is invalid: {error}") from error

    def get_templates(self, channel: Channel, message: Message) -> dict[str, Any]:
        """Every template this message needs on this channel, by field name."""
        return {
            field: self.get_template_for_message(channel, message, filename)
            for field, filename in self.template_files().items()
        }

    def render_templates(
        self, templates: dict[str, Any], channel: Channel, message: Message
    ) -> Any:
        """Render already looked-up templates (the batch path caches the lookup)."""
        render_context = {"message": message, "channel": channel}
        render_context.update(message.context)
        rendered = {}
        for field, template in templates.items():
            rendered[field] = template.render(render_context)
        return self.rendered_message_cls(**rendered)  # type: ignore[misc]

    def render(self, channel: Channel, message: Message) -> Any:
        """
        Render the message for the channel (in the currently active language).

        Args:
            channel: The channel to render the message for.
            message: The message being rendered.

        Raises:
            TemplateNotFoundError: If a template is missing or invalid.
        """
        return self.render_templates(self.get_templates(channel, message), channel, message)


@attrs.define
class RenderedEmail:
    """Everything needed to send a :class:`~ace.message.Message` over email."""

    from_name: str
    subject: str
    body_html: str
    head_html: str
    body: str


@attrs.define
class RenderedPushNotification:
    """Everything needed to send a :class:`~ace.message.Message` as a push notification."""

    title: str
    body: str


class EmailRenderer(AbstractRenderer):
    """The renderer for :attr:`ChannelType.EMAIL` channels."""

    rendered_message_cls = RenderedEmail


class PushNotificationRenderer(AbstractRenderer):
    """The renderer for :attr:`ChannelType.PUSH` channels."""

    rendered_message_cls = RenderedPushNotification
