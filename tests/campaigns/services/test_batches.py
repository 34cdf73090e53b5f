"""Batches in one process (eager Celery, locmem email): claims, exclusions, leases, retries,
rate limits and the query count of a batch."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ace.batch import BatchSender
from ace.channel.django_email import DjangoEmailSession
from ace.errors import FatalChannelDeliveryError, RecoverableChannelDeliveryError
from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.querysets import DeliveryChange
from campaigns.services import outcomes
from campaigns.services.batches import REASON_INTERRUPTED, REASON_PREVIOUS_RUN, batch_deliver
from campaigns.services.runs import run_start
from tests.campaigns.services.helpers import (
    add_entries,
    address,
    claimed_run,
    list_of,
    make_campaign,
    recipients_of_outbox,
    statuses,
)

pytestmark = pytest.mark.django_db

S = Delivery.Status


def test_a_redelivered_batch_sends_nothing_twice(dispatch_settings, start):
    campaign = make_campaign(5)
    run = start(campaign)
    sent_before = len(mail.outbox)
    counts_before = CampaignRun.objects.values("total", "sent").get(pk=run.pk)

    for batch in RunBatch.objects.filter(run=run):
        outcome = batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)
        assert outcome.counts == {}

    assert len(mail.outbox) == sent_before == 5
    assert CampaignRun.objects.values("total", "sent").get(pk=run.pk) == counts_before


def test_recurring_campaign_can_skip_earlier_recipients(dispatch_settings, start):
    campaign = make_campaign(
        3,
        schedule_kind=Campaign.ScheduleKind.INTERVAL,
        interval_seconds=3600,
        exclude_previous_recipients=True,
    )
    first = start(campaign, timezone.now().replace(microsecond=0) - dt.timedelta(hours=1))
    assert first.sent == 3
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED  # recurring: waits for the next tick
    add_entries(list_of(campaign), 3, 5)
    mail.outbox.clear()

    second = start(campaign)

    assert sorted(recipients_of_outbox()) == [address(3), address(4)]
    second.refresh_from_db()
    assert (second.total, second.sent, second.skipped) == (5, 2, 3)
    assert second.status == CampaignRun.Status.COMPLETED
    skipped = second.deliveries.filter(status=S.SKIPPED)
    assert set(skipped.values_list("reason", flat=True)) == {REASON_PREVIOUS_RUN}


def test_recurring_campaign_without_exclusion_sends_everyone_again(dispatch_settings, start):
    campaign = make_campaign(2, schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=60)
    start(campaign, timezone.now().replace(microsecond=0) - dt.timedelta(hours=1))
    start(campaign)
    assert sorted(recipients_of_outbox()) == sorted([address(0), address(1)] * 2)


def test_rows_left_sending_by_a_dead_attempt_become_unknown_and_are_not_resent(
    dispatch_settings, enqueued
):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    campaign = make_campaign(4)
    run, batch = claimed_run(campaign)
    long_ago = timezone.now() - dt.timedelta(hours=1)
    # Attempt 1 marked two rows SENDING and died before recording what happened.
    Delivery.objects.filter(run=run, email__in=[address(0), address(1)]).update(
        status=S.SENDING, updated_at=long_ago, attempts=1
    )
    enqueued.clear()

    outcome = batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    assert sorted(recipients_of_outbox()) == [address(2), address(3)]
    assert outcome.counts == {S.UNKNOWN: 2, S.SENT: 2}
    unknown = Delivery.objects.filter(run=run, status=S.UNKNOWN)
    assert set(unknown.values_list("email", flat=True)) == {address(0), address(1)}
    assert set(unknown.values_list("reason", flat=True)) == {REASON_INTERRUPTED}
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.COMPLETED
    assert (run.sent, run.unknown) == (2, 2)
    assert enqueued == []


def test_rows_sending_within_their_lease_are_left_to_their_attempt(dispatch_settings, enqueued):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    campaign = make_campaign(2)
    run, batch = claimed_run(campaign)
    Delivery.objects.filter(run=run, email=address(0)).update(
        status=S.SENDING, updated_at=timezone.now(), attempts=1
    )
    enqueued.clear()

    batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    assert recipients_of_outbox() == [address(1)]
    assert Delivery.objects.get(run=run, email=address(0)).status == S.SENDING
    # Checked again once the lease is over, with just that recipient's id.
    (check,) = enqueued
    assert check["batch"] == batch.pk and len(check["ids"]) == 1
    assert check["eta"] > timezone.now() + dt.timedelta(seconds=250)
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.RUNNING


def test_recoverable_errors_are_requeued_and_permanent_ones_fail_at_once(
    dispatch_settings, enqueued, monkeypatch
):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    dispatch_settings.CAMPAIGNS_RETRY_BACKOFF_SECONDS = 30
    campaign = make_campaign(4)
    run, batch = claimed_run(campaign)
    original = DjangoEmailSession.send_email

    def flaky(self, email):
        if email.to == [address(1)]:
            return RecoverableChannelDeliveryError(
                "451 try later", timezone.now() + dt.timedelta(seconds=20)
            )
        if email.to == [address(2)]:
            return FatalChannelDeliveryError("550 5.1.1 No such user")
        return original(self, email)

    monkeypatch.setattr(DjangoEmailSession, "send_email", flaky)
    enqueued.clear()
    before = timezone.now()

    outcome = batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    assert sorted(recipients_of_outbox()) == [address(0), address(3)]
    assert outcome.counts == {S.SENT: 2, S.FAILED: 1}
    assert outcome.retried == 1
    failed = Delivery.objects.get(run=run, email=address(2))
    assert (failed.status, failed.reason) == (S.FAILED, "550 5.1.1 No such user")
    retry = Delivery.objects.get(run=run, email=address(1))
    assert (retry.status, retry.attempts, retry.reason) == (S.QUEUED, 1, "451 try later")
    # The channel's 20 s, not earlier, plus at most 25 % jitter.
    assert before + dt.timedelta(seconds=20) <= retry.next_attempt_at
    assert retry.next_attempt_at <= timezone.now() + dt.timedelta(seconds=25.1)
    (requeued,) = enqueued
    entry_id = list_of(campaign).entries.get(email=address(1)).pk
    assert requeued["ids"] == [entry_id]
    assert requeued["eta"] == retry.next_attempt_at
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.RUNNING

    # Too early: nothing happens (a duplicate of the retry task must not send early).
    batch_deliver(run=run, recipient_ids=requeued["ids"], batch_id=batch.pk)
    assert len(mail.outbox) == 2

    # Second failure: the delay doubles.
    Delivery.objects.filter(pk=retry.pk).update(next_attempt_at=timezone.now())
    enqueued.clear()
    batch_deliver(run=run, recipient_ids=requeued["ids"], batch_id=batch.pk)
    retry.refresh_from_db()
    assert retry.attempts == 2
    assert retry.next_attempt_at >= timezone.now() + dt.timedelta(seconds=39)

    # Then the server accepts it.
    monkeypatch.setattr(DjangoEmailSession, "send_email", original)
    Delivery.objects.filter(pk=retry.pk).update(next_attempt_at=timezone.now())
    batch_deliver(run=run, recipient_ids=requeued["ids"], batch_id=batch.pk)
    assert sorted(recipients_of_outbox()) == [address(0), address(1), address(3)]
    run.refresh_from_db()
    assert (run.status, run.sent, run.failed) == (CampaignRun.Status.COMPLETED, 3, 1)


def test_a_retry_past_the_expiration_expires_instead(dispatch_settings, enqueued, monkeypatch):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    campaign = make_campaign(1)
    run, batch = claimed_run(campaign)
    CampaignRun.objects.filter(pk=run.pk).update(
        expires_at=timezone.now() + dt.timedelta(seconds=30)
    )
    run.refresh_from_db()
    monkeypatch.setattr(
        DjangoEmailSession,
        "send_email",
        lambda self, email: RecoverableChannelDeliveryError(
            "421 busy", timezone.now() + dt.timedelta(seconds=20)
        ),
    )
    enqueued.clear()

    batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)
    first = Delivery.objects.get(run=run)
    assert first.status == S.QUEUED  # 20-25 s from now: before the expiry
    # The second attempt would be 40-50 s away: past the expiry, so it expires now.
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    delivery = Delivery.objects.get(run=run)
    assert delivery.status == S.EXPIRED
    assert "421 busy" in delivery.reason
    run.refresh_from_db()
    assert (run.status, run.expired) == (CampaignRun.Status.COMPLETED, 1)


def test_a_rate_limit_sends_what_it_may_and_requeues_the_rest(dispatch_settings, enqueued):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    dispatch_settings.CAMPAIGNS_SEND_CHUNK_SIZE = 10
    dispatch_settings.CAMPAIGNS_CHANNEL_RATE_LIMITS = "email=3"
    campaign = make_campaign(10)
    run, batch = claimed_run(campaign)
    enqueued.clear()
    before = timezone.now()

    outcome = batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    assert len(mail.outbox) == 3  # the bucket holds one second of tokens
    assert outcome.deferred == 7
    (later,) = enqueued
    assert len(later["ids"]) == 7
    # 3 more tokens take a second at 3/s: the rest comes back then, not now.
    assert before + dt.timedelta(seconds=0.9) <= later["eta"] <= before + dt.timedelta(seconds=2)
    assert statuses(run) == {S.SENT: 3, S.QUEUED: 7}


def test_a_batch_costs_a_bounded_number_of_queries(dispatch_settings, enqueued, postgres_service):
    """The target is for PostgreSQL (SQLite splits bulk inserts into 999-variable pieces)."""
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 500
    dispatch_settings.CAMPAIGNS_SEND_CHUNK_SIZE = 250
    campaign = make_campaign(500)
    run = run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))
    batch = RunBatch.objects.get(run=run)
    run = CampaignRun.objects.select_related(
        "campaign__message_type", "campaign__recipient_source"
    ).get(pk=run.pk)

    with CaptureQueriesContext(connection) as queries:
        batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    assert len(mail.outbox) == 500
    # Savepoints exist only because the test runs inside a transaction (BEGIN/COMMIT of the
    # real thing are not logged as queries). The last 3 queries end the run, once per run.
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    assert len(statements) / 500 <= 0.05, "\n".join(sql[:150] for sql in statements)


def _terminate_backend(pid: int) -> None:
    """Kill a PostgreSQL backend from another connection (as a database restart would)."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_outcomes_known_before_a_database_blip_are_recorded_not_lost(
    dispatch_settings, postgres_service, monkeypatch
):
    """The worker's connection dies right after a send: the outcomes it holds are written on
    a fresh connection, so nothing ends UNKNOWN and nothing is sent twice."""
    monkeypatch.setattr(outcomes, "RECORD_RETRY_DELAYS", (0.05, 0.1, 0.2))
    campaign = make_campaign(6)
    original = BatchSender.deliver
    blips: list[int] = []

    def deliver_then_blip(self, prepared):
        results = original(self, prepared)
        if len(blips) < 2:  # two outages, in two different chunks
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            _terminate_backend(pid)
            blips.append(pid)
        return results

    monkeypatch.setattr(BatchSender, "deliver", deliver_then_blip)
    run = run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))

    run.refresh_from_db()
    assert len(blips) == 2
    assert sorted(recipients_of_outbox()) == sorted(address(i) for i in range(6))
    assert statuses(run) == {S.SENT: 6}
    assert (run.sent, run.unknown, run.status) == (6, 0, CampaignRun.Status.COMPLETED)


def test_a_late_outcome_replaces_the_unknown_its_own_attempt_was_given(dispatch_settings, enqueued):
    """A row marked UNKNOWN (lease over) while its attempt was still recording takes that
    attempt's outcome, and the run's counters move with it; another attempt's is refused."""
    campaign = make_campaign(2)
    run, _batch = claimed_run(campaign)
    first, second = Delivery.objects.filter(run=run).order_by("pk")
    Delivery.objects.filter(run=run).update(status=S.UNKNOWN, attempts=1)
    CampaignRun.objects.filter(pk=run.pk).update(unknown=2)
    sent = DeliveryChange(S.SENT)

    counts = outcomes.outcomes_record(
        run_id=run.pk,
        changes={first.pk: sent, second.pk: sent},
        expected=S.SENDING,
        attempts={first.pk: 1, second.pk: 2},  # the second was sent by an older attempt
    )

    run.refresh_from_db()
    assert counts == {S.SENT: 1}
    assert (run.sent, run.unknown) == (1, 1)
    assert list(
        Delivery.objects.filter(run=run).order_by("pk").values_list("status", flat=True)
    ) == [
        S.SENT,
        S.UNKNOWN,
    ]
