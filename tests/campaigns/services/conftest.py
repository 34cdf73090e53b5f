"""Fixtures for the dispatch service tests: runs started in process, and (integration) a real
Celery worker process on a Redis broker, a PostgreSQL test database and a loopback SMTP server.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.utils import timezone

from ace.test_utils.smtp import RecordingSMTPServer
from campaigns.models import (
    Campaign,
    CampaignRun,
)
from campaigns.services import enqueue
from campaigns.services.runs import run_start
from tests.campaigns.clock import clock  # noqa: F401 - a fixture
from tests.campaigns.plugin_caches import reset_plugin_caches
from tests.campaigns.services.helpers import HERE, ROOT, Worker, broker_url


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Plugin caches (resolvers, policies, channels) must not leak between tests."""
    reset_plugin_caches()
    yield
    reset_plugin_caches()


@pytest.fixture
def enqueued(monkeypatch):
    """Record deliver_batch enqueues instead of running them (for retries, follow-ups)."""
    calls: list[dict] = []

    def record(*, run_id, recipient_ids, batch_id, eta=None):
        calls.append({"run_id": run_id, "ids": list(recipient_ids), "batch": batch_id, "eta": eta})

    monkeypatch.setattr(enqueue, "deliver_batch", record)
    return calls


@pytest.fixture
def start(django_capture_on_commit_callbacks) -> Callable[..., CampaignRun | None]:
    """Run ``run_start`` with its enqueued batches executed (eager Celery, in process)."""

    def _start(campaign: Campaign, due_at=None) -> CampaignRun | None:
        due_at = due_at or timezone.now().replace(microsecond=0)
        with django_capture_on_commit_callbacks(execute=True):
            run = run_start(campaign_id=campaign.pk, due_at=due_at)
        if run is not None:
            run.refresh_from_db()
        return run

    return _start


# Integration: a real worker -----------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server on loopback (ace.test_utils.smtp), reachable by the worker."""
    server = RecordingSMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def worker_factory(
    postgres_service, redis_service, smtp_server, tmp_path
) -> Iterator[Callable[..., Worker]]:
    """Start real workers against the test database; ``worker_factory(**env)`` returns one.

    The test process publishes to the same Redis broker and a queue private to the test, with
    eager mode off. Requires ``@pytest.mark.django_db(transaction=True)`` so the worker sees the
    test's rows. Fails (REQUIRE_SERVICES=1) or skips when Redis or PostgreSQL is missing.
    """
    from config.celery import app as celery_app

    url = broker_url()
    queue = f"dispatch-test-{uuid.uuid4().hex[:10]}"
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGNS_", "EMAIL_"))},
        "DJANGO_SETTINGS_MODULE": "dispatch_worker_settings",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_VISIBILITY_TIMEOUT": "10",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "CAMPAIGNS_RATE_LIMIT_REDIS_URL": url,
        "CAMPAIGNS_BATCH_SIZE": "200",
        "CAMPAIGNS_SEND_CHUNK_SIZE": "100",
        "CAMPAIGNS_SENDING_LEASE_SECONDS": "3",
        "ACE_ENABLED_CHANNELS": "django_email",
        "PYTHONUNBUFFERED": "1",
    }
    saved = {
        key: celery_app.conf[key]
        for key in ("broker_url", "task_always_eager", "task_default_queue")
    }
    celery_app.conf.update(broker_url=url, task_always_eager=False, task_default_queue=queue)
    # Publish through pools made for the Redis URL: an earlier test may have built them for
    # the settings' broker (e.g. filesystem:// when CELERY_BROKER_URL is not set).
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    workers: list[Worker] = []

    def start_worker(**env: str) -> Worker:
        worker = Worker({**base_env, **env}, tmp_path / f"worker-{len(workers)}.log", queue=queue)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start_worker
    for worker in workers:
        worker.stop()
        # Shown by pytest only when the test failed.
        sys.stderr.write(f"--- {worker.log_path.name} ---\n{worker.log()[-6000:]}\n")
    celery_app.conf.update(**saved)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    import redis

    client = redis.Redis.from_url(url)
    client.delete(queue)
    client.close()
