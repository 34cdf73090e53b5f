"""
:mod:`ace.channel.file` writes each email to a file instead of sending it, for debugging
templates (plugin name ``file_email``).

Each message becomes one HTML document: the rendered ``head.html`` and ``body.html``, preceded by
an HTML comment giving the sender, recipient, subject and plain-text part. Open it in a browser to
see the message as a mail client would, view its source for the rest.

Where it goes:

- ``message.options[PATH_OVERRIDE_KEY]`` (``"output_file_path"``), if set: that exact path
  (relative paths are relative to the working directory; missing directories are created);
- else ``<ACE_CHANNEL_FILE_EMAIL_DIRECTORY>/<message uuid>.html``, where the setting defaults to
  ``ace_messages`` in the system's temporary directory (``/tmp/ace_messages`` on Linux).

Files are created readable by their owner only (they hold personal data) and replaced whole, never
written in place, so a reader never sees half a message and a symlink planted at the path is
replaced, not followed. A path that cannot be written fails the message
(:class:`~ace.errors.FatalChannelDeliveryError`).

This channel is for development: anyone who can set a message's options chooses where the file is
written, so do not enable it where message options come from untrusted input.

Settings::

    ACE_ENABLED_CHANNELS = ["file_email"]
    ACE_CHANNEL_DEFAULT_EMAIL = "file_email"
    ACE_CHANNEL_FILE_EMAIL_DIRECTORY = "/tmp/ace_messages"   # optional
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from ace.channel import Channel, ChannelType, message_options
from ace.channel.mixins import EmailChannelMixin
from ace.errors import FatalChannelDeliveryError

if TYPE_CHECKING:
    from ace.message import Message

LOG = logging.getLogger(__name__)

#: The message option naming the file to write instead of the default one.
PATH_OVERRIDE_KEY = "output_file_path"
#: The setting naming the directory of the default files.
DIRECTORY_SETTING = "ACE_CHANNEL_FILE_EMAIL_DIRECTORY"
#: The directory used without the setting.
DEFAULT_DIRECTORY = Path(tempfile.gettempdir()) / "ace_messages"


def _comment_text(value: Any) -> str:
    """Text safe inside an HTML comment: no ``--`` (which could end it early)."""
    text = "" if value is None else str(value)
    while "--" in text:
        text = text.replace("--", "- -")
    return text


class FileEmailChannel(EmailChannelMixin, Channel):
    """An email channel that writes each rendered message to an HTML file (see the module)."""

    channel_type = ChannelType.EMAIL

    @classmethod
    def enabled(cls) -> bool:
        """Always true: nothing to configure."""
        return True

    @staticmethod
    def output_path(message: Message) -> Path:
        """The file this message is written to."""
        override = message_options(message).get(PATH_OVERRIDE_KEY)
        if override:
            return Path(os.fspath(override))
        directory = getattr(settings, DIRECTORY_SETTING, None) or DEFAULT_DIRECTORY
        return Path(os.fspath(directory)) / f"{message.uuid}.html"

    def render_file(self, message: Message, rendered_message: Any) -> str:
        """The document written for the message."""
        options = message_options(message)
        from_address = options.get("from_address") or getattr(settings, "DEFAULT_FROM_EMAIL", "")
        from_name = self.header_text(getattr(rendered_message, "from_name", None))
        recipient = getattr(getattr(message, "recipient", None), "email_address", None)
        header = [
            "ACE file_email channel: this message was written here instead of being sent.",
            f"Message: {getattr(message, 'log_id', '')}",
            f"From: {from_address}",
            f"From name (rendered): {from_name}",
            f"To: {recipient or '(no email address)'}",
            f"Subject: {self.header_text(getattr(rendered_message, 'subject', None))}",
        ]
        reply_to = options.get("reply_to")
        if reply_to:
            reply_to = reply_to if isinstance(reply_to, str) else ", ".join(map(str, reply_to))
            header.append(f"Reply-To: {reply_to}")
        header += ["", "Plain-text part:", getattr(rendered_message, "body", None) or ""]
        comment = "\n".join(_comment_text(line) for line in header)
        document = self.make_simple_html_template(
            getattr(rendered_message, "head_html", None) or "",
            getattr(rendered_message, "body_html", None) or "",
        )
        return f"<!--\n{comment}\n-->\n{document}\n"

    def deliver(self, message: Message, rendered_message: Any) -> Path:
        """Write the message to :meth:`output_path`; return the path.

        Raises:
            FatalChannelDeliveryError: The file cannot be written.
        """
        path = self.output_path(message)
        content = self.render_file(message, rendered_message)
        try:
            _write_whole(path, content)
        except OSError as error:
            raise FatalChannelDeliveryError(
                f"Could not write the message to {path}: {error.strerror or error}"
            ) from error
        logger = message.get_message_specific_logger(LOG)
        logger.info("Wrote the message to %s instead of sending it", path)
        return path


def _write_whole(path: Path, content: str) -> None:
    """Write ``content`` to a new owner-only file next to ``path``, then move it onto ``path``."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".ace-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
