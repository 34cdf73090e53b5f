"""
:mod:`ace.test_utils.pytest_plugin` provides pytest fixtures for testing code that sends with
ACE. Enable it with ``pytest_plugins = ["ace.test_utils.pytest_plugin"]`` in a conftest.py.

* ``smtp_server``: a real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives,
  emptied for each test (see :class:`ace.test_utils.smtp.RecordingSMTPServer`);
* ``smtp_backend``: Django's SMTP email backend pointed at ``smtp_server``;
* an autouse fixture resetting every ``@once`` cache (ACE's channels and policies) around
  each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def _ace_smtp_server_session() -> Iterator[Any]:
    from ace.test_utils.smtp import RecordingSMTPServer

    server = RecordingSMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(_ace_smtp_server_session: Any) -> Iterator[Any]:
    """A real SMTP server on 127.0.0.1, emptied for each test.

    ``.messages`` (envelope ``mail_from``/``rcpt_tos``, raw ``data``, parsed ``.message``,
    ``.part("html")``), ``.connections``, and per recipient ``.reply(addr, "451 ...")``,
    ``.drop(addr, times=1)``, ``.delay(addr, seconds)``. The connection ``ace.send`` keeps
    open between messages is closed around each test, so each starts with none.
    """
    from ace.channel.django_email_sessions import close_kept_session

    close_kept_session()
    _ace_smtp_server_session.reset()
    yield _ace_smtp_server_session
    close_kept_session()
    _ace_smtp_server_session.reset()


@pytest.fixture
def smtp_backend(settings: Any, smtp_server: Any) -> Any:
    """Django's SMTP email backend pointed at ``smtp_server``; returns the server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


@pytest.fixture(autouse=True)
def _reset_ace_once_caches() -> Iterator[None]:
    """Reset every ``@once`` cache (ACE channels and policies) before and after each test."""
    from ace.utils.once import reset_all

    reset_all()
    yield
    reset_all()
