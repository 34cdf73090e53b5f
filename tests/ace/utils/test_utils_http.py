"""Tests for ace.utils.http: which failed HTTP requests may have reached the server."""

from __future__ import annotations

import http.client

import pytest
import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from ace.utils.http import request_may_have_arrived


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
