"""Edits after approval: a change to what an approved campaign sends withdraws the approval.

Saving a message type (or its templates) or a recipient source calls :func:`content_edited`:
the editor becomes the last editor of it and of the campaigns using it (so they can't approve
them), and every approved or scheduled campaign whose approved content digest no longer matches
goes back to draft -- a scheduled one loses its schedule in the same transaction. Campaigns
that are sending (running, paused) are not touched: the admin refuses such edits
(:func:`campaigns_sending_with`), and a run refuses to start without a current approval
(``campaigns.services.campaigns.campaign_approval_current``).

This lives apart from ``services.campaigns`` because it deletes schedules through
``services.schedules``, which imports ``services.campaigns``.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet

from campaigns.models import Campaign, MessageTypeDefinition, RecipientSource
from campaigns.services.campaigns import (
    APPROVAL_WITHDRAWN_BY_EDITS,
    SENDING,
    campaign_approval_current,
    campaign_transition,
    message_type_template_sources,
)
from campaigns.services.schedules import campaign_schedule_delete

log = logging.getLogger(__name__)

S = Campaign.Status

#: Campaigns whose content an edit of their parts still concerns (not finished ones).
_OPEN = (S.DRAFT, S.APPROVED, S.SCHEDULED)

ERROR_SENDING = (
    "%(what)s is being sent by campaign %(campaigns)s; it can't change until the run is over"
    " (or the campaign is cancelled)."
)


def campaigns_sending_with(
    *,
    message_type: MessageTypeDefinition | None = None,
    recipient_source: RecipientSource | None = None,
) -> QuerySet[Campaign]:
    """Running or paused campaigns that send ``message_type`` or to ``recipient_source``."""
    return Campaign.objects.filter(_uses(message_type, recipient_source), status__in=SENDING)


def _uses(
    message_type: MessageTypeDefinition | None, recipient_source: RecipientSource | None
) -> Q:
    condition = Q(pk__in=[])
    if message_type is not None and message_type.pk:
        condition |= Q(message_type=message_type)
    if recipient_source is not None and recipient_source.pk:
        condition |= Q(recipient_source=recipient_source)
    return condition


def _includes(campaign: Campaign, message_type: MessageTypeDefinition) -> bool:
    prefix = f"{message_type.app_label}/edx_ace/{message_type.name}/"
    sources = message_type_template_sources(definition=campaign.message_type)
    return any(path.startswith(prefix) for path in sources)


@transaction.atomic
def content_edited(
    *,
    user: AbstractBaseUser | None,
    message_type: MessageTypeDefinition | None = None,
    recipient_source: RecipientSource | None = None,
    changed: bool = True,
) -> list[Campaign]:
    """``user`` saved ``message_type`` (its fields or template parts) or ``recipient_source``.

    With ``changed`` (something was actually modified), ``user`` becomes the last editor of it
    and of the open campaigns using it. Then every approved or scheduled campaign it concerns
    -- using it, or including one of its templates -- whose approval no longer covers its
    content is sent back to draft. Returns those campaigns.
    """
    if changed and user is not None:
        for part in (message_type, recipient_source):
            if part is not None and part.pk:
                type(part).objects.filter(pk=part.pk).update(last_edited_by=user)
                part.last_edited_by = user
        Campaign.objects.filter(_uses(message_type, recipient_source), status__in=_OPEN).update(
            last_edited_by=user
        )
    candidates = Campaign.objects.filter(status__in=APPROVAL_WITHDRAWN_BY_EDITS).select_related(
        "message_type", "recipient_source"
    )
    if message_type is None:
        candidates = candidates.filter(_uses(None, recipient_source))
    withdrawn = []
    for campaign in candidates:
        direct = campaign.message_type_id == getattr(message_type, "pk", None) or (
            campaign.recipient_source_id == getattr(recipient_source, "pk", None)
        )
        if not direct and not _includes(campaign, message_type):
            continue
        if campaign_withdraw_outdated_approval(campaign=campaign, user=user):
            withdrawn.append(campaign)
    return withdrawn


@transaction.atomic
def campaign_withdraw_outdated_approval(
    *, campaign: Campaign, user: AbstractBaseUser | None = None
) -> bool:
    """Send an approved or scheduled campaign back to draft if its approval no longer covers
    its content (deleting its schedule); True if it did. ``user`` made the change."""
    locked = (
        Campaign.objects.select_for_update()
        .select_related("message_type", "recipient_source")
        .get(pk=campaign.pk)
    )
    if locked.status not in APPROVAL_WITHDRAWN_BY_EDITS or campaign_approval_current(
        campaign=locked
    ):
        return False
    was = locked.status
    if was == S.SCHEDULED:
        campaign_schedule_delete(campaign=locked)
    fields = {"approved_by": None, "approved_at": None, "approved_digest": ""}
    if user is not None:
        fields["last_edited_by"] = user
    campaign_transition(campaign=locked, to=S.DRAFT, extra_fields=fields)
    for name, value in {"status": S.DRAFT, "periodic_task": None, **fields}.items():
        setattr(campaign, name, value)
    log.info(
        "Campaign %s was %s; an edit of what it sends withdrew the approval (user %s)",
        campaign.pk,
        was,
        getattr(user, "pk", None),
    )
    return True
