"""
:mod:`ace.utils.http` tells, for a failed HTTP request, whether the server may have received it.

Channels that call an HTTP API (Sailthru, Web Push) retry a request that never reached the
server, but must not retry one that did and whose answer was lost: the server may have acted on
it, and a retry would deliver the message twice. That case is reported as
:class:`~ace.errors.DeliveryOutcomeUnknownError` instead.
"""

from __future__ import annotations

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
)

__all__ = ["request_may_have_arrived"]


def request_may_have_arrived(error: BaseException) -> bool:
    """
    True if ``error`` (a ``requests`` exception) leaves open whether the server got the request.

    False -- safe to retry -- when no connection was made (refused, DNS, connect timeout, TLS
    handshake, proxy), the request was refused before sending (bad URL or header), or it could
    not be written whole (broken pipe while sending). True when the request was sent and no
    usable answer came back: a read timeout, the connection closed or reset while waiting for
    the response, a response cut off. Anything unclear is True: a duplicate is the failure
    this protects against.
    """
    if not isinstance(error, requests.RequestException):
        return False
    if isinstance(error, _NOT_SENT):
        return False
    if isinstance(error, requests.ConnectionError):
        reason = error.args[0] if error.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return False  # (NameResolutionError is a NewConnectionError)
        if isinstance(reason, ProtocolError) and any(
            isinstance(arg, BrokenPipeError) for arg in reason.args
        ):
            return False  # the server stopped reading before the request was complete
    return True


#: Failures that happen before the request leaves (``ConnectTimeout`` is also a ``Timeout``).
_NOT_SENT = (
    requests.ConnectTimeout,
    requests.exceptions.SSLError,
    requests.exceptions.ProxyError,
    requests.exceptions.URLRequired,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
)
