"""Test settings: the database and broker come from the environment (CI points them at
PostgreSQL and Redis); mail goes to Django's in-memory outbox unless a test says otherwise."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY", default="test-only-secret-key-not-for-production-0123456789"
)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# Serve static files straight from the apps, as in development, so live-server and browser tests
# get the admin's CSS and JS without a collectstatic step (and whitenoise has no missing
# STATIC_ROOT to warn about).
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
