"""Django app config for the push devices part of campaigns (no models of its own)."""

from django.apps import AppConfig


class PushConfig(AppConfig):
    """Registers the device admin and the subscription endpoint; devices are the
    django-push-notifications models, so this app has no models or migrations."""

    name = "campaigns.push"
    label = "campaigns_push"
    verbose_name = "Push devices"
