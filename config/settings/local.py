"""One-machine settings: debug on, a throwaway secret key, SQLite and the embedded broker."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# Only for local use; production refuses to start without DJANGO_SECRET_KEY.
SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY", default="local-only-insecure-key-change-me-3b8f1c2e9d4a7f60b5e1"
)
