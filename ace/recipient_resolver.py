"""
:mod:`ace.recipient_resolver` contains :class:`RecipientResolver`, the pattern that separates
a message's content (the :class:`~ace.message.MessageType`) from the choice of recipients.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ace.message import MessageType


class RecipientResolver(metaclass=abc.ABCMeta):
    """Selects recipients, personalizes a message type for each and sends the messages."""

    @abc.abstractmethod
    def send(self, msg_type: MessageType, *args: Any, **kwargs: Any) -> Any:
        """
        Send a message personalized from ``msg_type`` to every recipient this resolver selects.

        Args:
            msg_type: The message type describing the batch to send.
        """
        raise NotImplementedError
