"""The one error campaigns raise when an action is refused (bad input raises ValidationError)."""

from typing import Any


class CampaignError(Exception):
    """An action on a campaign or message type was refused; ``message`` is shown to the user.

    ``extra`` carries structured details (ids, states) for logs and callers.
    """

    def __init__(self, message: str, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
