"""The policies' clock: the one place the policies (and the dry run) read the time from, so a
test moves it for all of them by patching :func:`now`."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def now() -> dt.datetime:
    """The current time (aware)."""
    return timezone.now()
