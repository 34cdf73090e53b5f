"""
:mod:`ace.recipient` contains :class:`Recipient`, everything needed to reach one user.
"""

from __future__ import annotations

import attrs

from ace.serialization import MessageAttributeSerializationMixin


@attrs.define
class Recipient(MessageAttributeSerializationMixin):
    """
    The target of a message.

    Args:
        lms_user_id (int): The LMS user ID of the intended recipient.
        email_address (str): The email address of the intended recipient. Optional.
    """

    lms_user_id: int | str | None
    email_address: str | None = None
