"""The Celery application, configured from Django settings (``CELERY_*`` names)."""

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

log = logging.getLogger(__name__)

app = Celery("config")
# https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="config.debug_task")
def debug_task(token: str = "") -> str:
    """Log and return ``token``: shows that a worker consumes from the configured broker.

    Operators can check a deployment with
    ``manage.py shell -c "from config.celery import debug_task; debug_task.delay('hello')"``
    and look for the token in the worker's log; the run command's test does the same.
    """
    log.info("debug_task received %r", token)
    return token
