"""Tests for ace.utils.netguard: which URLs the server may send to (no SSRF), resolved how.

Names are answered by a fake resolver: no test here sends a DNS query.
"""

from __future__ import annotations

import ipaddress

import pytest
from fake_dns import FakeResolver

from ace.utils import netguard
from ace.utils.netguard import (
    CREDENTIALS,
    HOST_INVALID,
    NOT_HTTPS,
    NOT_PUBLIC,
    UNRESOLVABLE,
    DestinationRefused,
    check_url_form,
    is_public_address,
    vet_url,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> FakeResolver:
    return FakeResolver(
        {
            "push.example.org": [PUBLIC_V4, PUBLIC_V6],
            "intranet.example.org": ["10.0.0.1"],
            "loop.example.org": ["127.0.0.1"],
            "loop6.example.org": ["::1"],
            "metadata.example.org": ["169.254.169.254"],
            "mixed.example.org": [PUBLIC_V4, "192.168.1.10"],
            "mapped.example.org": ["::ffff:127.0.0.1"],
            "ula.example.org": ["fd12:3456::1"],
            "multicast.example.org": ["224.0.0.251"],
            "cgnat.example.org": ["100.64.0.1"],
            "zero.example.org": ["0.0.0.0"],
        }
    ).install(monkeypatch)


def refusal(url: str, **kwargs) -> str:
    with pytest.raises(DestinationRefused) as excinfo:
        vet_url(url, **kwargs)
    assert str(excinfo.value) == netguard.MESSAGES[excinfo.value.code]
    return excinfo.value.code


# Every spelling of an internal address is refused, without a DNS query
# ------------------------------------------------------------------------------

INTERNAL_LITERALS = [
    "https://127.0.0.1/p",
    "https://127.1/p",  # short form
    "https://127.0.1/p",
    "https://2130706433/p",  # decimal
    "https://0x7f000001/p",  # hexadecimal
    "https://0x7f.0x0.0x0.0x1/p",
    "https://0177.0.0.1/p",  # octal
    "https://017700000001/p",
    "https://0/p",  # 0.0.0.0, which Linux connects to loopback
    "https://0.0.0.0/p",
    "https://127.0.0.1./p",  # trailing dot
    "https://[::1]/p",
    "https://[0:0:0:0:0:0:0:1]/p",
    "https://[::]/p",
    "https://[::ffff:127.0.0.1]/p",  # IPv4-mapped IPv6
    "https://[::ffff:7f00:1]/p",
    "https://[::ffff:10.0.0.1]/p",
    "https://[::127.0.0.1]/p",  # IPv4-compatible IPv6
    "https://[64:ff9b::7f00:1]/p",  # NAT64 of 127.0.0.1
    "https://[2002:7f00:1::]/p",  # 6to4 of 127.0.0.1
    "https://[fe80::1]/p",  # link-local
    "https://[fd00::1]/p",  # unique local
    "https://[fec0::1]/p",  # site-local (deprecated)
    "https://[ff02::1]/p",  # multicast
    "https://10.0.0.1/p",
    "https://172.16.0.1/p",
    "https://192.168.0.1/p",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/p",  # shared address space (carrier-grade NAT)
    "https://192.0.2.1/p",  # documentation
    "https://198.18.0.1/p",  # benchmarking
    "https://224.0.0.1/p",  # multicast
    "https://240.0.0.1/p",  # reserved
    "https://255.255.255.255/p",
    "https://localhost/p",
    "https://LOCALHOST/p",
    "https://localhost./p",
    "https://LocalHost.:8443/p",
    "https://db.localhost/p",
]


@pytest.mark.parametrize("url", INTERNAL_LITERALS)
def test_internal_addresses_are_refused_in_every_spelling(resolver, url):
    assert refusal(url) in (NOT_PUBLIC, HOST_INVALID)
    assert resolver.lookups == [], "refused without asking DNS"


@pytest.mark.parametrize(
    "name",
    [
        "intranet.example.org",
        "loop.example.org",
        "loop6.example.org",
        "metadata.example.org",
        "mixed.example.org",  # one private address among public ones is enough
        "mapped.example.org",
        "ula.example.org",
        "multicast.example.org",
        "cgnat.example.org",
        "zero.example.org",
        "INTRANET.example.org.",
    ],
)
def test_names_resolving_to_internal_addresses_are_refused(resolver, name):
    assert refusal(f"https://{name}/push/1") == NOT_PUBLIC
    assert resolver.lookups == [name.lower().rstrip(".")]


@pytest.mark.parametrize(
    "url",
    [
        "https://134744072/p",  # 8.8.8.8, but no push service is written like that
        "https://8.8.8.8./p",
        "https://1.2.3.999/p",
        "https://1.2.3.4.5/p",
        "https://foo.123/p",
        "https://09.1.1.1/p",
        "https://exa mple.org/p",
        "https://exa%6dple.org/p",
        "https://b\u00fccher.example/p",
        "https://[fe80::1%25eth0]/p",
        "https://-bad.example.org/p",
        "https://a..b.example.org/p",
        "https://push.example.org:0/p",
        "https://push.example.org:99999/p",
        "https:///p",
    ],
)
def test_hosts_that_are_no_plain_name_or_address_are_refused(url):
    assert refusal(url) == HOST_INVALID


def test_scheme_and_credentials():
    assert refusal("http://push.example.org/p") == NOT_HTTPS
    assert refusal("ftp://push.example.org/p") == NOT_HTTPS
    assert refusal("file:///etc/passwd") == NOT_HTTPS
    assert refusal("https://user:pw@push.example.org/p") == CREDENTIALS
    assert refusal("https://user@push.example.org/p") == CREDENTIALS


def test_a_name_that_does_not_resolve():
    assert refusal("https://nowhere.example.org/p") == UNRESOLVABLE


# What is accepted
# ------------------------------------------------------------------------------


def test_a_public_name_is_resolved_once_and_every_address_kept(resolver):
    destination = vet_url("https://Push.Example.org./v1/abc")
    assert destination.scheme == "https"
    assert destination.host == "push.example.org"
    assert destination.port == 443
    assert destination.addresses == (
        ipaddress.ip_address(PUBLIC_V4),
        ipaddress.ip_address(PUBLIC_V6),
    )
    assert destination.host_header == "push.example.org"
    assert resolver.lookups == ["push.example.org"]
    assert vet_url("https://push.example.org:8443/x").host_header == "push.example.org:8443"


def test_public_literals_are_accepted_with_no_lookup(resolver):
    assert vet_url(f"https://{PUBLIC_V4}/p").addresses == (ipaddress.ip_address(PUBLIC_V4),)
    destination = vet_url(f"https://[{PUBLIC_V6}]:8443/p")
    assert destination.host_header == f"[{PUBLIC_V6}]:8443"
    # A DNS64 answer for a public IPv4-only host is as public as that host.
    assert vet_url("https://[64:ff9b::5db8:d70e]/p").addresses[0].version == 6
    assert resolver.lookups == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        (PUBLIC_V6, True),
        ("64:ff9b::808:808", True),
        ("64:ff9b::a00:1", False),
        ("::ffff:8.8.8.8", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("2001:db8::1", False),
        ("ff0e::1", False),
        ("239.255.255.250", False),
    ],
)
def test_is_public_address(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


# The loopback allowance (tests with a local push service only)
# ------------------------------------------------------------------------------


def test_loopback_is_refused_unless_allowed():
    assert refusal("http://127.0.0.1:8000/push/1") == NOT_HTTPS
    assert refusal("https://127.0.0.1:8000/push/1") == NOT_PUBLIC
    destination = vet_url("http://127.0.0.1:8000/push/1", allow_loopback=True)
    assert (destination.scheme, destination.port) == ("http", 8000)
    assert vet_url("https://[::1]:8443/p", allow_loopback=True).addresses[0].is_loopback
    assert vet_url("https://loop.example.org/p", allow_loopback=True).host == "loop.example.org"


def test_the_loopback_allowance_is_only_loopback():
    assert refusal("https://10.0.0.1/p", allow_loopback=True) == NOT_PUBLIC
    assert refusal("https://intranet.example.org/p", allow_loopback=True) == NOT_PUBLIC
    assert refusal("http://10.0.0.1/p", allow_loopback=True) == NOT_HTTPS
    assert refusal("http://loop.example.org/p", allow_loopback=True) == NOT_HTTPS
    assert refusal("http://push.example.org/p", allow_loopback=True) == NOT_HTTPS
    # Odd spellings stay refused even where loopback is allowed.
    assert refusal("http://127.1:8000/p", allow_loopback=True) == HOST_INVALID
    assert refusal("https://2130706433/p", allow_loopback=True) == HOST_INVALID


def test_check_url_form_needs_no_dns(resolver):
    check_url_form("https://intranet.example.org/p")  # a name: left to vet_url
    check_url_form(f"https://{PUBLIC_V4}/p")
    for url in ("https://127.1/p", "https://[::1]/p", "https://localhost./p", "http://x.org/"):
        with pytest.raises(DestinationRefused):
            check_url_form(url)
    assert resolver.lookups == []
