"""
:mod:`ace.utils.netguard` decides whether the server may send a request to a URL that someone
else chose (a browser's push subscription endpoint), so that it cannot be aimed at the server's
own network (server-side request forgery).

:func:`vet_url` checks the URL's form, resolves its host and checks every address it resolves
to (:func:`check_url_form` does the part that needs no DNS); the :class:`Destination` it
returns holds the addresses that were checked, and a caller connects to one of those (never
resolving the name again: a second look-up could answer differently, which is DNS rebinding).
:mod:`ace.utils.http` has a ``requests`` session that does exactly that.

What is refused (:class:`DestinationRefused`, with a :attr:`~DestinationRefused.code`):

- ``not_https``: a scheme other than ``https`` (``http`` only to loopback, when allowed);
- ``credentials``: a user name or password in the URL;
- ``host_invalid``: a host that is not a plain DNS name or a canonical IP address -- the short,
  decimal, hexadecimal and octal IPv4 spellings (``127.1``, ``2130706433``, ``0x7f000001``,
  ``0177.0.0.1``, ``0``) that resolvers and browsers read as addresses, zone ids, odd characters;
- ``not_public``: any address that is not on the public internet (:func:`is_public_address`),
  and the ``localhost`` names (refused without asking DNS);
- ``unresolvable``: a name that does not resolve (may be temporary; the others are not).

Standard library only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "CREDENTIALS",
    "HOST_INVALID",
    "NOT_HTTPS",
    "NOT_PUBLIC",
    "UNRESOLVABLE",
    "Destination",
    "DestinationRefused",
    "check_url_form",
    "is_public_address",
    "parse_host",
    "vet_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NOT_HTTPS = "not_https"
CREDENTIALS = "credentials"
HOST_INVALID = "host_invalid"
NOT_PUBLIC = "not_public"
UNRESOLVABLE = "unresolvable"

MESSAGES = {
    NOT_HTTPS: "the URL must be https://",
    CREDENTIALS: "the URL must not contain a user name or password",
    HOST_INVALID: "the URL's host is not a valid host name or IP address",
    NOT_PUBLIC: "the URL's host is a private, loopback or reserved address",
    UNRESOLVABLE: "the URL's host name does not resolve",
}

#: The well-known NAT64 prefix (RFC 6052): DNS64 resolvers of IPv6-only networks answer with
#: addresses in it for IPv4-only hosts, so an address here is as public as the IPv4 it embeds.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")


class DestinationRefused(Exception):
    """The URL may not be requested; ``code`` says why (one of this module's constants)."""

    def __init__(self, code: str) -> None:
        super().__init__(MESSAGES[code])
        self.code = code
        self.reason = MESSAGES[code]


@dataclass(frozen=True)
class Destination:
    """Where a vetted URL may be sent: connect to ``addresses`` (checked), name ``host``."""

    scheme: str
    #: Lower-case ASCII, no trailing dot; an IPv6 address without brackets.
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        """The ``Host`` header (and the authority of the URL) for this destination."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def is_public_address(address: IPAddress) -> bool:
    """True only for an address on the public internet.

    ``is_global`` alone is not enough on every Python version (it is true for multicast and
    for some reserved IPv6 ranges), so those are refused too. IPv4-mapped, IPv4-compatible
    and 6to4 addresses are refused outright; a NAT64 address is as public as its IPv4 part.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None or address.sixtofour is not None:
            return False
        if address.teredo is not None or address.is_site_local:
            return False
        if address in NAT64_PREFIX:
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def _ipv4_number(part: str) -> int | None:
    """One part of an IPv4 address as WHATWG URLs (and ``inet_aton``) read it."""
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if not _DECIMAL.fullmatch(part):
        return None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if set(part) <= set("01234567") else None
    return int(part)


def _ipv4_spelling(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host spells in any form resolvers accept, or ``None``.

    Raises:
        DestinationRefused: ``host_invalid`` for a host that ends in a number but is no address
        (``1.2.3.999``): browsers refuse those and resolvers disagree about them.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if _ipv4_number(parts[-1]) is None:
        return None  # a name (its last label is not a number)
    numbers = [_ipv4_number(part) for part in parts]
    if len(parts) > 4 or None in numbers:
        raise DestinationRefused(HOST_INVALID)
    *high, low = numbers
    if any(n > 255 for n in high) or low >= 256 ** (5 - len(numbers)):
        raise DestinationRefused(HOST_INVALID)
    value = low + sum(n << (8 * (3 - i)) for i, n in enumerate(high))
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> tuple[str, IPAddress | None, bool]:
    """Normalize a URL's host (as ``urlsplit(...).hostname`` gives it).

    Returns:
        The host (lower case, no trailing dot), its IP address if it is one, and whether it is
        spelled canonically (``127.1`` is 127.0.0.1 but not canonical).

    Raises:
        DestinationRefused: ``host_invalid`` for anything else.
    """
    if not host or not host.isascii() or "%" in host:
        raise DestinationRefused(HOST_INVALID)
    host = host.lower()
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise DestinationRefused(HOST_INVALID) from None
        return str(address), address, True  # IPv6 has one reading, however it is written
    ipv4 = _ipv4_spelling(host)
    if ipv4 is not None:
        return str(ipv4), ipv4, str(ipv4) == host
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise DestinationRefused(HOST_INVALID)
    return name, None, True


def _is_localhost_name(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761 section 6.3


def resolve(name: str, port: int) -> tuple[IPAddress, ...]:
    """Every address ``name`` resolves to (through ``socket.getaddrinfo``, looked up when called).

    Raises:
        DestinationRefused: ``unresolvable`` when the name has no address.
    """
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise DestinationRefused(UNRESOLVABLE) from None
    addresses: list[IPAddress] = []
    for family, *_, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(UNRESOLVABLE)
    return tuple(addresses)


def _split(url: str) -> tuple[SplitResult, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DestinationRefused(HOST_INVALID) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise DestinationRefused(NOT_HTTPS)
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused(CREDENTIALS)
    if port == 0:
        raise DestinationRefused(HOST_INVALID)
    return parts, port or (443 if scheme == "https" else 80)


def check_url_form(url: str, *, allow_loopback: bool = False) -> None:
    """Every check of :func:`vet_url` that needs no DNS (complete for an IP address host).

    Raises:
        DestinationRefused: Why the URL may not be requested.
    """
    _vet(url, allow_loopback=allow_loopback, lookup=False)


def vet_url(url: str, *, allow_loopback: bool = False) -> Destination:
    """Check ``url`` and resolve its host: the addresses a request to it may connect to.

    Every address the host resolves to must be public (a name with one private address is
    refused: which one a client picks is not up to us). ``allow_loopback`` (tests with a local
    push service only) also accepts a host that is only loopback, over ``http`` or ``https``.

    Raises:
        DestinationRefused: Why the URL may not be requested.
    """
    destination = _vet(url, allow_loopback=allow_loopback, lookup=True)
    assert destination is not None
    return destination


def _vet(url: str, *, allow_loopback: bool, lookup: bool) -> Destination | None:
    parts, port = _split(url)
    scheme = parts.scheme.lower()
    host, literal, canonical = parse_host(parts.hostname or "")
    if scheme == "http" and not (
        allow_loopback and (_is_localhost_name(host) or (literal and literal.is_loopback))
    ):
        raise DestinationRefused(NOT_HTTPS)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    elif _is_localhost_name(host) and not allow_loopback:
        raise DestinationRefused(NOT_PUBLIC)  # no need to ask DNS what localhost is
    elif not lookup:
        return None
    else:
        addresses = resolve(host, port)
    loopback = allow_loopback and all(a.is_loopback for a in addresses)
    if not loopback and not all(is_public_address(a) for a in addresses):
        raise DestinationRefused(NOT_PUBLIC)
    if scheme == "http" and not loopback:
        raise DestinationRefused(NOT_HTTPS)
    if not canonical:
        raise DestinationRefused(HOST_INVALID)
    return Destination(scheme=scheme, host=host, port=port, addresses=addresses)
