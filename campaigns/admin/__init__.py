"""The operator's UI, one module per concern:

* :mod:`~campaigns.admin.message_types`: message types and their templates, preview, test send;
* :mod:`~campaigns.admin.campaigns`: compose, preview, test, dry-run and approve a campaign;
* :mod:`~campaigns.admin.runs`: schedule, pause, resume, cancel, resend; runs and their progress;
* :mod:`~campaigns.admin.delivery_log`: the delivery log (read-only, exportable);
* :mod:`~campaigns.admin.audience`: recipient lists (import, export) and recipient sources;
* :mod:`~campaigns.admin.policies`: policy toggles and opt-outs;
* :mod:`~campaigns.admin.previews`: the preview and test-send pages the first two share.

Each admin only gathers input and calls one service (campaigns.services.*); permissions for
anything that sends or approves are checked again on the server, in the admin views and in the
services.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

# Importing the modules registers their ModelAdmins (Django's autodiscover imports this package).
from campaigns.admin import (  # noqa: F401
    audience,
    campaigns,
    delivery_log,
    message_types,
    policies,
    runs,
)
from campaigns.feedback import admin as feedback_admin  # noqa: F401  (suppressions, events)

admin.site.site_header = _("Campaigns")
admin.site.site_title = _("Campaigns admin")
