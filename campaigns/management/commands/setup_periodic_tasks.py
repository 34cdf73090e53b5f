"""Declare the project's own beat schedules (campaign schedules are made per campaign)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask

#: name -> (task, every N seconds, description). Upserted by name, so an operator's enabled
#: switch and beat's last_run_at survive redeploys.
PERIODIC_TASKS = {
    "campaigns: recover stalled runs": (
        "campaigns.tasks.recover_stalled_runs",
        60,
        "Every minute: enqueue again the work of campaign runs that stopped making progress "
        "although work is due (lost tasks). See campaigns.services.recovery.run_recover.",
    ),
    "campaigns: poll bounce mailbox": (
        "campaigns.tasks.poll_bounce_mailbox",
        300,
        "Every 5 minutes: read bounces from CAMPAIGNS_BOUNCE_IMAP_URL into the delivery "
        "feedback (nothing when it is not set). See campaigns.feedback.mailbox.mailbox_poll.",
    ),
}


class Command(BaseCommand):
    help = "Create or update the project's periodic tasks in django-celery-beat (idempotent)."

    def handle(self, *args, **options) -> None:
        for name, (task, seconds, description) in PERIODIC_TASKS.items():
            every = (
                IntervalSchedule.objects.filter(every=seconds, period=IntervalSchedule.SECONDS)
                .order_by("pk")
                .first()
            ) or IntervalSchedule.objects.create(every=seconds, period=IntervalSchedule.SECONDS)
            _obj, created = PeriodicTask.objects.update_or_create(
                name=name,
                defaults={
                    "task": task,
                    "interval": every,
                    "crontab": None,
                    "clocked": None,
                    "solar": None,
                    "kwargs": json.dumps({}),
                    "description": description,
                },
            )
            self.stdout.write(f"{'Created' if created else 'Updated'} {name!r}")
