"""Services: the functions that change state; admin views and Celery tasks only call these."""

# camp-admin: message types, the campaign lifecycle, previews and test sends.
# dispatch: schedules, runs and batches, pause/resume/cancel, resend, recovery, rate limits.
from campaigns.services.campaigns import (
    campaign_approve,
    campaign_create,
    campaign_readiness_problems,
    campaign_return_to_draft,
    campaign_transition,
    campaign_update,
)
from campaigns.services.dispatch import (
    batch_deliver,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    run_cancel,
    run_pause,
    run_progress,
    run_recover,
    run_resend_unknown,
    run_resume,
    run_start,
    runs_recover_stalled,
)
from campaigns.services.message_types import (
    message_type_fill_optional_parts,
    message_type_instance,
    message_type_sync_code_defined,
    template_parts_validate,
    template_source_validate,
)
from campaigns.services.previews import (
    campaign_preview,
    campaign_test_send,
    message_preview,
    message_type_test_send,
)
from campaigns.services.ratelimit import rate_limit_take
from campaigns.services.schedules import (
    campaign_schedule,
    campaign_schedule_delete,
    campaign_schedule_sync,
    campaign_schedule_validate,
    campaign_schedules_set_enabled,
)

__all__ = [
    "batch_deliver",
    "campaign_approve",
    "campaign_cancel",
    "campaign_create",
    "campaign_pause",
    "campaign_preview",
    "campaign_readiness_problems",
    "campaign_resume",
    "campaign_return_to_draft",
    "campaign_schedule",
    "campaign_schedule_delete",
    "campaign_schedule_sync",
    "campaign_schedule_validate",
    "campaign_schedules_set_enabled",
    "campaign_test_send",
    "campaign_transition",
    "campaign_update",
    "message_preview",
    "message_type_fill_optional_parts",
    "message_type_instance",
    "message_type_sync_code_defined",
    "message_type_test_send",
    "rate_limit_take",
    "run_cancel",
    "run_pause",
    "run_progress",
    "run_recover",
    "run_resend_unknown",
    "run_resume",
    "run_start",
    "runs_recover_stalled",
    "template_parts_validate",
    "template_source_validate",
]
