"""The Celery application, configured from Django settings (``CELERY_*`` names)."""

import gc
import logging
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

log = logging.getLogger(__name__)

app = Celery("config")
# https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_startup_heap(**_kwargs: object) -> None:
    """Leave the objects a worker process starts with (Django, the apps, their imports) out of
    the cyclic garbage collector. Otherwise every full collection walks them again: measured
    at ~35-45 us per message in the campaign batch path (bench/, README "Performance").
    https://docs.python.org/3/library/gc.html#gc.freeze"""
    gc.freeze()


@app.task(name="config.debug_task")
def debug_task(token: str = "") -> str:
    """Log and return ``token``: shows that a worker consumes from the configured broker.

    Operators can check a deployment with
    ``manage.py shell -c "from config.celery import debug_task; debug_task.delay('hello')"``
    and look for the token in the worker's log; the run command's test does the same.
    """
    log.info("debug_task received %r", token)
    return token
