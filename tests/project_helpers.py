"""Helpers shared by the project-level tests: service checks, free ports, a one-machine site env.

Imported as ``project_helpers`` (tests/ is on sys.path); the fixtures in conftest.py wrap them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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


#: Run in a child process by :func:`settings_snapshot`: import a settings module, print settings.
_SNAPSHOT_CODE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
names = sys.argv[2:] or [n for n in dir(module) if n.isupper()]
print(json.dumps({n: getattr(module, n) for n in names if hasattr(module, n)}, default=str))
"""


def settings_snapshot(
    env: dict[str, str], module: str = "config.settings.local", names: tuple[str, ...] = ()
) -> dict:
    """Import the settings ``module`` in a fresh process with exactly ``env``; return its settings.

    A fresh process because settings read the environment once, at import. Raises
    ``subprocess.CalledProcessError`` (with the child's stderr) when the settings refuse to load.
    """
    result = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT_CODE, module, *names],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, result.args, result.stdout, result.stderr
        )
    return json.loads(result.stdout)


def clean_env(**values: str) -> dict[str, str]:
    """The current environment without anything the settings read, plus ``values``."""
    settings_vars = {*SITE_ENV_VARS_TO_DROP, "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "TIME_ZONE"}
    settings_vars |= {"VAR_DIR", "CONN_MAX_AGE", "LOG_LEVEL", "DEFAULT_FROM_EMAIL"}
    prefixes = ("DJANGO_", "ACE_", "CELERY_", "EMAIL_")
    env = {
        k: v for k, v in os.environ.items() if k not in settings_vars and not k.startswith(prefixes)
    }
    env.update(values)
    return env
