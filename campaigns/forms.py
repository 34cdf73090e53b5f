"""Admin forms: each refuses bad input with a message on the field, and calls services to check."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from import_export.forms import ConfirmImportForm, ImportForm

from campaigns import policies as campaign_policies
from campaigns.models import (
    Campaign,
    ChannelChoice,
    MessageTypeDefinition,
    PolicyToggle,
    RecipientList,
    RecipientSource,
    TemplatePart,
)
from campaigns.resolvers import available_resolvers, resolver_choices
from campaigns.services.approvals import ERROR_SENDING, campaigns_sending_with
from campaigns.services.campaigns import CONTENT_FIELDS, EDITABLE, campaign_validate_context
from campaigns.services.message_types import (
    CHANNEL_FILES,
    template_part_content_validate,
    template_parts_validate,
)
from campaigns.services.policies import policy_parameters_clean
from campaigns.services.recipients import recipient_source_clean

ERROR_CONTEXT_OBJECT = 'Must be a JSON object, e.g. {"headline": "Spring courses"}.'
ERROR_NOT_EDITABLE = (
    "This campaign is %(status)s and can't be edited any more (only draft and approved"
    " campaigns can)."
)
ERROR_CHANNEL_TEMPLATES = "“%(type)s” has no %(channel)s templates (missing: %(files)s)."
ERROR_LANGUAGE = "Unknown language %(value)r; choose one of the site's languages."
#: ``ValidationError`` codes of policy_parameters_clean that are about the policy, not its
#: parameters (shown on the policy field).
POLICY_FIELD_ERRORS = {"unknown_policy", "not_toggleable", "always_on", "toggles_disabled"}


def language_choices(blank_label: str) -> list[tuple[str, str]]:
    """("", blank_label) then the site's LANGUAGES, codes lower-cased like get_language()."""
    return [("", blank_label)] + [
        (code.lower(), f"{name} ({code})") for code, name in settings.LANGUAGES
    ]


def _monospace(rows: int = 6) -> forms.Textarea:
    return forms.Textarea(
        attrs={"rows": rows, "cols": 90, "style": "font-family: monospace", "spellcheck": "false"}
    )


def refuse_while_sending(instance: MessageTypeDefinition | RecipientSource, **part: Any) -> None:
    """A running or paused campaign sends ``part``: its approved content can't change now."""
    names = [f"“{n}”" for n in campaigns_sending_with(**part).values_list("name", flat=True)[:3]]
    if names:
        raise ValidationError(
            ERROR_SENDING,
            code="sending",
            params={"what": f"“{instance}”", "campaigns": ", ".join(names)},
        )


class JSONObjectField(forms.JSONField):
    """A JSON field that only accepts an object (``{...}``)."""

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError(ERROR_CONTEXT_OBJECT, code="not_object")
        return value


# Message types ----------------------------------------------------------------------------------


class MessageTypeDefinitionForm(forms.ModelForm):
    """A database-defined message type: its ACE identity, default language and sample context."""

    default_language = forms.ChoiceField(
        choices=(), help_text="Used when neither the campaign nor the recipient has a language."
    )
    sample_context = JSONObjectField(
        required=False,
        widget=_monospace(8),
        help_text="A JSON object used for previews and test sends, "
        'e.g. {"headline": "Spring courses", "first_name": "Ada"}.',
    )

    class Meta:
        model = MessageTypeDefinition
        fields = ["app_label", "name", "description", "default_language", "sample_context"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if "default_language" in self.fields:  # read-only for code-defined types
            self.fields["default_language"].choices = language_choices("—")[1:]
        if self.instance.pk is None:
            self.initial.setdefault("default_language", settings.LANGUAGE_CODE.lower())

    def clean_default_language(self) -> str:
        return self.cleaned_data["default_language"].lower()

    def clean(self) -> dict:
        cleaned = super().clean()
        refuse_while_sending(self.instance, message_type=self.instance)
        return cleaned


class TemplatePartForm(forms.ModelForm):
    """One template file; its source is compiled (with the sandbox rules) when saved."""

    channel_value: str = ChannelChoice.EMAIL

    language = forms.ChoiceField(choices=(), required=False)

    class Meta:
        model = TemplatePart
        fields = ["channel", "filename", "language", "content"]
        widgets = {"channel": forms.HiddenInput, "content": _monospace(6)}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["channel"].initial = self.channel_value
        self.fields["channel"].required = False
        allowed = CHANNEL_FILES.get(self.channel_value, ())
        self.fields["filename"].choices = [
            (value, label) for value, label in TemplatePart.Filename.choices if value in allowed
        ]
        self.fields["language"].choices = language_choices("Any language (fallback)")
        self.fields["content"].required = False

    def clean_channel(self) -> str:
        # The inline decides the channel; whatever the browser sent is ignored.
        return self.channel_value

    def clean_language(self) -> str:
        return (self.cleaned_data.get("language") or "").lower().replace("_", "-")

    def clean_content(self) -> str:
        content = self.cleaned_data.get("content") or ""
        template_part_content_validate(
            content=content,
            filename=self.cleaned_data.get("filename", ""),
            channel=self.channel_value,
            message_type=getattr(self.instance, "message_type", None),
        )
        return content


class EmailTemplatePartForm(TemplatePartForm):
    channel_value = ChannelChoice.EMAIL


class PushTemplatePartForm(TemplatePartForm):
    channel_value = ChannelChoice.PUSH


class ChannelPartsFormSet(BaseInlineFormSet):
    """The parts of one channel, checked as a whole (required files, duplicates)."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        parts = [
            (form.cleaned_data["filename"], form.cleaned_data.get("language", ""))
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("filename")
        ]
        template_parts_validate(channel=self.form.channel_value, parts=parts)


# Campaigns --------------------------------------------------------------------------------------


class CampaignForm(forms.ModelForm):
    """Compose a campaign: what, to whom, on which channels, when."""

    context = JSONObjectField(
        required=False,
        widget=_monospace(8),
        help_text="Shared by every message, as a JSON object. Recipient values (first_name, ...)"
        " override it.",
    )
    channels = forms.MultipleChoiceField(
        choices=(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Only channels enabled on this site are listed.",
    )
    language = forms.ChoiceField(choices=(), required=False)
    time_zone = forms.CharField(
        initial="UTC",
        help_text="IANA name, e.g. Europe/Paris. The date and time above and the crontab are read"
        " in this time zone.",
    )

    class Meta:
        model = Campaign
        fields = list(CONTENT_FIELDS)  # everything an operator edits needs a new approval

    def __init__(self, *args: Any, **kwargs: Any):
        from campaigns.selectors import channel_enabled_choices

        super().__init__(*args, **kwargs)
        # Fields are missing when the admin shows a campaign past approval read-only.
        if "channels" in self.fields:
            self.fields["channels"].choices = channel_enabled_choices()
        if "language" in self.fields:
            self.fields["language"].choices = language_choices(
                "The recipient's language, else the message type's default"
            )
        if self.instance.pk is None:
            self.initial.setdefault("channels", [ChannelChoice.EMAIL.value])
        # Show the stored UTC time in the campaign's own time zone (see clean_scheduled_at).
        if self.instance.scheduled_at and "scheduled_at" not in self.data:
            tz = _zone(self.instance.time_zone)
            if tz is not None:
                self.initial["scheduled_at"] = self.instance.scheduled_at.astimezone(tz).replace(
                    tzinfo=None
                )

    def clean_context(self) -> dict:
        return campaign_validate_context(self.cleaned_data.get("context"))

    def clean_time_zone(self) -> str:
        value = (self.cleaned_data.get("time_zone") or "").strip()
        if _zone(value) is None:
            raise ValidationError(
                "Unknown time zone %(value)r; use an IANA name like Europe/Paris or UTC.",
                code="time_zone",
                params={"value": value},
            )
        return value

    def clean_crontab(self) -> str:
        return " ".join((self.cleaned_data.get("crontab") or "").split())

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.instance.pk and self.instance.status not in EDITABLE:
            raise ValidationError(
                ERROR_NOT_EDITABLE, params={"status": self.instance.get_status_display().lower()}
            )
        self._reinterpret_scheduled_at(cleaned)
        self._check_channels(cleaned)
        self._check_schedule(cleaned)
        return cleaned

    def _reinterpret_scheduled_at(self, cleaned: dict) -> None:
        """The admin widget reads wall time in the site's zone; read it in the campaign's."""
        value = cleaned.get("scheduled_at")
        tz = _zone(cleaned.get("time_zone") or "")
        if isinstance(value, dt.datetime) and tz is not None:
            naive = timezone.make_naive(value) if timezone.is_aware(value) else value
            cleaned["scheduled_at"] = naive.replace(tzinfo=tz)

    def _check_channels(self, cleaned: dict) -> None:
        from campaigns.selectors import message_type_missing_templates

        message_type = cleaned.get("message_type")
        if message_type is None:
            return
        for channel in cleaned.get("channels") or []:
            missing = message_type_missing_templates(
                definition=message_type, channel=channel, language=cleaned.get("language") or ""
            )
            if missing:
                self.add_error(
                    "channels",
                    ValidationError(
                        ERROR_CHANNEL_TEMPLATES,
                        code="missing_templates",
                        params={
                            "type": str(message_type),
                            "channel": ChannelChoice(channel).label.lower(),
                            "files": ", ".join(p.rsplit("/", 1)[-1] for p in missing),
                        },
                    ),
                )

    def _check_schedule(self, cleaned: dict) -> None:
        """The schedule service's rules (crontab via celery's parser, future times...)."""
        from campaigns.services.schedules import campaign_schedule_validate

        if any(f in self.errors for f in ("schedule_kind", "time_zone")):
            return
        probe = Campaign(
            schedule_kind=cleaned.get("schedule_kind") or Campaign.ScheduleKind.NOW,
            scheduled_at=cleaned.get("scheduled_at"),
            crontab=cleaned.get("crontab") or "",
            interval_seconds=cleaned.get("interval_seconds"),
            time_zone=cleaned.get("time_zone") or "UTC",
        )
        try:
            campaign_schedule_validate(campaign=probe)
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    target = field if field in self.fields else None
                    for error in errors:
                        self.add_error(target, error)
            else:
                self.add_error(None, exc)


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


# Preview / test send ----------------------------------------------------------------------------


class PreviewForm(forms.Form):
    """Which recipient and language to preview with."""

    recipient = forms.CharField(
        required=False,
        help_text="A user id or email address; empty: yourself (or the first recipient of a"
        " campaign).",
    )
    language = forms.ChoiceField(choices=(), required=False)

    def __init__(self, *args: Any, sample_choices: list[tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = language_choices("Default")
        if sample_choices:
            self.fields["sample"] = forms.ChoiceField(
                choices=[("", "—"), *sample_choices],
                required=False,
                label="Or one of the first recipients",
            )

    def clean_recipient(self):
        from campaigns.selectors import user_find

        query = (self.cleaned_data.get("recipient") or "").strip()
        if not query:
            return None
        user = user_find(query=query)
        if user is None:
            raise ValidationError(
                "No user with id or email %(query)r.", code="no_user", params={"query": query}
            )
        return user


# Recipient lists and sources --------------------------------------------------------------------


class RecipientListImportForm(ImportForm):
    """The import form plus the list the rows go into."""

    recipient_list = forms.ModelChoiceField(
        queryset=RecipientList.objects.all(), help_text="The list the rows are added to."
    )
    field_order = ["recipient_list", "resource", "import_file", "format"]


class RecipientListConfirmImportForm(ConfirmImportForm):
    """The confirmation step carries the chosen list along."""

    recipient_list = forms.ModelChoiceField(
        queryset=RecipientList.objects.all(), widget=forms.HiddenInput()
    )


def _resolvers_help() -> str:
    rows = [
        (name, cls.label or name, cls.parameters_help())
        for name, cls in available_resolvers().items()
    ]
    return format_html(
        "A JSON object, validated by the chosen resolver:<ul>{}</ul>",
        format_html_join("", "<li><code>{}</code> ({}): {}</li>", rows),
    )


class RecipientSourceForm(forms.ModelForm):
    """Resolver choices come from the installed plugins; parameters are validated by the
    resolver's ``parameters_form`` and errors are shown on the parameters field."""

    resolver = forms.ChoiceField(choices=resolver_choices)
    parameters = forms.JSONField(
        required=False, initial=dict, widget=forms.Textarea(attrs={"rows": 4, "cols": 80})
    )

    class Meta:
        model = RecipientSource
        fields = ("name", "resolver", "parameters")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["parameters"].help_text = _resolvers_help()

    def clean(self) -> dict:
        data = super().clean()
        refuse_while_sending(self.instance, recipient_source=self.instance)
        resolver = data.get("resolver")
        if resolver and "parameters" not in self.errors:
            try:
                data["parameters"] = recipient_source_clean(
                    resolver=resolver, parameters=data.get("parameters") or {}
                )
            except ValidationError as exc:
                self.add_error("parameters", exc)
        return data


# Policy toggles ---------------------------------------------------------------------------------


def policy_choices() -> list[tuple[str, str]]:
    """Installed ACE policy plugins that can be toggled, as ``(name, "name — label")``."""
    choices = []
    for name, cls in campaign_policies.installed_policy_classes().items():
        if name == campaign_policies.PolicyToggleDenyPolicy.name:
            continue
        label = getattr(cls, "label", "") or getattr(cls, "__name__", name)
        choices.append((name, f"{name} — {label}"))
    return choices


def _policies_help() -> str:
    rows = []
    for name, cls in campaign_policies.installed_policy_classes().items():
        if name == campaign_policies.PolicyToggleDenyPolicy.name:
            continue
        describe = getattr(cls, "parameters_help", None)
        default = getattr(cls, "enabled_by_default", False)
        rows.append(
            (
                name,
                "on" if default else "off",
                describe() if callable(describe) else "no parameters",
            )
        )
    return format_html(
        "A JSON object, validated by the chosen policy (missing values take the default):"
        "<ul>{}</ul>",
        format_html_join("", "<li><code>{}</code> (default {}): {}</li>", rows),
    )


class PolicyToggleForm(forms.ModelForm):
    """The policy is a choice of installed plugins; parameters are validated by the form the
    policy declares."""

    policy = forms.ChoiceField(choices=policy_choices)
    parameters = forms.JSONField(
        required=False, initial=dict, widget=forms.Textarea(attrs={"rows": 4, "cols": 80})
    )

    class Meta:
        model = PolicyToggle
        fields = ("policy", "message_type", "enabled", "parameters")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["parameters"].help_text = _policies_help()

    def clean(self) -> dict:
        data = super().clean()
        policy = data.get("policy")
        if policy and "parameters" not in self.errors:
            try:
                data["parameters"] = policy_parameters_clean(
                    policy=policy, parameters=data.get("parameters") or {}
                )
            except ValidationError as exc:
                field = (
                    "policy" if getattr(exc, "code", None) in POLICY_FIELD_ERRORS else "parameters"
                )
                self.add_error(field, exc)
        return data
