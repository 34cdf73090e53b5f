"""The expiry policy: a message past its ``expiration_time`` is not sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ace.policy import PolicyResult
from campaigns.policies import clock
from campaigns.policies.base import CampaignPolicy, allow, deny

if TYPE_CHECKING:
    from ace.message import Message


class ExpiryPolicy(CampaignPolicy):
    """Deny a message whose ``expiration_time`` has passed. On by default."""

    name = "campaigns_expiry"
    label = "Expiry"
    enabled_by_default = True

    def evaluate(self, message: Message, parameters: dict) -> PolicyResult:
        expires = message.expiration_time
        if expires is not None and clock.now() >= expires:
            return deny(f"expired at {expires.isoformat()}")
        return allow()
