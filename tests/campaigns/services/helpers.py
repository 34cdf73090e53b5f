"""Helpers of the dispatch tests: campaigns over imported lists, a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from django.core import mail
from django.utils import timezone

from campaigns.models import Campaign, CampaignRun, RecipientList, RecipientListEntry, RunBatch
from campaigns.resolvers import resolver_for_source
from campaigns.services import batches
from campaigns.services.runs import run_start
from tests.campaigns.factories import (
    CampaignFactory,
    MessageTypeDefinitionFactory,
    RecipientSourceFactory,
    email_template_parts,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]

BODY_TEXT = "Dear {{ first_name }}, {{ coupon|default:'no coupon' }}. Leave: {{ unsubscribe_url }}"


def address(i: int) -> str:
    return f"r{i:05d}@example.org"


def add_entries(recipient_list: RecipientList, start: int, stop: int) -> None:
    """Entries r<start>..r<stop-1>@example.org, inserted in bulk (fast for big audiences)."""
    RecipientListEntry.objects.bulk_create(
        [
            RecipientListEntry(
                recipient_list=recipient_list,
                email=address(i),
                first_name=f"Name{i}",
                extra={"coupon": "FIRST-ONLY"} if i == 0 else {},
            )
            for i in range(start, stop)
        ],
        batch_size=2000,
    )


def make_campaign(size: int, **fields) -> Campaign:
    """A scheduled email campaign to an imported list of ``size`` addresses."""
    message_type = MessageTypeDefinitionFactory()
    email_template_parts(message_type, body_text=BODY_TEXT)
    recipient_list = RecipientList.objects.create(name=f"list-{uuid.uuid4().hex[:8]}")
    add_entries(recipient_list, 0, size)
    source = RecipientSourceFactory(
        resolver="recipient_list", parameters={"recipient_list": recipient_list.pk}
    )
    fields.setdefault("status", Campaign.Status.SCHEDULED)
    return CampaignFactory(message_type=message_type, recipient_source=source, **fields)


def recipients_of_outbox() -> list[str]:
    """Every address the locmem outbox sent to, once per message."""
    return [to for message in mail.outbox for to in message.to]


def statuses(run: CampaignRun) -> dict[str, int]:
    """How many of the run's delivery rows are in each status."""
    return dict(Counter(run.deliveries.values_list("status", flat=True)))


def claimed_run(campaign: Campaign) -> tuple[CampaignRun, RunBatch]:
    """A run resolved into one claimed batch whose rows are QUEUED (nothing sent yet)."""
    run = run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))
    batch = RunBatch.objects.get(run=run)
    state = batches._Batch(run, batch.recipient_ids, batch.pk)
    recipients = resolver_for_source(campaign.recipient_source).recipients_for_ids(
        batch.recipient_ids
    )
    state.recipients = {r.key: r for r in recipients}
    rows = batches._claim(state)
    assert rows is not None
    return run, batch


def list_of(campaign: Campaign) -> RecipientList:
    return RecipientList.objects.get(pk=campaign.recipient_source.parameters["recipient_list"])


def broker_url() -> str:
    """The Redis broker for integration tests: CELERY_BROKER_URL if it is Redis, else REDIS_URL."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if url.startswith("redis://"):
        return url
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class Worker:
    """A ``celery -A config worker -P prefork -c 2`` process in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, queue: str) -> None:
        self.log_path = log_path
        self.queue = queue
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-P",
                "prefork",
                "-c",
                "2",
                "-Q",
                queue,
                "-n",
                f"{queue}-{uuid.uuid4().hex[:6]}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The worker exited early:\n{self.log()[-4000:]}")
            if " ready." in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"The worker did not get ready:\n{self.log()[-4000:]}")

    def pids(self) -> list[int]:
        """The main process and its pool children."""
        import psutil

        try:
            main = psutil.Process(self.process.pid)
            return [main.pid, *(c.pid for c in main.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """``kill -9`` the whole worker (main process and pool children) at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
