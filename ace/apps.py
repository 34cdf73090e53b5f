""":mod:`ace.apps` is the Django app config for the ACE library (no models; templates and
template tags only)."""

from django.apps import AppConfig


class AceConfig(AppConfig):
    name = "ace"
    verbose_name = "ACE"
