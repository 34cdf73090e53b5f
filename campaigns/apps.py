"""Django app config for campaigns."""

from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from campaigns import (
            tasks,  # noqa: F401  (registers the tasks services enqueue by name)
            template_loader,
        )
        from campaigns.feedback import webhooks  # noqa: F401  (anymail's signal receivers)
        from campaigns.services import message_types

        # Operator edits reach the database template loader's cache (see template_loader).
        template_loader.connect_signals()
        # Code-defined message types are listed in the admin once the tables exist.
        post_migrate.connect(
            message_types.sync_after_migrate,
            sender=self,
            dispatch_uid="campaigns.message_types.sync_after_migrate",
        )
