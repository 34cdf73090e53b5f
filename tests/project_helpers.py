"""Helpers shared by the project-level tests: service checks, free ports, a one-machine site env.

Imported as ``project_helpers`` (tests/ is on sys.path); the fixtures in conftest.py wrap them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Under REQUIRE_SERVICES=1 (set by .ci/run) a test whose service is missing fails instead of
#: skipping, so CI cannot go green by skipping the integration tests.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "") == "1"

#: Variables of the outer environment that would point a child process away from the
#: embedded defaults (CI exports the PostgreSQL and Redis URLs for the test suite).
SITE_ENV_VARS_TO_DROP = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "EMAIL_URL",
    "EMAIL_BACKEND",
    "EMAIL_FILE_PATH",
    "STATIC_ROOT",
    "SITE_URL",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "SECRET_KEY",
    "DJANGO_SUPERUSER_USERNAME",
    "DJANGO_SUPERUSER_PASSWORD",
    "DJANGO_SUPERUSER_EMAIL",
    "CELERY_TASK_ALWAYS_EAGER",
    "HOST",
    "PORT",
)


def require_service(name: str, check: Callable[[], object]) -> None:
    """Skip the calling test when ``check()`` raises, or fail it when REQUIRE_SERVICES=1.

    ``check`` should be quick (use short connect timeouts); any exception means "missing".
    """
    try:
        check()
    except Exception as exc:
        message = f"{name} is not available: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def site_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """An environment for a child process running the site on the embedded defaults in ``var_dir``.

    SQLite, the filesystem broker and captured mail all live under ``var_dir``; whatever the
    outer environment (CI's PostgreSQL and Redis URLs) says about them is dropped.
    """
    env = {k: v for k, v in os.environ.items() if k not in SITE_ENV_VARS_TO_DROP}
    env.update(
        VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="config.settings.local",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env
