"""Settings load from the environment: defaults, URLs, refusals, deploy checks and migrations.

Each case imports the settings in a fresh process with exactly the environment under test,
since settings read the environment once, at import.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from project_helpers import ROOT, clean_env, settings_snapshot

from config.settings.base import SECRET_KEY_MISSING_ERROR


def refusal(env: dict[str, str], module: str) -> str:
    """The error output of settings that must refuse to load."""
    with pytest.raises(subprocess.CalledProcessError) as failed:
        settings_snapshot(env, module)
    return failed.value.stderr


def test_local_defaults_keep_everything_under_var_dir(tmp_path: Path) -> None:
    s = settings_snapshot(clean_env(VAR_DIR=str(tmp_path)))

    assert s["DEBUG"] is True
    assert s["SECRET_KEY"]  # the development key, since debug is on
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "db.sqlite3")
    # What lets web, worker and beat write at once (proved in test_sqlite_concurrency.py).
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    assert db["OPTIONS"]["timeout"] >= 10

    assert s["CELERY_BROKER_URL"].startswith("filesystem://")
    options = s["CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "broker")
    assert Path(options["data_folder_in"]).is_dir()  # kombu does not create it
    assert Path(options["control_folder"]).is_dir()

    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert s["EMAIL_FILE_PATH"] == str(tmp_path / "mail")
    assert s["STATIC_ROOT"] == str(tmp_path / "static")
    assert s["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert s["TIME_ZONE"] == s["CELERY_TIMEZONE"] == "UTC"
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert s["CELERY_BEAT_SCHEDULER"] == "django_celery_beat.schedulers:DatabaseScheduler"


def test_var_dir_and_the_sqlite_database_are_created_owner_only(tmp_path: Path) -> None:
    var_dir = tmp_path / "fresh" / "var"
    s = settings_snapshot(clean_env(VAR_DIR=str(var_dir)))
    assert var_dir.stat().st_mode & 0o777 == 0o700
    database = Path(s["DATABASES"]["default"]["NAME"])
    assert database == var_dir / "db.sqlite3"
    assert database.stat().st_mode & 0o777 == 0o600  # before SQLite opens it: -wal, -shm follow
    # The database opens and migrates in the file as created, and keeps its mode.
    env = clean_env(VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings.local")
    result = manage(env, "migrate", "--verbosity", "0")
    assert result.returncode == 0, result.stderr
    assert database.stat().st_mode & 0o777 == 0o600


def test_urls_and_lists_from_the_environment(tmp_path: Path) -> None:
    s = settings_snapshot(
        clean_env(
            VAR_DIR=str(tmp_path),
            DATABASE_URL="postgres://camp:s3cret@db.internal:6543/campaigns",
            CELERY_BROKER_URL="redis://queue.internal:6379/2",
            CACHE_URL="redis://queue.internal:6379/3",
            EMAIL_URL="smtp+tls://mailer:pw@smtp.example.org:587",
            DJANGO_ALLOWED_HOSTS="mail.example.org,admin.example.org",
            DJANGO_CSRF_TRUSTED_ORIGINS="https://mail.example.org",
            DJANGO_TIME_ZONE="Europe/Paris",
        )
    )

    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.internal", 6543, "campaigns")
    assert (db["USER"], db["PASSWORD"]) == ("camp", "s3cret")
    assert db["CONN_MAX_AGE"] == 60 and db["CONN_HEALTH_CHECKS"] is True
    assert "transaction_mode" not in db.get("OPTIONS", {})

    assert s["CELERY_BROKER_URL"] == "redis://queue.internal:6379/2"
    assert s["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 3600}
    assert not (tmp_path / "broker").exists()  # no filesystem broker, no folders
    assert s["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"

    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (s["EMAIL_HOST"], s["EMAIL_PORT"], s["EMAIL_USE_TLS"]) == ("smtp.example.org", 587, True)
    assert (s["EMAIL_HOST_USER"], s["EMAIL_HOST_PASSWORD"]) == ("mailer", "pw")

    assert s["ALLOWED_HOSTS"] == ["mail.example.org", "admin.example.org"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://mail.example.org"]
    assert s["TIME_ZONE"] == s["CELERY_TIMEZONE"] == "Europe/Paris"


def test_email_backend_without_url(tmp_path: Path) -> None:
    s = settings_snapshot(
        clean_env(
            VAR_DIR=str(tmp_path), EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend"
        )
    )
    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


def test_unprefixed_names_are_aliases_and_the_prefixed_name_wins(tmp_path: Path) -> None:
    s = settings_snapshot(
        clean_env(
            VAR_DIR=str(tmp_path),
            SECRET_KEY="k" * 50,
            ALLOWED_HOSTS="plain.example.org",
            DJANGO_ALLOWED_HOSTS="prefixed.example.org",
            CSRF_TRUSTED_ORIGINS="https://plain.example.org",
            TIME_ZONE="America/New_York",
        ),
        "config.settings.production",
    )
    assert s["SECRET_KEY"] == "k" * 50
    assert s["ALLOWED_HOSTS"] == ["prefixed.example.org"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://plain.example.org"]
    assert s["TIME_ZONE"] == "America/New_York"


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    stderr = refusal(clean_env(VAR_DIR=str(tmp_path)), "config.settings.production")
    assert "ImproperlyConfigured" in stderr
    assert SECRET_KEY_MISSING_ERROR in stderr


def test_local_with_debug_off_also_requires_secret_key(tmp_path: Path) -> None:
    env = clean_env(VAR_DIR=str(tmp_path), DJANGO_DEBUG="false")
    assert SECRET_KEY_MISSING_ERROR in refusal(env, "config.settings.local")
    s = settings_snapshot({**env, "DJANGO_SECRET_KEY": "x" * 50})
    assert s["DEBUG"] is False and s["SECRET_KEY"] == "x" * 50


def test_unknown_time_zone_is_refused_clearly(tmp_path: Path) -> None:
    env = clean_env(VAR_DIR=str(tmp_path), DJANGO_TIME_ZONE="Mars/Olympus_Mons")
    stderr = refusal(env, "config.settings.local")
    assert "DJANGO_TIME_ZONE='Mars/Olympus_Mons' is not a known time zone" in stderr


def test_production_throttles_admin_logins_by_default(tmp_path: Path) -> None:
    env = clean_env(VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY="k" * 50)
    s = settings_snapshot(env, "config.settings.production")
    assert s["AXES_ENABLED"] is True
    assert (s["AXES_FAILURE_LIMIT"], s["AXES_COOLOFF_TIME"]) == (10, "0:15:00")
    assert s["AXES_LOCKOUT_PARAMETERS"] == [["username", "ip_address"]]
    assert "axes" in s["INSTALLED_APPS"]
    assert s["MIDDLEWARE"][-1] == "axes.middleware.AxesMiddleware"
    assert s["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"

    tuned = settings_snapshot(
        {**env, "AXES_FAILURE_LIMIT": "5", "AXES_COOLOFF_MINUTES": "60"},
        "config.settings.production",
    )
    assert (tuned["AXES_FAILURE_LIMIT"], tuned["AXES_COOLOFF_TIME"]) == (5, "1:00:00")


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_deploy_reports_nothing_under_production_settings(tmp_path: Path) -> None:
    env = clean_env(
        VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="mail.example.org",
    )
    result = manage(env, "check", "--deploy", "--fail-level", "DEBUG")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_does_flag_an_insecure_configuration(tmp_path: Path) -> None:
    """The check above can fail: the same command objects to a plain-HTTP configuration."""
    env = clean_env(
        VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECURE_COOKIES="false",
    )
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W012" in result.stderr  # SESSION_COOKIE_SECURE


def test_no_missing_migrations(tmp_path: Path) -> None:
    env = clean_env(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings.local")
    result = manage(env, "makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, f"missing migrations:\n{result.stdout}{result.stderr}"


# The README's configuration table -------------------------------------------------------------

ENV_READ = re.compile(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def variables_read_by_settings() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        if path.name != "test.py":
            names |= set(ENV_READ.findall(path.read_text()))
    return names


def test_readme_documents_every_variable_the_settings_read() -> None:
    readme = (ROOT / "README.md").read_text()
    names = variables_read_by_settings()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "EMAIL_URL", "DJANGO_SECRET_KEY"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"add these to the README's configuration table: {missing}"


def test_default_mail_is_captured_in_files_an_operator_can_read(tmp_path: Path) -> None:
    env = clean_env(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings.local")
    result = manage(env, "sendtestemail", "someone@example.org")
    assert result.returncode == 0, result.stderr
    captured = list((tmp_path / "mail").glob("*.log"))
    assert len(captured) == 1
    text = captured[0].read_text()
    assert "To: someone@example.org" in text and "Subject: Test email from" in text
