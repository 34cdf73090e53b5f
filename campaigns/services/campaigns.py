"""Campaign lifecycle: create, edit, approve, and every status change through one table.

    draft ──approve──> approved ──schedule──> scheduled ──> running ──> completed
     ^ ^                 │                     │  │  ^         │  ^
     │ └───── edit ──────┘                     │  v  │         v  │
     │                                         │ paused <─────────┘
     └──── edit of its templates or audience ──┘
    any state but completed/cancelled ──cancel──> cancelled

An approval is of one exact content and audience (DESIGN.md, invariant 7): approving stores
:func:`campaign_content_digest` -- a sha256 over a canonical JSON of the campaign's fields,
every template its message type sends (each part and language, and what they include), and
the recipient source with its parameters -- with the approver and the time. Editing an
approved campaign sends it back to draft; an edit of its templates or its audience does too
(``campaigns.services.approvals``, also for scheduled ones), and a run starts only while
:func:`campaign_approval_current` holds. Nobody approves what they created or last edited
(the campaign, its message type or its recipient source).

Scheduling (``campaigns.services.schedules``) and pausing, resuming and cancelling
(``campaigns.services.controls``) change status through :func:`campaign_transition`, so the
rules live here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns.exceptions import CampaignError
from campaigns.models import (
    Campaign,
    ChannelChoice,
    MessageTypeDefinition,
    TemplatePart,
)

S = Campaign.Status

#: Allowed status changes: from -> {to, ...}. The one place the lifecycle is defined.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.APPROVED, S.CANCELLED}),
    S.APPROVED: frozenset({S.DRAFT, S.SCHEDULED, S.CANCELLED}),
    # Back to draft only when an edit of its templates or audience withdraws the approval
    # (campaigns.services.approvals deletes the schedule in the same transaction).
    S.SCHEDULED: frozenset({S.DRAFT, S.RUNNING, S.PAUSED, S.COMPLETED, S.CANCELLED}),
    # A recurring campaign goes back to scheduled between runs.
    S.RUNNING: frozenset({S.SCHEDULED, S.PAUSED, S.COMPLETED, S.CANCELLED}),
    S.PAUSED: frozenset({S.SCHEDULED, S.RUNNING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
#: States whose content can still be edited (editing an approved one reverts it to draft).
EDITABLE = frozenset({S.DRAFT, S.APPROVED})
#: States whose approval an edit of the message type or the audience withdraws (to draft).
APPROVAL_WITHDRAWN_BY_EDITS = frozenset({S.APPROVED, S.SCHEDULED})
#: States in which a campaign is sending (or will resume): its templates and audience are locked.
SENDING = frozenset({S.RUNNING, S.PAUSED})

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
ERROR_APPROVE_OWN_EDIT = "You can't approve a campaign you last edited; ask another approver."
ERROR_APPROVE_OWN_PART = (
    "You can't approve a campaign whose %(part)s you last edited; ask another approver."
)
ERROR_APPROVE_CHANGED = (
    "Campaign “%(name)s” changed after you opened it (its content is now %(digest)s);"
    " review it again before approving."
)
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
    campaign.last_edited_by = user
    campaign.status = S.DRAFT
    _clear_approval(campaign)
    campaign.full_clean(exclude=["created_by", "last_edited_by"])
    campaign.save()
    return campaign


@transaction.atomic
def campaign_update(
    *, campaign: Campaign, user: AbstractBaseUser | None = None, **fields: Any
) -> Campaign:
    """Edit a draft or approved campaign; an edit of an approved one sends it back to draft.

    Raises CampaignError when the campaign is past approval (scheduled, running...).
    ``fields`` may also be already set on ``campaign`` (as a ModelForm does); changes are
    detected against the stored row. A change makes ``user`` its last editor (who can't
    approve it).
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
    for name in ("created_by", "last_edited_by", "approved_by", "approved_at", "approved_digest"):
        setattr(campaign, _attname(name), getattr(stored, _attname(name)))
    if changed:
        if user is not None:
            campaign.last_edited_by = user
        if stored.status == S.APPROVED:
            campaign.status = S.DRAFT
            _clear_approval(campaign)
    campaign.full_clean(exclude=["created_by", "last_edited_by"])
    campaign.save()
    return campaign


def _clear_approval(campaign: Campaign) -> None:
    campaign.approved_by = None
    campaign.approved_at = None
    campaign.approved_digest = ""


def _attname(name: str) -> str:
    return Campaign._meta.get_field(name).attname


def campaign_approve(*, campaign: Campaign, user: AbstractBaseUser, digest: str = "") -> Campaign:
    """Approve a draft campaign: needs ``campaigns.approve_campaign``, and someone who neither
    created nor last edited it, its message type or its recipient source.

    Stores :func:`campaign_content_digest` of the stored row with the approver and the time.
    ``digest``: the content the approver reviewed (the admin's approve button sends it); a
    campaign that changed since is refused. Also refuses a campaign that could not be sent
    (no channel, missing templates...).
    """
    if not user.has_perm("campaigns.approve_campaign"):
        raise CampaignError(ERROR_APPROVE_PERMISSION, {"user_id": user.pk})
    with transaction.atomic():
        locked = (
            Campaign.objects.select_for_update()
            .select_related("message_type", "recipient_source")
            .get(pk=campaign.pk)
        )
        _check_approver(campaign=locked, user=user)
        problems = campaign_readiness_problems(campaign=locked)
        if problems:
            raise CampaignError(
                ERROR_NOT_READY % {"name": locked.name, "problems": "; ".join(problems)},
                {"campaign_id": locked.pk, "problems": problems},
            )
        current = campaign_content_digest(campaign=locked)
        if digest and not hmac.compare_digest(digest, current):
            raise CampaignError(
                ERROR_APPROVE_CHANGED % {"name": locked.name, "digest": current[:12]},
                {"campaign_id": locked.pk, "reviewed": digest, "current": current},
            )
        return campaign_transition(
            campaign=campaign,
            to=S.APPROVED,
            extra_fields={
                "approved_by": user,
                "approved_at": timezone.now(),
                "approved_digest": current,
            },
        )


def _check_approver(*, campaign: Campaign, user: AbstractBaseUser) -> None:
    """Refuse the creator and the last editor of the campaign or of a part it sends."""
    extra = {"user_id": user.pk, "campaign_id": campaign.pk}
    if campaign.created_by_id is not None and campaign.created_by_id == user.pk:
        raise CampaignError(ERROR_APPROVE_OWN, extra)
    if campaign.last_edited_by_id is not None and campaign.last_edited_by_id == user.pk:
        raise CampaignError(ERROR_APPROVE_OWN_EDIT, extra)
    parts = (
        (campaign.message_type, "message type “%s”"),
        (campaign.recipient_source, "recipient source “%s”"),
    )
    for part, label in parts:
        if part.last_edited_by_id is not None and part.last_edited_by_id == user.pk:
            raise CampaignError(ERROR_APPROVE_OWN_PART % {"part": label % part}, extra)


def campaign_return_to_draft(*, campaign: Campaign, user: AbstractBaseUser) -> Campaign:
    """Withdraw an approval (an approver rejecting, or the author wanting to change it).

    Only of an approved campaign: a scheduled one is cancelled instead.
    """
    if not (user.has_perm("campaigns.approve_campaign") or campaign.created_by_id == user.pk):
        raise CampaignError(ERROR_APPROVE_PERMISSION, {"user_id": user.pk})
    with transaction.atomic():
        stored = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if stored.status != S.APPROVED:
            raise CampaignError(
                ERROR_TRANSITION
                % {
                    "name": stored.name,
                    "current": _label(stored.status),
                    "target": _label(S.DRAFT),
                },
                {"campaign_id": stored.pk, "from": stored.status, "to": S.DRAFT},
            )
        return campaign_transition(
            campaign=campaign,
            to=S.DRAFT,
            extra_fields={"approved_by": None, "approved_at": None, "approved_digest": ""},
        )


def campaign_validate_context(value: Any) -> dict:
    """The shared context must be a JSON object (a dict); returns it."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError(ERROR_CONTEXT, code="context_not_object")
    return value


# ----------------------------------------------------------------------------------------------
# What an approval covers: the content digest
# ----------------------------------------------------------------------------------------------

#: Bumped when :func:`campaign_content` changes shape (every stored digest then mismatches).
DIGEST_VERSION = 1
#: Message type fields that decide what is sent (``sample_context`` is for previews only).
MESSAGE_TYPE_FIELDS = ("id", "app_label", "name", "source", "code_path", "default_language")
#: A literal ``{% include %}``/``{% extends %}`` path (the sandbox allows no other kind).
_INCLUDE_RE = re.compile(r"""\{%-?\s*(?:include|extends)\s+(["'])(?P<path>[^"']+)\1""")
#: Templates followed through includes at most (bounds a cycle or a very deep chain).
MAX_TEMPLATES = 200


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _canonical(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode("utf-8")


def _file_source(path: str) -> str | None:
    """The source of ``path`` from the file loaders (not the database), or None."""
    from django.template import TemplateDoesNotExist, engines

    from campaigns.template_loader import DatabaseLoader

    for loader in engines["django"].engine.template_loaders:
        if isinstance(loader, DatabaseLoader):
            continue
        try:
            return loader.get_template(path).source
        except TemplateDoesNotExist:
            continue
    return None


def message_type_template_sources(*, definition: MessageTypeDefinition) -> dict[str, dict]:
    """Every template the message type can send, by ACE path: ``{"database": {language:
    content}, "file": source or None}`` -- each channel's files, and what they include or
    extend (another message type's parts, a file), followed to :data:`MAX_TEMPLATES`."""
    from campaigns.selectors import message_type_template_paths
    from campaigns.template_loader import parse_ace_path

    pending = [
        path
        for channel in ChannelChoice.values
        for path in message_type_template_paths(definition=definition, channel=channel)
    ]
    found: dict[str, dict] = {}
    while pending and len(found) < MAX_TEMPLATES:
        path = pending.pop(0)
        if path in found:
            continue
        database: dict[str, str] = {}
        parsed = parse_ace_path(path)
        if parsed is not None:
            app_label, name, channel, filename = parsed
            database = dict(
                TemplatePart.objects.filter(
                    message_type__app_label=app_label,
                    message_type__name=name,
                    channel=channel,
                    filename=filename,
                ).values_list("language", "content")
            )
        file = _file_source(path)
        found[path] = {"database": database, "file": file}
        for text in [*database.values(), file or ""]:
            pending.extend(match["path"] for match in _INCLUDE_RE.finditer(text))
    return found


def campaign_content(*, campaign: Campaign) -> dict[str, Any]:
    """Everything that decides what ``campaign`` sends and to whom, as JSON data: its
    :data:`CONTENT_FIELDS`, its message type and every template it sends, its recipient
    source with resolver and parameters.

    Who matches the source is not frozen: a group's members or an imported list's entries may
    change after the approval (a recurring campaign to a growing list is a use case).
    """
    definition = campaign.message_type
    source = campaign.recipient_source
    return {
        "version": DIGEST_VERSION,
        "campaign": {name: getattr(campaign, _attname(name)) for name in CONTENT_FIELDS},
        "message_type": {
            **{name: getattr(definition, name) for name in MESSAGE_TYPE_FIELDS},
            "templates": message_type_template_sources(definition=definition),
        },
        "recipient_source": {
            "id": source.pk,
            "resolver": source.resolver,
            "parameters": source.parameters,
        },
    }


def campaign_content_digest(*, campaign: Campaign) -> str:
    """sha256 (hex) of the canonical JSON of :func:`campaign_content`."""
    return hashlib.sha256(_canonical(campaign_content(campaign=campaign))).hexdigest()


def campaign_approval_current(*, campaign: Campaign) -> bool:
    """True if ``campaign`` has an approval and it covers exactly what it would send now.

    False when it was never approved with a digest, or anything in :func:`campaign_content`
    changed since (a run must not start then). Reads the message type and the recipient
    source from the database unless they are already loaded on ``campaign``.
    """
    if not campaign.approved_digest:
        return False
    return hmac.compare_digest(campaign.approved_digest, campaign_content_digest(campaign=campaign))
