"""Campaign lifecycle: create, edit, approve, and every status change through one table.

    draft ──approve──> approved ──schedule──> scheduled ──> running ──> completed
      ^                  │                       │  ^          │  ^
      └───── edit ───────┘                       v  │          v  │
                                               paused <────────┘
    any state but completed/cancelled ──cancel──> cancelled

Editing an approved campaign sends it back to draft (it has to be approved again). Scheduling
(``campaigns.services.schedules``) and pausing, resuming and cancelling
(``campaigns.services.controls``) change status through :func:`campaign_transition`, so the
rules live here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns.exceptions import CampaignError
from campaigns.models import Campaign

S = Campaign.Status

#: Allowed status changes: from -> {to, ...}. The one place the lifecycle is defined.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.APPROVED, S.CANCELLED}),
    S.APPROVED: frozenset({S.DRAFT, S.SCHEDULED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.RUNNING, S.PAUSED, S.COMPLETED, S.CANCELLED}),
    # A recurring campaign goes back to scheduled between runs.
    S.RUNNING: frozenset({S.SCHEDULED, S.PAUSED, S.COMPLETED, S.CANCELLED}),
    S.PAUSED: frozenset({S.SCHEDULED, S.RUNNING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
#: States whose content can still be edited (editing an approved one reverts it to draft).
EDITABLE = frozenset({S.DRAFT, S.APPROVED})

#: Fields an operator edits; changing any of them needs a new approval.
CONTENT_FIELDS = (
    "name",
    "message_type",
    "recipient_source",
    "context",
    "channels",
    "language",
    "expiration_hours",
    "schedule_kind",
    "scheduled_at",
    "crontab",
    "interval_seconds",
    "time_zone",
    "exclude_previous_recipients",
)

ERROR_TRANSITION = "Campaign “%(name)s” is %(current)s; it can't become %(target)s."
ERROR_NOT_EDITABLE = (
    "Campaign “%(name)s” is %(current)s and can no longer be edited; only draft and approved"
    " campaigns can (cancel it and create a new one, or wait until it completes)."
)
ERROR_APPROVE_PERMISSION = "You don't have permission to approve campaigns."
ERROR_APPROVE_OWN = "You can't approve a campaign you created; ask another approver."
ERROR_NOT_READY = "Campaign “%(name)s” can't be approved yet: %(problems)s"
ERROR_UNKNOWN_FIELD = "Unknown campaign field(s): %(fields)s."
PROBLEM_NO_CHANNELS = "choose at least one channel"
PROBLEM_CHANNEL_DISABLED = "the %(channel)s channel is not enabled on this site"
PROBLEM_MISSING_TEMPLATES = "the message type has no %(channel)s templates (%(paths)s)"
PROBLEM_CONTEXT = "the shared context must be a JSON object"
ERROR_CONTEXT = 'The shared context must be a JSON object, e.g. {"headline": "Spring courses"}.'


def _label(status: str) -> str:
    return str(S(status).label).lower() if status in S.values else status


def campaign_transition_allowed(*, current: str, target: str) -> bool:
    """True if the lifecycle table allows ``current`` -> ``target``."""
    return target in TRANSITIONS.get(current, frozenset())


def campaign_transition(
    *, campaign: Campaign, to: str, extra_fields: dict[str, Any] | None = None
) -> Campaign:
    """Move ``campaign`` to status ``to`` if the table allows it; raise CampaignError if not.

    Locks the row so two concurrent changes can't both pass the check. ``extra_fields`` are saved
    in the same UPDATE (e.g. ``approved_by``). Updates ``campaign`` in place and returns it.
    """
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if not campaign_transition_allowed(current=locked.status, target=to):
            raise CampaignError(
                ERROR_TRANSITION
                % {"name": locked.name, "current": _label(locked.status), "target": _label(to)},
                {"campaign_id": locked.pk, "from": locked.status, "to": to},
            )
        fields = {"status": to, **(extra_fields or {})}
        for name, value in fields.items():
            setattr(locked, name, value)
            setattr(campaign, name, value)
        locked.save(update_fields=[*fields, "updated_at"])
        campaign.updated_at = locked.updated_at
    return campaign


def campaign_readiness_problems(*, campaign: Campaign) -> list[str]:
    """What stops the campaign from being approved/sent (empty when it is ready)."""
    from campaigns.selectors import channel_enabled_choices, message_type_missing_templates

    problems: list[str] = []
    if not isinstance(campaign.context, dict):
        problems.append(PROBLEM_CONTEXT)
    if not campaign.channels:
        problems.append(PROBLEM_NO_CHANNELS)
    enabled = {value for value, _label in channel_enabled_choices()}
    for channel in campaign.channels or []:
        if channel not in enabled:
            problems.append(PROBLEM_CHANNEL_DISABLED % {"channel": channel})
            continue
        missing = message_type_missing_templates(
            definition=campaign.message_type, channel=channel, language=campaign.language
        )
        if missing:
            problems.append(
                PROBLEM_MISSING_TEMPLATES
                % {"channel": channel, "paths": ", ".join(p.rsplit("/", 1)[-1] for p in missing)}
            )
    return problems


def _check_fields(fields: Iterable[str]) -> None:
    unknown = sorted(set(fields) - set(CONTENT_FIELDS))
    if unknown:
        raise CampaignError(ERROR_UNKNOWN_FIELD % {"fields": ", ".join(unknown)})


@transaction.atomic
def campaign_create(
    *, user: AbstractBaseUser | None, campaign: Campaign | None = None, **fields: Any
) -> Campaign:
    """Create a draft campaign owned by ``user`` (validated with ``full_clean``).

    ``campaign`` may be an unsaved instance (the admin's form builds one); ``fields`` are set on
    it.
    """
    _check_fields(fields)
    campaign = campaign if campaign is not None else Campaign()
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.created_by = user
    campaign.status = S.DRAFT
    campaign.approved_by = None
    campaign.approved_at = None
    campaign.full_clean(exclude=["created_by"])
    campaign.save()
    return campaign


@transaction.atomic
def campaign_update(
    *, campaign: Campaign, user: AbstractBaseUser | None = None, **fields: Any
) -> Campaign:
    """Edit a draft or approved campaign; an edit of an approved one sends it back to draft.

    Raises CampaignError when the campaign is past approval (scheduled, running...).
    ``fields`` may also be already set on ``campaign`` (as a ModelForm does); changes are
    detected against the stored row.
    """
    _check_fields(fields)
    stored = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if stored.status not in EDITABLE:
        raise CampaignError(
            ERROR_NOT_EDITABLE % {"name": stored.name, "current": _label(stored.status)},
            {"campaign_id": stored.pk, "status": stored.status},
        )
    for name, value in fields.items():
        setattr(campaign, name, value)
    changed = [
        name
        for name in CONTENT_FIELDS
        if getattr(campaign, _attname(name)) != getattr(stored, _attname(name))
    ]
    campaign.status = stored.status
    if changed and stored.status == S.APPROVED:
        campaign.status = S.DRAFT
        campaign.approved_by = None
        campaign.approved_at = None
    campaign.full_clean(exclude=["created_by"])
    campaign.save()
    return campaign


def _attname(name: str) -> str:
    return Campaign._meta.get_field(name).attname


def campaign_approve(*, campaign: Campaign, user: AbstractBaseUser) -> Campaign:
    """Approve a draft campaign: needs ``campaigns.approve_campaign``, and not one's own.

    Also refuses a campaign that could not be sent (no channel, missing templates...).
    """
    if not user.has_perm("campaigns.approve_campaign"):
        raise CampaignError(ERROR_APPROVE_PERMISSION, {"user_id": user.pk})
    if campaign.created_by_id is not None and campaign.created_by_id == user.pk:
        raise CampaignError(ERROR_APPROVE_OWN, {"user_id": user.pk, "campaign_id": campaign.pk})
    problems = campaign_readiness_problems(campaign=campaign)
    if problems:
        raise CampaignError(
            ERROR_NOT_READY % {"name": campaign.name, "problems": "; ".join(problems)},
            {"campaign_id": campaign.pk, "problems": problems},
        )
    return campaign_transition(
        campaign=campaign,
        to=S.APPROVED,
        extra_fields={"approved_by": user, "approved_at": timezone.now()},
    )


def campaign_return_to_draft(*, campaign: Campaign, user: AbstractBaseUser) -> Campaign:
    """Withdraw an approval (an approver rejecting, or the author wanting to change it)."""
    if not (user.has_perm("campaigns.approve_campaign") or campaign.created_by_id == user.pk):
        raise CampaignError(ERROR_APPROVE_PERMISSION, {"user_id": user.pk})
    return campaign_transition(
        campaign=campaign, to=S.DRAFT, extra_fields={"approved_by": None, "approved_at": None}
    )


def campaign_validate_context(value: Any) -> dict:
    """The shared context must be a JSON object (a dict); returns it."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError(ERROR_CONTEXT, code="context_not_object")
    return value
