"""Runs in one process (eager Celery, locmem email): start, one run per due time, restarts
from the cursor, a fresh context per message, the audience streamed in chunks."""

from __future__ import annotations

import pytest
from django.core import mail
from django.utils import timezone

from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.resolvers import resolver_for_source
from campaigns.services import enqueue
from campaigns.services.runs import run_start
from tests.campaigns.services.helpers import address, make_campaign, recipients_of_outbox

pytestmark = pytest.mark.django_db

S = Delivery.Status


def test_a_run_sends_each_recipient_once_then_completes(dispatch_settings, start):
    campaign = make_campaign(10)

    run = start(campaign)

    assert sorted(recipients_of_outbox()) == [address(i) for i in range(10)]
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.COMPLETED
    assert (run.total, run.sent, run.unknown) == (10, 10, 0)
    assert run.finished_at is not None
    assert RunBatch.objects.filter(run=run).count() == 3  # 4 + 4 + 2
    assert not RunBatch.objects.filter(run=run, claimed_at__isnull=True).exists()
    assert set(run.deliveries.values_list("send_uuid", flat=True)) == {run.send_uuid}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_each_message_gets_its_own_context_and_signed_unsubscribe_link(dispatch_settings, start):
    campaign = make_campaign(3)

    start(campaign)

    by_to = {message.to[0]: message for message in mail.outbox}
    assert "FIRST-ONLY" in by_to[address(0)].body
    assert "FIRST-ONLY" not in by_to[address(1)].body  # no leak from the first recipient
    assert "no coupon" in by_to[address(2)].body
    for message in by_to.values():
        link = message.extra_headers["List-Unsubscribe"].strip("<>")
        assert link.startswith("http") and link in message.body
        assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = {message.extra_headers["List-Unsubscribe"] for message in mail.outbox}
    assert len(links) == 3  # one signed link per address
    delivery = Delivery.objects.get(email=address(1))
    assert delivery.message_uuid is not None


def test_start_run_twice_for_the_same_due_time_makes_one_run(dispatch_settings, start):
    campaign = make_campaign(6)
    due = timezone.now().replace(microsecond=0)

    first = start(campaign, due)
    second = start(campaign, due)

    assert first.pk == second.pk
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1
    assert sorted(recipients_of_outbox()) == [address(i) for i in range(6)]


def test_a_restarted_start_run_continues_from_its_cursor(dispatch_settings, start, monkeypatch):
    campaign = make_campaign(10)
    due = timezone.now().replace(microsecond=0)
    resolver_cls = type(resolver_for_source(campaign.recipient_source))
    original = resolver_cls.iter_id_chunks
    calls = {"n": 0}

    class Crash(Exception):
        pass

    def crashing(self, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("worker lost")
        return original(self, **kwargs)

    # The first start_run dies while resolving its third chunk, and the batches it had
    # enqueued were lost with it.
    monkeypatch.setattr(resolver_cls, "iter_id_chunks", crashing)
    monkeypatch.setattr(enqueue, "deliver_batch", lambda **kwargs: None)
    with pytest.raises(Crash):
        run_start(campaign_id=campaign.pk, due_at=due)
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.status == CampaignRun.Status.RESOLVING
    assert run.resolve_cursor["after"] is not None
    assert RunBatch.objects.filter(run=run).count() == 2
    assert mail.outbox == []

    monkeypatch.undo()
    start(campaign, due)

    run.refresh_from_db()
    assert run.status == CampaignRun.Status.COMPLETED
    assert RunBatch.objects.filter(run=run).count() == 3
    assert sorted(recipients_of_outbox()) == [address(i) for i in range(10)]


def test_the_audience_is_streamed_in_chunks(dispatch_settings, start, monkeypatch):
    """Bounded memory: the resolver is read one keyset page at a time; no task or query ever
    holds more than a batch of recipients."""
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 5
    campaign = make_campaign(23)
    resolver_cls = type(resolver_for_source(campaign.recipient_source))
    pages: list[tuple] = []
    loaded: list[int] = []
    original_chunks = resolver_cls.iter_id_chunks
    original_load = resolver_cls.recipients_for_ids

    def chunks(self, *, after=None, chunk_size=500):
        pages.append((after, chunk_size))
        return original_chunks(self, after=after, chunk_size=chunk_size)

    def load(self, ids):
        loaded.append(len(ids))
        return original_load(self, ids)

    monkeypatch.setattr(resolver_cls, "iter_id_chunks", chunks)
    monkeypatch.setattr(resolver_cls, "recipients_for_ids", load)

    run = start(campaign)

    assert len(mail.outbox) == 23
    assert all(size == 5 for _after, size in pages)
    assert [after is None for after, _size in pages] == [True] + [False] * (len(pages) - 1)
    assert max(loaded) == 5
    assert sorted(len(ids) for ids in run.batches.values_list("recipient_ids", flat=True)) == [
        3,
        5,
        5,
        5,
        5,
    ]
