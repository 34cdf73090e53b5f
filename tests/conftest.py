"""Shared fixtures: service availability, the Redis URL and a one-machine site environment.

Keep this file small; fixtures used by one area belong in that area's own conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# ACE fixtures: smtp_server / smtp_backend (a recording SMTP server on loopback), @once reset.
pytest_plugins = ["ace.test_utils.pytest_plugin"]

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
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "SECRET_KEY",
    "DJANGO_SUPERUSER_USERNAME",
    "DJANGO_SUPERUSER_PASSWORD",
    "DJANGO_SUPERUSER_EMAIL",
    "CELERY_TASK_ALWAYS_EAGER",
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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL the suite should use (env REDIS_URL; CI points it at a local server)."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_service(redis_url: str) -> str:
    """The Redis URL, after checking the server answers (skip, or fail under REQUIRE_SERVICES)."""
    import redis

    def ping() -> None:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()

    require_service(f"Redis at {redis_url}", ping)
    return redis_url


@pytest.fixture
def postgres_service(settings) -> None:
    """Require the test database to be PostgreSQL (skip, or fail under REQUIRE_SERVICES)."""

    def is_postgres() -> None:
        engine = settings.DATABASES["default"]["ENGINE"]
        if not engine.endswith("postgresql"):
            raise RuntimeError(f"DATABASE_URL selects {engine}, not PostgreSQL")

    require_service("PostgreSQL", is_postgres)


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


@pytest.fixture(scope="session")
def migrated_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAR_DIR whose SQLite database is migrated once per session; copy it, never write to it."""
    var_dir = tmp_path_factory.mktemp("var-template")
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env=site_env(var_dir),
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    return var_dir


@pytest.fixture
def site_var_dir(migrated_var_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the migrated VAR_DIR for one test."""
    var_dir = tmp_path / "var"
    shutil.copytree(migrated_var_dir, var_dir)
    return var_dir
