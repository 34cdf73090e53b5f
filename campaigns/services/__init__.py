"""Services: the functions that change state; admin views and Celery tasks only call these."""
