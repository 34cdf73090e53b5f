"""The suppression policy: no email to an address on the suppression list (hard bounces,
complaints, unsubscribes at the ESP, repeated soft bounces, added by hand).

On by default (a toggle can turn it off, e.g. per message type); it denies the email channels
only -- a bounced address says nothing about a user's push devices. A batch loads the
suppressions of all its addresses in one query (:meth:`SuppressionPolicy.prefetch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ace.channel import ChannelType
from ace.policy import PolicyResult
from campaigns.feedback.models import Suppression
from campaigns.feedback.services import active_suppressions
from campaigns.policies.base import CampaignPolicy, allow, deny, recipient_identity

if TYPE_CHECKING:
    from ace.message import Message

EMAIL_CHANNELS = frozenset({ChannelType.EMAIL})
DENIED = "address suppressed: {reason}"


class SuppressionPolicy(CampaignPolicy):
    """Deny email to an address with an active :class:`Suppression`, with its reason."""

    name = "campaigns_suppression"
    label = "Suppression list (bounces, complaints)"
    enabled_by_default = True

    def prefetch(self, messages: Sequence[Message]) -> None:
        emails = {email for _, email in map(recipient_identity, messages) if email}
        self._local.cache = {"emails": emails, "suppressed": active_suppressions(emails)}

    def suppression_of(self, email: str) -> tuple[str, str] | None:
        """``(reason, detail)`` of the address's active suppression, or ``None``: from the
        batch cache when prefetched, else one query."""
        cache = self._cache()
        if cache is not None and email in cache["emails"]:
            return cache["suppressed"].get(email)
        return active_suppressions([email]).get(email)

    def evaluate(self, message: Message, parameters: dict) -> PolicyResult:
        _, email = recipient_identity(message)
        if not email:
            return allow()
        found = self.suppression_of(email)
        if found is None:
            return allow()
        reason, detail = found
        text = Suppression.Reason(reason).label if reason in Suppression.Reason.values else reason
        if detail:
            text = f"{text} ({detail[:200]})"
        return deny(DENIED.format(reason=text), channels=EMAIL_CHANNELS)
