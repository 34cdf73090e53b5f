"""
:mod:`ace.signals` declares ACE's Django signals.

``ACE_MESSAGE_SENT`` (as in the reference) is sent after each successful delivery;
``ACE_MESSAGE_FAILED`` after each delivery that ended without sending (failed, expired, no
address, or to be retried). Both carry ``message=<dict>``, a JSON-serializable payload built
by :mod:`ace.utils.signals`.
"""

from django.dispatch import Signal

ACE_MESSAGE_SENT = Signal()
ACE_MESSAGE_FAILED = Signal()
