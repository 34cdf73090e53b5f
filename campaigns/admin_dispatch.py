"""Dispatch's part of the campaign admin (schedule, pause, resume, cancel, resend, live progress).

Placeholder created by camp-admin so ``CampaignAdmin`` can include it; the dispatch helper owns
this file and fills the hooks in. ``CampaignAdmin(DispatchActionsMixin, admin.ModelAdmin)`` uses:

* ``dispatch_actions``: admin actions (callables or method names) appended to its ``actions``;
* ``get_dispatch_urls()``: URL patterns added before the admin's own (name them
  ``campaigns_campaign_<something>``; wrap views in ``self.admin_site.admin_view``);
* ``get_dispatch_object_tools(request, obj)``: buttons on the campaign page, a list of dicts
  ``{"url": ..., "label": ..., "method": "post" | "get"}`` (POST buttons get a CSRF token);
* ``run_progress_html(run)``: HTML for one run's progress cell (default: a static bar from the
  ``CampaignRun`` count fields).
"""

from __future__ import annotations

from typing import Any


class DispatchActionsMixin:
    """Hooks CampaignAdmin calls; each default adds nothing."""

    dispatch_actions: tuple = ()

    def get_dispatch_urls(self) -> list:
        return []

    def get_dispatch_object_tools(self, request: Any, obj: Any) -> list[dict[str, str]]:
        return []
