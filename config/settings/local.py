"""One-machine settings (the default): debug on unless DJANGO_DEBUG=false, embedded services.

With debug on, a fixed development key is used when none is set; with debug off the key must
come from the environment, as in production.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import SECRET_KEY, SECRET_KEY_MISSING_ERROR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(SECRET_KEY_MISSING_ERROR)
    SECRET_KEY = "local-only-insecure-key-change-me-3b8f1c2e9d4a7f60b5e1"
