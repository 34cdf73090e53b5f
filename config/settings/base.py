"""Settings shared by every environment, read from the environment through django-environ.

Every variable is listed in the README's configuration table. Defaults suit one machine and
keep their state under ``VAR_DIR`` (``var/`` in the project folder): SQLite, an embedded
(filesystem) Celery broker, and mail captured as files under ``var/mail``.
"""

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A .env file in the project folder is read for convenience; real environment variables win.
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env")

# The names the issue and most hosting platforms use are accepted as aliases of the DJANGO_*
# names (the DJANGO_* name wins when both are set).
for _name in ("SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "TIME_ZONE"):
    if _name in os.environ and f"DJANGO_{_name}" not in os.environ:
        os.environ[f"DJANGO_{_name}"] = os.environ[_name]

# Everything the one-machine defaults keep on disk (SQLite, broker, mail, static files).
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))


def private_folder(path: Path) -> Path:
    """Make ``path`` (and its parents) if missing; the folder itself readable by its owner only
    (``0700``: the database, broker messages and captured mail are under VAR_DIR)."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and ``0600`` if missing (SQLite then opens it, and gives its -wal
    and -shm files the same mode); an existing file is left as it is."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path


# Raised by the environment settings that need a key when DEBUG is off (local, production).
SECRET_KEY_MISSING_ERROR = (
    "DJANGO_SECRET_KEY (or SECRET_KEY) is not set, and DEBUG is off: set it in the environment. "
    "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
)

# General
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/#debug
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# https://docs.djangoproject.com/en/5.2/ref/settings/#secret-key (required when DEBUG is off;
# local.py and production.py enforce it)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# https://docs.djangoproject.com/en/5.2/ref/settings/#allowed-hosts
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# https://docs.djangoproject.com/en/5.2/ref/settings/#csrf-trusted-origins
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# https://docs.djangoproject.com/en/5.2/ref/settings/#time-zone
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"DJANGO_TIME_ZONE={TIME_ZONE!r} is not a known time zone (use an IANA name such as "
        "'UTC' or 'Europe/Paris')."
    )
USE_TZ = True
LANGUAGE_CODE = env.str("DJANGO_LANGUAGE_CODE", default="en")
USE_I18N = True
# Base URL used to build absolute links in messages (unsubscribe links, etc.).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# Databases
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, a worker and beat write at once on one machine: WAL lets readers and a
    # writer proceed together, and "immediate" transactions plus a busy timeout make writers
    # queue instead of failing with "database is locked".
    # https://docs.djangoproject.com/en/5.2/ref/databases/#database-is-locked-errors
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        # The database file is the admin's data and password hashes: owner-only from the start.
        _db_file = Path(DATABASES["default"]["NAME"])
        private_folder(_db_file.parent)
        private_file(_db_file)
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Caches
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-cache-url
# Per-process memory by default; set CACHE_URL=redis://... to share one across machines.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# URLs and apps
# ------------------------------------------------------------------------------
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Content-Security-Policy header (CONTENT_SECURITY_POLICY below) and its system checks.
    "csp",
    # Login throttling (AXES_* below): failed logins per username and address, in the database.
    "axes",
    "django_celery_beat",
    "import_export",
    "ace",
    "campaigns",
    # Devices per user for the push channel (Web Push, FCM, APNs), and their admin/endpoint.
    "push_notifications",
    "campaigns.push",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy (django-csp), on every page: the admin and the public ones
# ------------------------------------------------------------------------------
# https://django-csp.readthedocs.io/en/latest/configuration.html
# Scripts only from this site: Django's admin (5.2) and import-export run no inline script, and
# their data travels in data-* attributes and json_script blocks, which CSP does not block.
# The one inline event handler left, import-export's "Select all" checkbox on the export page
# (onchange="onSelectToggleChange(event)"), is allowed by its hash alone ('unsafe-hashes').
# Inline styles stay allowed: the admin's templates and ours use style attributes and
# <style> blocks, and styles cannot run code. Images may come from https: (and data:) for the
# preview of a rendered email, which a srcdoc iframe shows under this same policy.
CSP_SELECT_ALL_HANDLER = "'sha256-wid4zL8fR53ZYy1ljOepzR77Dn6vWUUxuNnnWWBP3I8='"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'unsafe-hashes'", CSP_SELECT_ALL_HANDLER],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "https:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Templates
# ------------------------------------------------------------------------------
# An explicit loader list (APP_DIRS off) so that templates stored in the database by
# operators are found ahead of files, under the same ACE path.
# https://docs.djangoproject.com/en/5.2/ref/templates/api/#loader-types
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "loaders": [
                "campaigns.template_loader.DatabaseLoader",
                (
                    "django.template.loaders.cached.Loader",
                    [
                        "django.template.loaders.filesystem.Loader",
                        "django.template.loaders.app_directories.Loader",
                    ],
                ),
            ],
        },
    }
]

# Authentication and login throttling (django-axes)
# ------------------------------------------------------------------------------
# https://django-axes.readthedocs.io/en/latest/4_configuration.html
# AxesStandaloneBackend comes first: it refuses any login, right password or not, from a
# username and address pair that failed AXES_FAILURE_LIMIT times within AXES_COOLOFF_MINUTES.
# A login without a request (a test's client.login(), a shell's authenticate()) is an error
# under axes: use force_login, or pass request=. `manage.py axes_reset` lifts every lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
# Per (username, address) pair: an attacker guessing one account's password is stopped, and
# cannot lock that account for its owner, who logs in from another address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Keep failed attempts only; a row per successful login is the session's business.
AXES_DISABLE_ACCESS_LOG = True

# Passwords
# ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Static files (served by whitenoise)
# ------------------------------------------------------------------------------
# https://whitenoise.readthedocs.io/en/stable/django.html
STATIC_URL = "/static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Email
# ------------------------------------------------------------------------------
# EMAIL_URL (e.g. smtp+tls://user:pass@host:587) wins; else EMAIL_BACKEND; else mail is
# written as text files under var/mail (one per connection) where an operator can read it.
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-email-url
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str(
        "EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend"
    )
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Campaigns <noreply@example.org>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)

# Celery
# ------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# The default broker is kombu's filesystem transport: no server, for one machine (one worker
# process tree; more machines need Redis or RabbitMQ). Each message is a file in var/broker.
# https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.filesystem.html
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The transport ignores host and path (the folders below say where messages go); naming a
    # host stops kombu from warning "No hostname was supplied" in every process.
    CELERY_BROKER_URL = "filesystem://localhost//"
    _broker_dir = VAR_DIR / "broker"
    _broker_control_dir = VAR_DIR / "broker-control"
    # The transport does not create its folders, and publishers (web, beat) need them as much as
    # the worker, so they are made here, wherever the settings are loaded.
    private_folder(VAR_DIR)
    for _folder in (_broker_dir, _broker_control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_control_dir),
        # How often an idle worker lists the folder (kombu's default is every second).
        "polling_interval": env.float("CELERY_BROKER_POLLING_INTERVAL", default=0.2),
    }
else:
    # At-least-once: an unacknowledged task comes back after the visibility timeout.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
# Acknowledge after the task ran, and give each worker process one task at a time, so a
# killed worker's task is redelivered (the delivery log makes redelivery harmless).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Every task's time limits (seconds): at the soft one Celery raises SoftTimeLimitExceeded in the
# task, at the hard one it kills the worker process. A deliver_batch of 500 recipients takes a
# few seconds; a part of a template edited in the admin fails its message after
# CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS at most (campaigns/sandbox.py).
# https://docs.celeryq.dev/en/stable/userguide/workers.html#time-limits
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
# https://django-celery-beat.readthedocs.io/en/latest/#usage
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Campaign dispatch (README "How a campaign is sent")
# ------------------------------------------------------------------------------
# Each is None unless its environment variable is set: the defaults are written once, in
# campaigns/conf.py, next to the getter that reads each setting (and says what it does).
CAMPAIGNS_BATCH_SIZE = env.int("CAMPAIGNS_BATCH_SIZE", default=None)
CAMPAIGNS_SEND_CHUNK_SIZE = env.int("CAMPAIGNS_SEND_CHUNK_SIZE", default=None)
CAMPAIGNS_SENDING_LEASE_SECONDS = env.float("CAMPAIGNS_SENDING_LEASE_SECONDS", default=None)
CAMPAIGNS_STALLED_RUN_SECONDS = env.float("CAMPAIGNS_STALLED_RUN_SECONDS", default=None)
# Keep the cap below CELERY_VISIBILITY_TIMEOUT (Redis redelivers eta tasks held longer).
CAMPAIGNS_RETRY_BACKOFF_SECONDS = env.float("CAMPAIGNS_RETRY_BACKOFF_SECONDS", default=None)
CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS = env.float("CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS", default=None)
CAMPAIGNS_DEFAULT_EXPIRATION_HOURS = env.int("CAMPAIGNS_DEFAULT_EXPIRATION_HOURS", default=None)
# Days an unsubscribe link keeps working (None: always).
CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS = env.int("CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS", default=None)
# Messages per second per channel type shared by all workers, e.g. "email=50,push=200".
CAMPAIGNS_CHANNEL_RATE_LIMITS = env.str("CAMPAIGNS_CHANNEL_RATE_LIMITS", default=None)
CAMPAIGNS_RATE_LIMIT_BURST_SECONDS = env.float("CAMPAIGNS_RATE_LIMIT_BURST_SECONDS", default=None)
# Where the token buckets live: Redis if configured (or the broker is Redis), else the database.
_broker_is_redis = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
CAMPAIGNS_RATE_LIMIT_REDIS_URL = env.str(
    "CAMPAIGNS_RATE_LIMIT_REDIS_URL",
    default=env.str("REDIS_URL", default=CELERY_BROKER_URL if _broker_is_redis else ""),
)
# Limits of templates edited in the admin (per part rendered; defaults in campaigns/conf.py)
CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES = env.int("CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES", default=None)
CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS = env.float(
    "CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS", default=None
)
CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH = env.int("CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH", default=None)
CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH = env.int("CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH", default=None)

# Recipient list imports (README "Configuration"; defaults in campaigns/conf.py)
# ------------------------------------------------------------------------------
CAMPAIGNS_IMPORT_MAX_BYTES = env.int("CAMPAIGNS_IMPORT_MAX_BYTES", default=None)
CAMPAIGNS_IMPORT_MAX_ROWS = env.int("CAMPAIGNS_IMPORT_MAX_ROWS", default=None)
CAMPAIGNS_IMPORT_MAX_UNPACKED_BYTES = env.int("CAMPAIGNS_IMPORT_MAX_UNPACKED_BYTES", default=None)
CAMPAIGNS_IMPORT_BACKGROUND_ROWS = env.int("CAMPAIGNS_IMPORT_BACKGROUND_ROWS", default=None)
CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS = env.float(
    "CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS", default=None
)
# Uploads wait for the confirmation step as owner-only files in VAR_DIR/imports, removed after
# the import (import-export's default leaves world-readable files in /tmp when not confirmed).
# https://django-import-export.readthedocs.io/en/latest/installation.html#import-export-tmp-storage-class
IMPORT_EXPORT_TMP_STORAGE_CLASS = "campaigns.services.imports.PrivateTempStorage"

# ACE (same flat names as the reference library)
# ------------------------------------------------------------------------------
# push_notification is safe to list where Web Push is not set up: without VAPID keys its
# enabled() is false and the log says why (see the Push section of the README).
ACE_ENABLED_CHANNELS = env.list(
    "ACE_ENABLED_CHANNELS", default=["django_email", "push_notification"]
)
ACE_ENABLED_POLICIES = env.list(
    "ACE_ENABLED_POLICIES", default=["campaigns_optout", "campaigns_toggles"]
)
ACE_CHANNEL_DEFAULT_EMAIL = env.str("ACE_CHANNEL_DEFAULT_EMAIL", default="django_email")
ACE_CHANNEL_TRANSACTIONAL_EMAIL = env.str("ACE_CHANNEL_TRANSACTIONAL_EMAIL", default="django_email")
ACE_DEFAULT_EXPIRATION_DELAY = env.int("ACE_DEFAULT_EXPIRATION_DELAY", default=120)
ACE_CHANNEL_SAILTHRU_DEBUG = env.bool("ACE_CHANNEL_SAILTHRU_DEBUG", default=False)
ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME = env.str("ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME", default="")
ACE_CHANNEL_SAILTHRU_API_KEY = env.str("ACE_CHANNEL_SAILTHRU_API_KEY", default="")
ACE_CHANNEL_SAILTHRU_API_SECRET = env.str("ACE_CHANNEL_SAILTHRU_API_SECRET", default="")
# Beyond the reference: the API base URL (None: https://api.sailthru.com) and the HTTP timeout.
ACE_CHANNEL_SAILTHRU_API_URL = env.str("ACE_CHANNEL_SAILTHRU_API_URL", default=None)
ACE_CHANNEL_SAILTHRU_TIMEOUT = env.float("ACE_CHANNEL_SAILTHRU_TIMEOUT", default=10.0)

# Push (django-push-notifications devices; the push_notification ACE channel)
# ------------------------------------------------------------------------------
# https://github.com/jazzband/django-push-notifications#settings-list
# VAPID (RFC 8292) identifies this server to Web Push services. Secrets come from the environment
# only: VAPID_PRIVATE_KEY (base64url raw 32-byte P-256 key, base64url DER, PEM text or a PEM file
# path; `manage.py push_vapid_keys` makes one) and VAPID_SUBJECT ("mailto:ops@example.org" or an
# https URL). Without them the push channel reports itself disabled, with a log line saying why.
_VAPID_SUBJECT = env.str("VAPID_SUBJECT", default="")
PUSH_NOTIFICATIONS_SETTINGS = {
    "WP_PRIVATE_KEY": env.str("VAPID_PRIVATE_KEY", default="") or None,
    "WP_CLAIMS": {"sub": _VAPID_SUBJECT} if _VAPID_SUBJECT else None,
    "WP_ERROR_TIMEOUT": env.float("ACE_CHANNEL_PUSH_TIMEOUT", default=10.0),
}
# Seconds a push service keeps an undelivered notification (capped by the message expiration).
ACE_CHANNEL_PUSH_TTL = env.int("ACE_CHANNEL_PUSH_TTL", default=24 * 3600)
# Retry delay when a push service answers 429/5xx without Retry-After, or cannot be reached.
ACE_CHANNEL_PUSH_RETRY_DELAY = env.int("ACE_CHANNEL_PUSH_RETRY_DELAY", default=60)
# Accept http:// subscription endpoints on loopback hosts (tests, local push services only).
PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = env.bool("PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS", default=False)

# Delivery feedback: ESP webhooks, bounce mailbox, suppression list (README "Delivery feedback";
# defaults in campaigns/conf.py)
# ------------------------------------------------------------------------------
# django-anymail receives the ESPs' event webhooks (/anymail/<esp>/tracking/).
# https://anymail.dev/en/stable/installation/#configuring-tracking-and-inbound-webhooks
INSTALLED_APPS += ["anymail"]
# Every ANYMAIL_<NAME> variable becomes ANYMAIL["<NAME>"] (e.g.
# ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY, ANYMAIL_POSTMARK_SERVER_TOKEN). ANYMAIL_WEBHOOK_SECRET is
# "user:password" (comma-separated for several during a rotation); the webhooks answer 403 until
# it is set.
# https://anymail.dev/en/stable/tips/securing_webhooks/
ANYMAIL = {
    _name.removeprefix("ANYMAIL_"): _value
    for _name, _value in os.environ.items()
    if _name.startswith("ANYMAIL_") and _name != "ANYMAIL_WEBHOOK_SECRET"
}
ANYMAIL["WEBHOOK_SECRET"] = env.list("ANYMAIL_WEBHOOK_SECRET", default=[])
CAMPAIGNS_SOFT_BOUNCE_THRESHOLD = env.int("CAMPAIGNS_SOFT_BOUNCE_THRESHOLD", default=None)
CAMPAIGNS_FEEDBACK_RECIPIENT_MATCH_HOURS = env.float(
    "CAMPAIGNS_FEEDBACK_RECIPIENT_MATCH_HOURS", default=None
)
CAMPAIGNS_BOUNCE_IMAP_URL = env.str("CAMPAIGNS_BOUNCE_IMAP_URL", default=None)
CAMPAIGNS_BOUNCE_IMAP_DELETE = env.bool("CAMPAIGNS_BOUNCE_IMAP_DELETE", default=None)
CAMPAIGNS_BOUNCE_MAILBOX_BATCH = env.int("CAMPAIGNS_BOUNCE_MAILBOX_BATCH", default=None)

# Logging
# ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
