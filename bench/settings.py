"""Settings for the benchmark: the project's base settings plus PostgreSQL, Redis, the SMTP
sink on loopback and the ``bench`` app (its message type, templates and query counter)."""

from bench import workload
from config.settings.base import *  # noqa: F403
from config.settings.base import INSTALLED_APPS, TEMPLATES, env

DEBUG = False
SECRET_KEY = "benchmark-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DATABASES = {
    "default": env.db("BENCH_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ace_bench")
}
DATABASES["default"]["CONN_MAX_AGE"] = None
CELERY_BROKER_URL = env.str("BENCH_REDIS_URL", default="redis://127.0.0.1:6379/7")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CAMPAIGNS_RATE_LIMIT_REDIS_URL = CELERY_BROKER_URL
CELERY_TASK_ALWAYS_EAGER = False

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
TEMPLATES[0]["DIRS"] = [*TEMPLATES[0]["DIRS"], workload.TEMPLATES_DIR]

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = env.int("BENCH_SMTP_PORT", default=2525)
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = workload.FROM_EMAIL
ACE_ENABLED_CHANNELS = ["django_email"]
ACE_CHANNEL_DEFAULT_EMAIL = "django_email"
ACE_CHANNEL_TRANSACTIONAL_EMAIL = "django_email"
ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = env.bool("BENCH_FAST_SMTP", default=True)
ACE_CHANNEL_DJANGO_EMAIL_SMTP_CONNECTIONS = env.int("BENCH_SMTP_CONNECTIONS", default=4)
ACE_BATCH_RENDER = env.bool("BENCH_BATCH_RENDER", default=True)  # --full-render: False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
