"""Services: the functions that change state; admin views and Celery tasks only call these."""

# camp-admin: message types, the campaign lifecycle, previews and test sends.
from campaigns.services.campaigns import (
    campaign_approve,
    campaign_create,
    campaign_readiness_problems,
    campaign_return_to_draft,
    campaign_transition,
    campaign_update,
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

__all__ = [
    "campaign_approve",
    "campaign_create",
    "campaign_preview",
    "campaign_readiness_problems",
    "campaign_return_to_draft",
    "campaign_test_send",
    "campaign_transition",
    "campaign_update",
    "message_preview",
    "message_type_fill_optional_parts",
    "message_type_instance",
    "message_type_sync_code_defined",
    "message_type_test_send",
    "template_parts_validate",
    "template_source_validate",
]
