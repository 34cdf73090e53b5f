"""
:mod:`ace.utils.http`: HTTP helpers of the channels.

:func:`request_may_have_arrived` tells, for a failed request, whether the server may have received
it. Channels that call an HTTP API (Sailthru, Web Push) retry a request that never reached the
server, but must not retry one that did and whose answer was lost: the server may have acted on
it, and a retry would deliver the message twice. That case is reported as
:class:`~ace.errors.DeliveryOutcomeUnknownError` instead.

:class:`GuardedSession` sends requests to URLs that someone else chose (push subscription
endpoints) without letting them reach the server's own network: see its docstring.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from ace.utils.netguard import UNRESOLVABLE, Destination, DestinationRefused, vet_url

__all__ = ["DestinationRefusedError", "GuardedSession", "request_may_have_arrived", "status_line"]

#: Bytes of a response body read (and thrown away) to keep the connection; past it, closed.
MAX_DISCARDED_BODY = 64 * 1024
#: Characters of a reason phrase kept by :func:`status_line`.
MAX_REASON = 64


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


# Requests to URLs chosen by someone else
# ------------------------------------------------------------------------------


class DestinationRefusedError(requests.exceptions.InvalidURL):
    """The URL points where the server must not send (:mod:`ace.utils.netguard`); nothing was
    sent and nothing was connected to. ``code`` and ``reason`` are the netguard refusal's.

    (An ``InvalidURL``, so also a ``ValueError``: catch it before those.)
    """

    def __init__(self, refusal: DestinationRefused, **kwargs: Any) -> None:
        super().__init__(refusal.reason, **kwargs)
        self.code = refusal.code
        self.reason = refusal.reason


class _PinnedAdapter(HTTPAdapter):
    """Vets each request's URL and connects to an address that was checked.

    The connection pool is keyed by that IP address (and, for https, by the name sent as SNI
    and checked against the certificate), so urllib3 never resolves the name again. When no
    connection could be made to the first address, the first one of the other address family
    is tried (an IPv4-only server given an IPv6 address first, say); nothing else is retried.
    """

    def __init__(self, *, allow_loopback: bool, **kwargs: Any) -> None:
        self.allow_loopback = allow_loopback
        super().__init__(**kwargs)

    def vet(self, request: requests.PreparedRequest) -> Destination:
        try:
            return vet_url(request.url or "", allow_loopback=self.allow_loopback)
        except DestinationRefused as refusal:
            if refusal.code == UNRESOLVABLE:  # perhaps for now only: retried like any DNS error
                host = urlsplit(request.url or "").hostname or ""
                error = NameResolutionError(host, None, socket.gaierror(refusal.reason))  # type: ignore[arg-type]
                raise requests.ConnectionError(error, request=request) from None
            raise DestinationRefusedError(refusal, request=request) from None

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        destination = self.vet(request)
        first = destination.addresses[0]
        other = next((a for a in destination.addresses if a.version != first.version), None)
        # http.client would otherwise name the IP address in the Host header.
        request.headers["Host"] = destination.host_header
        for address in (first, other) if other else (first,):
            request._ace_pin = (destination, address)  # type: ignore[attr-defined]
            try:
                return super().send(request, *args, **kwargs)
            except requests.ConnectionError as error:
                if address is not first or other is None or request_may_have_arrived(error):
                    raise
                if isinstance(error, requests.exceptions.SSLError):
                    raise  # reached a server; its certificate is the problem
        raise AssertionError("unreachable")

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Any = None,
        cert: Any = None,
    ) -> Any:
        destination, address = request._ace_pin  # type: ignore[attr-defined]
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        host_params["host"] = str(address)
        if destination.scheme == "https":
            pool_kwargs["server_hostname"] = destination.host
        # Proxies are ignored: a proxy would resolve the name itself.
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)


class GuardedSession(requests.Session):
    """A ``requests`` session for URLs that someone else chose, such as push endpoints.

    - Every request's URL is vetted by :func:`ace.utils.netguard.vet_url` when it is sent (the
      name is resolved then, and every address must be public); a refused URL raises
      :class:`DestinationRefusedError` before any connection, a name that does not resolve a
      ``requests.ConnectionError`` (``NameResolutionError``, retryable).
    - The connection goes to an address that was checked, never to a second look-up's answer.
    - Redirects are never followed: a 3xx is the response.
    - The response body is read (up to :data:`MAX_DISCARDED_BODY`, to reuse the connection) and
      thrown away: ``response.content`` is always empty, so it cannot end up in a log.
    - Environment settings (proxies, ``.netrc``) are not used.
    """

    def __init__(self, *, allow_loopback: bool = False) -> None:
        super().__init__()
        self.allow_loopback = allow_loopback
        self.trust_env = False
        adapter = _PinnedAdapter(allow_loopback=allow_loopback)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        kwargs["proxies"] = {}
        response = super().send(request, **kwargs)
        _discard_body(response)
        return response


def _discard_body(response: requests.Response) -> None:
    """Read and drop the body; a body too large or broken costs the connection, nothing else."""
    read = 0
    try:
        for chunk in response.raw.stream(8192, decode_content=False):
            read += len(chunk)
            if read > MAX_DISCARDED_BODY:
                response.close()
                break
        else:
            response.raw.release_conn()
    except (HTTPError, OSError):
        response.close()
    response._content = b""
    response._content_consumed = True


def status_line(response: requests.Response) -> str:
    """``HTTP <status> <reason>`` -- all a channel keeps of a reply it did not ask for (the
    reason phrase cut to :data:`MAX_REASON` printable characters)."""
    reason = "".join(c for c in (response.reason or "") if c.isprintable())[:MAX_REASON]
    return f"HTTP {response.status_code} {reason}".strip()
