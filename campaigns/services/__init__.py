"""Services: the functions that change state; admin views and Celery tasks only call these.

Each lives in the module of its sub-domain (``runs``, ``batches``, ``controls``, ...). The
names below can also be imported from this package; they are loaded on first use (PEP 562),
so importing one service module never imports all the others.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public service -> the module that defines it.
_WHERE = {
    "batch_deliver": "batches",
    "campaign_withdraw_outdated_approval": "approvals",
    "content_edited": "approvals",
    "campaign_approval_current": "campaigns",
    "campaign_approve": "campaigns",
    "campaign_content_digest": "campaigns",
    "campaign_create": "campaigns",
    "campaign_readiness_problems": "campaigns",
    "campaign_return_to_draft": "campaigns",
    "campaign_transition": "campaigns",
    "campaign_update": "campaigns",
    "campaign_cancel": "controls",
    "campaign_pause": "controls",
    "campaign_resume": "controls",
    "run_cancel": "controls",
    "run_pause": "controls",
    "run_resend_unknown": "controls",
    "run_resume": "controls",
    "campaign_dry_run": "dry_run",
    "message_type_fill_optional_parts": "message_types",
    "message_type_instance": "message_types",
    "message_type_sync_code_defined": "message_types",
    "template_parts_validate": "message_types",
    "template_source_validate": "message_types",
    "campaign_preview": "previews",
    "campaign_test_send": "previews",
    "message_preview": "previews",
    "message_type_test_send": "previews",
    "rate_limit_take": "ratelimit",
    "run_recover": "recovery",
    "runs_recover_stalled": "recovery",
    "run_progress": "runs",
    "run_start": "runs",
    "campaign_schedule": "schedules",
    "campaign_schedule_delete": "schedules",
    "campaign_schedule_sync": "schedules",
    "campaign_schedule_validate": "schedules",
    "campaign_schedules_set_enabled": "schedules",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
