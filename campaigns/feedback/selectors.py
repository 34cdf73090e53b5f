"""Statistics of delivery feedback per run and per campaign (read-only queries).

Counts are of **deliveries** (a recipient opening a message five times counts once); the
events themselves are listed in the admin. Rates:

* ``delivered`` and ``bounced``: of the run's *sent* messages;
* ``complained``, ``opened``, ``clicked``, ``unsubscribed``: of the messages that *reached*
  the recipient as far as we know (sent - bounced), since a bounced message cannot be opened.

A rate is ``None`` when its base is 0. Opens are approximate both ways: blocked images hide
opens, and Apple Mail Privacy Protection (and other proxies that fetch every image) reports
messages as opened that nobody read (README "Delivery feedback").
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from django.db.models import Count, Q, Sum

from campaigns.feedback.models import DeliveryEvent, Suppression
from campaigns.models import CampaignRun

Kind = DeliveryEvent.Kind

#: The statistics, in the order the admin shows them.
STAT_KINDS = (
    Kind.DELIVERED,
    Kind.BOUNCED,
    Kind.COMPLAINED,
    Kind.OPENED,
    Kind.CLICKED,
    Kind.UNSUBSCRIBED,
)
#: Rates taken over the messages sent (the others: over sent - bounced).
OF_SENT = (Kind.DELIVERED, Kind.BOUNCED)


@attrs.frozen
class FeedbackStats:
    """Counts (deliveries with at least one event of each kind) and rates of one run or the
    runs of one campaign."""

    sent: int
    counts: dict[str, int]
    hard_bounced: int = 0
    soft_bounced: int = 0

    @property
    def reached(self) -> int:
        return max(0, self.sent - self.counts.get(Kind.BOUNCED, 0))

    def rate(self, kind: str) -> float | None:
        base = self.sent if kind in OF_SENT else self.reached
        return self.counts.get(kind, 0) / base if base else None

    @property
    def rates(self) -> dict[str, float | None]:
        return {kind: self.rate(kind) for kind in STAT_KINDS}

    def rows(self) -> list[dict]:
        """``{"kind", "label", "count", "rate"}`` per statistic (what the admin page lists)."""
        return [
            {
                "kind": str(kind),
                "label": Kind(kind).label,
                "count": self.counts.get(kind, 0),
                "rate": self.rate(kind),
            }
            for kind in STAT_KINDS
        ]

    def as_dict(self) -> dict:
        return {
            "sent": self.sent,
            "reached": self.reached,
            "counts": {str(k): self.counts.get(k, 0) for k in STAT_KINDS},
            "rates": {str(k): v for k, v in self.rates.items()},
            "hard_bounced": self.hard_bounced,
            "soft_bounced": self.soft_bounced,
        }


def _aggregates() -> dict:
    distinct = {
        str(kind): Count("delivery_id", distinct=True, filter=Q(kind=kind)) for kind in STAT_KINDS
    }
    distinct["hard_bounced"] = Count(
        "delivery_id", distinct=True, filter=Q(kind=Kind.BOUNCED, bounce_type="hard")
    )
    distinct["soft_bounced"] = Count(
        "delivery_id", distinct=True, filter=Q(kind=Kind.BOUNCED, bounce_type="soft")
    )
    return distinct


def _stats(sent: int, row: dict | None) -> FeedbackStats:
    row = row or {}
    return FeedbackStats(
        sent=sent or 0,
        counts={kind: row.get(str(kind)) or 0 for kind in STAT_KINDS},
        hard_bounced=row.get("hard_bounced") or 0,
        soft_bounced=row.get("soft_bounced") or 0,
    )


def runs_feedback_stats(run_ids: Iterable[int]) -> dict[int, FeedbackStats]:
    """Statistics of each run, by id, in two queries."""
    run_ids = list(run_ids)
    if not run_ids:
        return {}
    sent = dict(CampaignRun.objects.filter(pk__in=run_ids).values_list("pk", "sent"))
    rows = {
        row["delivery__run_id"]: row
        for row in DeliveryEvent.objects.filter(delivery__run_id__in=run_ids)
        .values("delivery__run_id")
        .annotate(**_aggregates())
        .order_by()
    }
    return {run_id: _stats(sent.get(run_id, 0), rows.get(run_id)) for run_id in sent}


def run_feedback_stats(run_id: int) -> FeedbackStats:
    """Statistics of one run."""
    return runs_feedback_stats([run_id]).get(run_id) or _stats(0, None)


def campaign_feedback_stats(campaign_id: int) -> FeedbackStats:
    """Statistics of all runs of a campaign together."""
    sent = CampaignRun.objects.filter(campaign_id=campaign_id).aggregate(total=Sum("sent"))
    row = DeliveryEvent.objects.filter(delivery__run__campaign_id=campaign_id).aggregate(
        **_aggregates()
    )
    return _stats(sent["total"] or 0, row)


def campaigns_feedback_stats(campaign_ids: Iterable[int]) -> dict[int, FeedbackStats]:
    """Statistics of each campaign, by id, in two queries."""
    campaign_ids = list(campaign_ids)
    if not campaign_ids:
        return {}
    sent = {
        row["campaign_id"]: row["total"] or 0
        for row in CampaignRun.objects.filter(campaign_id__in=campaign_ids)
        .values("campaign_id")
        .annotate(total=Sum("sent"))
        .order_by()
    }
    rows = {
        row["delivery__run__campaign_id"]: row
        for row in DeliveryEvent.objects.filter(delivery__run__campaign_id__in=campaign_ids)
        .values("delivery__run__campaign_id")
        .annotate(**_aggregates())
        .order_by()
    }
    return {cid: _stats(sent.get(cid, 0), rows.get(cid)) for cid in campaign_ids}


def feedback_overview() -> dict[str, int]:
    """Totals for the top of the statistics page."""
    return {
        "unmatched_events": DeliveryEvent.objects.filter(delivery__isnull=True).count(),
        "active_suppressions": Suppression.objects.filter(lifted_at__isnull=True).count(),
    }
