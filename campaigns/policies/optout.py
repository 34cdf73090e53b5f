"""The opt-out policy: nothing goes to an address (or user) that unsubscribed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db.models import Q

from ace.policy import PolicyResult
from campaigns.models import OptOut
from campaigns.policies.base import CampaignPolicy, allow, deny, recipient_identity

if TYPE_CHECKING:
    from ace.message import Message


class OptOutPolicy(CampaignPolicy):
    """Deny every channel to an address (or user) that unsubscribed from this message type or
    from everything. On by default; a toggle can turn it off, e.g. for a transactional type."""

    name = "campaigns_optout"
    label = "Opt-out (unsubscribes)"
    enabled_by_default = True

    _fields = ("user_id", "email", "message_type__app_label", "message_type__name")

    def prefetch(self, messages: Sequence[Message]) -> None:
        user_ids: set[int] = set()
        emails: set[str] = set()
        for message in messages:
            user_id, email = recipient_identity(message)
            if user_id is not None:
                user_ids.add(user_id)
            if email:
                emails.add(email)
        by_user: dict[int, set[tuple | None]] = defaultdict(set)
        by_email: dict[str, set[tuple | None]] = defaultdict(set)
        if user_ids or emails:
            rows = OptOut.objects.filter(Q(user_id__in=user_ids) | Q(email__in=emails))
            for user_id, email, app_label, type_name in rows.values_list(*self._fields):
                scope = (app_label, type_name) if type_name is not None else None
                if user_id is not None:
                    by_user[user_id].add(scope)
                by_email[email].add(scope)
        self._local.cache = {
            "users": user_ids,
            "emails": emails,
            "by_user": by_user,
            "by_email": by_email,
        }

    def opted_out_scopes(self, user_id: int | None, email: str) -> set[tuple[str, str] | None]:
        """The message types (``(app_label, name)``; ``None`` = everything) the recipient
        unsubscribed from: from the batch cache when prefetched, else one query."""
        cache = self._cache()
        if (
            cache is not None
            and (user_id is None or user_id in cache["users"])
            and (not email or email in cache["emails"])
        ):
            scopes = set(cache["by_email"].get(email, ()))
            if user_id is not None:
                scopes |= cache["by_user"].get(user_id, set())
            return scopes
        query = Q(email=email) if email else Q(pk__in=[])
        if user_id is not None:
            query |= Q(user_id=user_id)
        return {
            (app_label, type_name) if type_name is not None else None
            for _, _, app_label, type_name in OptOut.objects.filter(query).values_list(
                *self._fields
            )
        }

    def evaluate(self, message: Message, parameters: dict) -> PolicyResult:
        user_id, email = recipient_identity(message)
        if user_id is None and not email:
            return allow()
        scopes = self.opted_out_scopes(user_id, email)
        if None in scopes:
            return deny("unsubscribed from all messages")
        if (message.app_label, message.name) in scopes:
            return deny(f"unsubscribed from {message.app_label}/{message.name}")
        return allow()
