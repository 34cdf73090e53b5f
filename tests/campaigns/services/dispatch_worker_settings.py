"""Settings of the Celery worker started by the dispatch integration tests: the test settings,
with a real broker (CELERY_BROKER_URL), SMTP on loopback (EMAIL_HOST/EMAIL_PORT), no eager mode
and the task queue the test chose (CELERY_TASK_DEFAULT_QUEUE)."""

from config.settings.test import *  # noqa: F403
from config.settings.test import env

CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.str("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_USE_TLS = False
EMAIL_USE_SSL = False
EMAIL_TIMEOUT = 10
# Recoverable SMTP errors: retry after a second (doubled per attempt), not a minute.
ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY = env.float("ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY", default=1)
# A killed worker's unacknowledged tasks come back after the visibility timeout; sweep for them
# every second instead of kombu's default ~100 s, so the crash test stays short.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=10),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
