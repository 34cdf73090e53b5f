"""Message types defined in code (``ace.MessageType`` subclasses) and how campaigns find them.

A developer adds a message type by subclassing :class:`ace.MessageType`, putting its templates at
``templates/<app_label>/edx_ace/<name>/<channel>/<file>`` and registering the class under the
``campaigns.message_type`` entry-point namespace (pyproject.toml). The admin lists registered types
read-only (``MessageTypeDefinition.Source.CODE`` rows, see
:func:`campaigns.services.message_types.message_type_sync_code_defined`) and campaigns use them
like database-defined ones.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any, ClassVar

from ace import MessageType

log = logging.getLogger(__name__)

ENTRY_POINT_NAMESPACE = "campaigns.message_type"


class CampaignAnnouncement(MessageType):
    """A general announcement: a headline, a paragraph and a call to action, by email."""

    APP_LABEL = "campaigns"
    #: Used by previews and test sends (copied to the admin's read-only row).
    SAMPLE_CONTEXT: ClassVar[dict[str, Any]] = {
        "headline": "Our spring courses are open",
        "message_body": "Enrolment for the spring term is open until March 31.",
        "action_url": "https://example.org/courses",
        "action_label": "See the courses",
        "first_name": "Ada",
    }


def registered_message_types() -> dict[str, type[MessageType]]:
    """Classes registered in the ``campaigns.message_type`` namespace, by entry-point name.

    A plugin that fails to import is logged and skipped, so one broken plugin does not hide the
    others (or break migrations, which run the sync).
    """
    found: dict[str, type[MessageType]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_NAMESPACE):
        try:
            cls = entry_point.load()
        except Exception:  # a third-party plugin may fail in any way on import
            log.exception("Cannot load message type plugin %r", entry_point.value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, MessageType)):
            log.error(
                "Message type plugin %r is not an ace.MessageType subclass", entry_point.value
            )
            continue
        found[entry_point.name] = cls
    return found
