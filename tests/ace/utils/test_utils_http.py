"""Tests for ace.utils.http: which failed HTTP requests may have reached the server, and the
guarded session that sends to URLs someone else chose (vetted, pinned, no redirects, no body).

Every request here goes to loopback: names are answered by a fake resolver, and connections to
any other address are refused by a guard before a packet leaves (or rerouted to loopback).
"""

from __future__ import annotations

import http.client

import pytest
import requests
from fake_dns import ConnectionGuard, CountingListener, FakeResolver
from fake_push_service import FakePushService, Reply, tls_server_context
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from ace.utils import http as ace_http
from ace.utils.http import (
    DestinationRefusedError,
    GuardedSession,
    request_may_have_arrived,
    status_line,
)
from ace.utils.netguard import HOST_INVALID, NOT_HTTPS, NOT_PUBLIC

PUBLIC = "93.184.215.14"


def refused() -> requests.ConnectionError:
    return requests.ConnectionError(
        MaxRetryError(None, "/send", NewConnectionError(None, "Connection refused"))
    )


@pytest.mark.parametrize(
    "error",
    [
        refused(),
        requests.ConnectionError(
            MaxRetryError(None, "/send", NameResolutionError("api.example", None, "no DNS"))
        ),
        requests.ConnectionError(
            MaxRetryError(None, "/send", ConnectTimeoutError(None, "connect timed out"))
        ),
        requests.ConnectTimeout("connect timed out"),
        requests.exceptions.SSLError("certificate verify failed"),
        requests.exceptions.ProxyError("proxy refused"),
        requests.exceptions.InvalidURL("no host"),
        requests.ConnectionError(
            ProtocolError("Connection aborted.", BrokenPipeError(32, "Broken pipe"))
        ),
    ],
    ids=repr,
)
def test_failures_before_the_request_was_sent_may_be_retried(error):
    assert request_may_have_arrived(error) is False


@pytest.mark.parametrize(
    "error",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(
            ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))
        ),
        requests.ConnectionError(
            ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        ),
        requests.exceptions.ChunkedEncodingError("response ended early"),
        requests.ConnectionError("something else"),
    ],
    ids=repr,
)
def test_failures_after_the_request_was_sent_are_unknown(error):
    assert request_may_have_arrived(error) is True


def test_not_an_http_error():
    assert request_may_have_arrived(ValueError("bug")) is False
    assert request_may_have_arrived(None) is False


# GuardedSession
# ------------------------------------------------------------------------------


@pytest.fixture
def resolver(monkeypatch) -> FakeResolver:
    return FakeResolver(
        {"intranet.example.org": ["10.0.0.1"], "loop.example.org": ["127.0.0.1"]}
    ).install(monkeypatch)


@pytest.fixture
def guard(monkeypatch) -> ConnectionGuard:
    return ConnectionGuard().install(monkeypatch)


@pytest.fixture
def listener():
    listening = CountingListener()
    yield listening
    listening.close()


@pytest.fixture
def service():
    with FakePushService() as running:
        yield running


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("127.0.0.1", NOT_PUBLIC),
        ("127.1", NOT_PUBLIC),
        ("2130706433", NOT_PUBLIC),
        ("0x7f000001", NOT_PUBLIC),
        ("0177.0.0.1", NOT_PUBLIC),
        ("0", NOT_PUBLIC),
        ("[::ffff:127.0.0.1]", NOT_PUBLIC),
        ("localhost.", NOT_PUBLIC),
        ("LOCALHOST", NOT_PUBLIC),
        ("loop.example.org", NOT_PUBLIC),
        ("intranet.example.org", NOT_PUBLIC),
        ("134744072", HOST_INVALID),
    ],
)
def test_internal_urls_are_refused_before_any_connection(resolver, guard, listener, host, code):
    with GuardedSession() as session, pytest.raises(DestinationRefusedError) as excinfo:
        session.post(f"https://{host}:{listener.port}/push/1", data=b"x", timeout=2)
    assert excinfo.value.code == code
    assert request_may_have_arrived(excinfo.value) is False
    assert guard.attempts == []
    assert listener.connections == 0


def test_plain_http_and_loopback_need_the_allowance(resolver, guard, service):
    with GuardedSession() as session, pytest.raises(DestinationRefusedError) as excinfo:
        session.post(service.endpoint("a"), data=b"x", timeout=2)
    assert excinfo.value.code == NOT_HTTPS
    assert service.requests == [] and guard.attempts == []
    with GuardedSession(allow_loopback=True) as session:
        assert session.post(service.endpoint("a"), data=b"x", timeout=2).status_code == 201
    assert len(service.requests) == 1


def test_a_name_that_does_not_resolve_may_be_retried(resolver, guard):
    with GuardedSession() as session, pytest.raises(requests.ConnectionError) as excinfo:
        session.post("https://nowhere.example.org/push/1", data=b"x", timeout=2)
    assert not isinstance(excinfo.value, DestinationRefusedError)
    assert request_may_have_arrived(excinfo.value) is False
    assert guard.attempts == []


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    tmp_path, resolver, guard, listener
):
    """DNS rebinding: the name is public when checked and loopback on any later look-up."""
    context, certificate = tls_server_context(tmp_path, "push.example.org")
    with FakePushService(tls=context) as service:
        port = int(service.url.rsplit(":", 1)[1])
        resolver.sequence("push.example.org", [PUBLIC], ["127.0.0.1"])
        guard.reroute[PUBLIC] = ("127.0.0.1", port)  # stands in for the public push service
        url = f"https://push.example.org:{port}/push/a"
        with GuardedSession() as session:
            response = session.post(url, data=b"x", timeout=5, verify=str(certificate))
            assert response.status_code == 201
            assert guard.attempts == [(PUBLIC, port)]
            assert resolver.lookups == ["push.example.org"]
            # TLS names the host (SNI, certificate check); HTTP names it in Host.
            assert service.sni == ["push.example.org"]
            [request] = service.requests
            assert request.headers["host"] == f"push.example.org:{port}"

            # The next send looks the name up again, gets loopback, and is refused.
            with pytest.raises(DestinationRefusedError) as excinfo:
                session.post(url, data=b"x", timeout=5, verify=str(certificate))
            assert excinfo.value.code == NOT_PUBLIC
        assert guard.attempts == [(PUBLIC, port)]
        assert len(service.requests) == 1
    assert listener.connections == 0


def test_the_other_address_family_is_tried_when_no_connection_is_made(tmp_path, resolver, guard):
    context, certificate = tls_server_context(tmp_path, "push.example.org")
    v6, v4, other_v4 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c", PUBLIC, "93.184.215.15"
    with FakePushService(tls=context) as service:
        port = int(service.url.rsplit(":", 1)[1])
        resolver.answer("push.example.org", v6, other_v4, v4)
        guard.reroute[other_v4] = ("127.0.0.1", port)  # v6 is refused by the guard
        url = f"https://push.example.org:{port}/push/a"
        with GuardedSession() as session:
            response = session.post(url, data=b"x", timeout=5, verify=str(certificate))
        assert response.status_code == 201
        assert guard.attempts == [(v6, port), (other_v4, port)]
        assert service.requests[0].headers["host"] == f"push.example.org:{port}"

        del guard.reroute[other_v4]
        guard.attempts.clear()
        with GuardedSession() as session, pytest.raises(requests.ConnectionError) as excinfo:
            session.post(url, data=b"x", timeout=5, verify=str(certificate))
        assert request_may_have_arrived(excinfo.value) is False
        assert guard.attempts == [(v6, port), (other_v4, port)], "one try per family, no more"


def test_the_certificate_is_checked_against_the_name(tmp_path, resolver, guard):
    context, certificate = tls_server_context(tmp_path, "push.example.org")
    with FakePushService(tls=context) as service:
        port = int(service.url.rsplit(":", 1)[1])
        resolver.answer("other.example.org", PUBLIC)
        guard.reroute[PUBLIC] = ("127.0.0.1", port)
        with GuardedSession() as session, pytest.raises(requests.exceptions.SSLError):
            session.post(
                f"https://other.example.org:{port}/push/a",
                data=b"x",
                timeout=5,
                verify=str(certificate),
            )
        assert service.requests == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(resolver, guard, status):
    with FakePushService() as service, FakePushService() as target:
        service.script("a", Reply(status, {"Location": target.endpoint("b")}))
        with GuardedSession(allow_loopback=True) as session:
            response = session.post(service.endpoint("a"), data=b"x", timeout=2)
        assert response.status_code == status
        assert status_line(response).startswith(f"HTTP {status} ")
        assert target.requests == []


def test_the_body_is_thrown_away_and_the_connection_kept(resolver, guard, service):
    service.script("a", Reply(400, body=b"internal: password=hunter2"))
    with GuardedSession(allow_loopback=True) as session:
        response = session.post(service.endpoint("a"), data=b"x", timeout=2)
        assert (response.status_code, response.content, response.text) == (400, b"", "")
        session.post(service.endpoint("a"), data=b"x", timeout=2)
    assert len({r.client_port for r in service.requests}) == 1, "one kept-alive connection"


def test_a_huge_body_costs_the_connection_only(resolver, guard, service, monkeypatch):
    monkeypatch.setattr(ace_http, "MAX_DISCARDED_BODY", 1000)
    service.script("a", Reply(200, body=b"x" * 5000))
    with GuardedSession(allow_loopback=True) as session:
        response = session.post(service.endpoint("a"), data=b"x", timeout=2)
        assert (response.status_code, response.content) == (200, b"")
        assert session.post(service.endpoint("a"), data=b"x", timeout=2).status_code == 201
    assert len(service.requests) == 2


def test_proxy_settings_from_the_environment_are_not_used(resolver, guard, service, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://10.9.9.9:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    with GuardedSession(allow_loopback=True) as session:
        assert session.post(service.endpoint("a"), data=b"x", timeout=2).status_code == 201
    assert {host for host, _ in guard.attempts} == {"127.0.0.1"}


def test_status_line_keeps_a_short_printable_reason():
    response = requests.Response()
    response.status_code = 400
    response.reason = "Bad \x1b[31mRequest" + "x" * 200
    line = status_line(response)
    assert line.startswith("HTTP 400 Bad [31mRequest")
    assert len(line) <= len("HTTP 400 ") + ace_http.MAX_REASON
