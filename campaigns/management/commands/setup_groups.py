"""``manage.py setup_groups``: create or complete the Operators, Approvers and Auditors groups."""

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError

from campaigns.permissions import setup_groups


class Command(BaseCommand):
    help = "Create the Operators/Approvers/Auditors groups with their permissions (idempotent)."

    def handle(self, *args, **options):
        try:
            added = setup_groups(Group, Permission, require_all=True)
        except LookupError as exc:
            raise CommandError(f"{exc} Run `manage.py migrate` first.")
        for group, count in added.items():
            self.stdout.write(f"{group}: {count} permission(s) added")
