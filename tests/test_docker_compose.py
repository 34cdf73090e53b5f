"""docker-compose.yml agrees with the settings: it can't run here (no Docker engine), so it is read.

The app services' environment (on top of the Dockerfile's ENV) is loaded into the production
settings in a fresh process, and the resulting database, broker, cache and mail settings must
point at the stack's own services; commands, health checks and start order are checked too.
"""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

import pytest
import yaml
from project_helpers import ROOT, clean_env, settings_snapshot

APP_SERVICES = ("migrate", "web", "worker", "beat")
LONG_RUNNING = ("postgres", "redis", "mailpit", "web", "worker")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` as compose does."""

    def replace(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if name in shell:
            return shell[name]
        if kind == "-":
            return arg
        raise AssertionError(f"${{{name}}} is required by docker-compose.yml: {arg}")

    return INTERPOLATION.sub(replace, value)


def dockerfile_env() -> dict[str, str]:
    """The ENV instructions of the Dockerfile (the image's environment)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def app_env(services: dict, name: str, shell: dict[str, str]) -> dict[str, str]:
    env = dict(dockerfile_env())
    for key, value in services[name]["environment"].items():
        env[key] = interpolate(str(value), shell)
    return env


def command(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def option(argv: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return argv[i + 1]
    raise AssertionError(f"{name} not in {argv}")


def test_the_stack_has_every_part(services: dict) -> None:
    assert set(services) == {"postgres", "redis", "mailpit", "migrate", "web", "worker", "beat"}
    images = {name: services[name].get("image", "") for name in services}
    assert images["postgres"].startswith("postgres:")
    assert images["redis"].startswith("redis:")
    assert images["mailpit"].startswith("axllent/mailpit:")
    for name in APP_SERVICES:  # one image, built from the Dockerfile, one environment
        assert services[name]["build"] == "."
        assert services[name]["environment"] == services["web"]["environment"]


def test_secret_key_is_required_from_the_shell(services: dict) -> None:
    with pytest.raises(AssertionError, match=r"\$\{SECRET_KEY\} is required"):
        app_env(services, "web", shell={})


def test_app_environment_points_the_settings_at_the_stack(services: dict) -> None:
    env = app_env(services, "web", shell={"SECRET_KEY": "s" * 50})
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    s = settings_snapshot(clean_env(**env), env["DJANGO_SETTINGS_MODULE"])

    assert s["DEBUG"] is False and s["SECRET_KEY"] == "s" * 50
    db = s["DATABASES"]["default"]
    postgres = services["postgres"]["environment"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"]) == ("postgres", 5432)
    assert (db["NAME"], db["USER"], db["PASSWORD"]) == (
        postgres["POSTGRES_DB"],
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )

    broker = urlsplit(s["CELERY_BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    cache = s["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert urlsplit(cache["LOCATION"]).hostname == "redis"

    assert s["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (s["EMAIL_HOST"], s["EMAIL_PORT"]) == ("mailpit", 1025)  # Mailpit's SMTP port

    # The health check and the published port must be allowed hosts and trusted origins.
    assert {"localhost", "127.0.0.1"} <= set(s["ALLOWED_HOSTS"])
    assert "http://localhost:8000" in s["CSRF_TRUSTED_ORIGINS"]
    assert s["SECURE_SSL_REDIRECT"] is False  # plain HTTP on localhost, see the file's header
    assert urlsplit(s["SITE_URL"]).port == 8000


def test_every_variable_the_stack_sets_is_read_by_the_settings(services: dict) -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "config").rglob("*.py"))
    for key in services["web"]["environment"]:
        assert f'"{key}"' in sources, f"docker-compose.yml sets {key}, which nothing reads"


def test_commands_match_the_settings_and_the_code(services: dict) -> None:
    from config.settings import base

    migrate = command(services["migrate"])
    assert migrate[:2] == ["sh", "-c"]
    assert migrate[2].split(" && ") == [
        "python manage.py migrate --noinput",
        "python manage.py setup_periodic_tasks",  # the run watchdog (campaigns.tasks)
    ]

    web = command(services["web"])
    assert web[:2] == ["gunicorn", "config.wsgi:application"]
    port = option(web, "--bind").rsplit(":", 1)[1]
    assert services["web"]["ports"] == [f"{port}:{port}"]
    assert f"127.0.0.1:{port}/admin/login/" in " ".join(services["web"]["healthcheck"]["test"])
    assert "--no-control-socket" in web  # gunicorn's control socket is per-user, not per-app

    worker = command(services["worker"])
    assert worker[:4] == ["celery", "-A", "config", "worker"]
    beat = command(services["beat"])
    assert beat[:4] == ["celery", "-A", "config", "beat"]
    assert option(beat, "--scheduler") == base.CELERY_BEAT_SCHEDULER

    # What gunicorn and celery -A load exists (without building the WSGI app here).
    assert re.search(r"^application = get_wsgi_application\(\)$", wsgi_source(), re.M)
    import config

    assert "config.debug_task" in config.celery_app.tasks


def wsgi_source() -> str:
    return (ROOT / "config" / "wsgi.py").read_text()


def test_start_order_and_health_checks(services: dict) -> None:
    for name in LONG_RUNNING:
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert services[name]["restart"] == "unless-stopped"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"
    # The worker's health check asks that very worker, by its default node name.
    assert "celery@$HOSTNAME" in services["worker"]["healthcheck"]["test"][1].replace("$$", "$")


def test_dockerfile_installs_like_the_readme_and_collects_static() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "pip install --no-cache-dir -r requirements.txt" in text
    assert re.search(r"pip install .*-e \.", text)  # editable: entry points register
    assert "manage.py collectstatic --noinput" in text
    assert dockerfile_env()["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert re.search(r"^USER app$", text, re.M)  # not root


def test_web_and_worker_share_the_var_dir(services: dict) -> None:
    """Big recipient-list imports are uploaded by web and read by the worker from VAR_DIR."""
    var_dir = dockerfile_env()["VAR_DIR"]
    mounts = {
        name: {
            str(volume).split(":")[0]
            for volume in services[name].get("volumes", [])
            if str(volume).endswith(f":{var_dir}")
        }
        for name in ("web", "worker")
    }
    assert mounts["web"] and mounts["web"] == mounts["worker"], mounts
