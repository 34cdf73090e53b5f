"""The frequency cap: at most so many messages per recipient in a period, across campaigns."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django import forms
from django.db.models import Q

from ace.policy import PolicyResult
from campaigns.models import Delivery
from campaigns.policies import clock
from campaigns.policies.base import (
    CampaignPolicy,
    allow,
    current_toggles,
    deny,
    recipient_identity,
)

if TYPE_CHECKING:
    from ace.message import Message


class FrequencyCapForm(forms.Form):
    """Parameters of the frequency cap."""

    max_messages = forms.IntegerField(
        min_value=1, initial=3, help_text="messages a recipient may receive per period"
    )
    period_hours = forms.IntegerField(
        min_value=1, max_value=24 * 366, initial=24, help_text="length of the period"
    )


class FrequencyCapPolicy(CampaignPolicy):
    """Deny when the recipient already received ``max_messages`` messages (across campaigns)
    in the last ``period_hours``, counted from sent deliveries (one per run, whatever the
    channels), not counting the message's own run."""

    name = "campaigns_frequency_cap"
    label = "Frequency cap"
    parameters_form = FrequencyCapForm

    def _sent_rows(self, since: dt.datetime, user_ids: set[int], emails: set[str]):
        query = Q(pk__in=[])
        if user_ids:
            query |= Q(user_id__in=user_ids)
        if emails:
            query |= Q(user_id__isnull=True, email__in=emails)
        return (
            Delivery.objects.filter(query, status=Delivery.Status.SENT, sent_at__gte=since)
            .values_list("user_id", "email", "run_id", "send_uuid")
            .distinct()
        )

    def prefetch(self, messages: Sequence[Message]) -> None:
        # The longest period any toggle may use for these messages bounds the query; counts
        # are then recomputed per message for its own period.
        snapshot = current_toggles()
        periods = [
            snapshot.effective(type(self), self.name, m).parameters.get("period_hours", 0)
            for m in messages
        ]
        longest = max(periods, default=0)
        user_ids: set[int] = set()
        emails: set[str] = set()
        for message in messages:
            user_id, email = recipient_identity(message)
            if user_id is not None:
                user_ids.add(user_id)
            elif email:
                emails.add(email)
        sends: dict[tuple[str, Any], list[tuple[Any, Any]]] = defaultdict(list)
        if longest and (user_ids or emails):
            since = clock.now() - dt.timedelta(hours=longest)
            rows = self._sent_rows(since, user_ids, emails).values_list(
                "user_id", "email", "run_id", "send_uuid", "sent_at"
            )
            seen = set()
            for user_id, email, run_id, send_uuid, sent_at in rows:
                key = ("user", user_id) if user_id is not None else ("email", email.lower())
                if (key, run_id) in seen:
                    continue
                seen.add((key, run_id))
                sends[key].append((send_uuid, sent_at))
        self._local.cache = {
            "users": user_ids,
            "emails": emails,
            "since_hours": longest,
            "sends": sends,
        }

    def _count(self, message: Message, period_hours: int) -> int:
        user_id, email = recipient_identity(message)
        since = clock.now() - dt.timedelta(hours=period_hours)
        own = message.send_uuid
        cache = self._cache()
        covered = (
            cache is not None
            and period_hours <= cache["since_hours"]
            and (
                (user_id is not None and user_id in cache["users"])
                or (user_id is None and email in cache["emails"])
            )
        )
        if covered:
            key = ("user", user_id) if user_id is not None else ("email", email)
            return sum(
                1
                for send_uuid, sent_at in cache["sends"].get(key, ())
                if sent_at >= since and (own is None or send_uuid != own)
            )
        if user_id is None and not email:
            return 0
        rows = self._sent_rows(
            since,
            {user_id} if user_id is not None else set(),
            {email} if user_id is None else set(),
        )
        if own is not None:
            rows = rows.exclude(send_uuid=own)
        return rows.values("run_id").distinct().count()

    def evaluate(self, message: Message, parameters: dict) -> PolicyResult:
        limit = parameters["max_messages"]
        hours = parameters["period_hours"]
        count = self._count(message, hours)
        if count >= limit:
            return deny(f"frequency cap: {count} messages in the last {hours} h (max {limit})")
        return allow()
