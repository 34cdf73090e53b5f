"""Shared fixtures: service availability, the Redis URL and a migrated one-machine VAR_DIR.

Keep this file small; fixtures used by one area belong in that area's own conftest.py.
Plain helpers live in ``project_helpers`` (conftest modules cannot be imported reliably).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from project_helpers import ROOT, site_env
from project_helpers import require_service as _require_service

# ACE fixtures: smtp_server / smtp_backend (a recording SMTP server on loopback), @once reset.
pytest_plugins = ["ace.test_utils.pytest_plugin"]


@pytest.fixture(name="require_service", scope="session")
def require_service_fixture() -> Callable[[str, Callable[[], object]], None]:
    """``require_service(name, check)``: skip if ``check()`` raises; fail if REQUIRE_SERVICES=1."""
    return _require_service


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

    _require_service(f"Redis at {redis_url}", ping)
    return redis_url


@pytest.fixture
def postgres_service(settings) -> None:
    """Require the test database to be PostgreSQL (skip, or fail under REQUIRE_SERVICES)."""

    def is_postgres() -> None:
        engine = settings.DATABASES["default"]["ENGINE"]
        if not engine.endswith("postgresql"):
            raise RuntimeError(f"DATABASE_URL selects {engine}, not PostgreSQL")

    _require_service("PostgreSQL", is_postgres)


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
