"""Serves operator-edited templates from the database under the ACE template path."""

from django.template.loaders.base import Loader


class DatabaseLoader(Loader):
    """Placeholder until message type definitions exist: finds nothing."""

    def get_template_sources(self, template_name):
        return iter(())
