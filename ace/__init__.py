"""
ACE, the Automated Communications Engine: a drop-in reimplementation of Open edX's ``edx_ace``.

This package exports the names a typical caller needs; see :mod:`ace.ace` for :func:`send`
and :mod:`ace.batch` for sending many messages over one connection per channel.
"""

from ace.ace import send
from ace.channel import Channel, ChannelType
from ace.message import Message, MessageType
from ace.policy import Policy, PolicyResult
from ace.recipient import Recipient
from ace.recipient_resolver import RecipientResolver

__version__ = "1.0.0"

__all__ = [
    "Channel",
    "ChannelType",
    "Message",
    "MessageType",
    "Policy",
    "PolicyResult",
    "Recipient",
    "RecipientResolver",
    "send",
]
