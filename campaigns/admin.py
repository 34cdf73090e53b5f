"""The operator's UI: message types and their templates, campaigns, previews, the delivery log.

Each admin only gathers input and calls one service (campaigns.services.*); permissions for
anything that sends or approves are checked again on the server, in the views below and in the
services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from campaigns import (
    admin_audience,  # noqa: F401 - registers the audience admins
    exports,
    selectors,
)
from campaigns.admin_dispatch import DispatchActionsMixin
from campaigns.exceptions import CampaignError
from campaigns.forms import (
    CampaignForm,
    ChannelPartsFormSet,
    EmailTemplatePartForm,
    MessageTypeDefinitionForm,
    PreviewForm,
    PushTemplatePartForm,
)
from campaigns.models import (
    Campaign,
    CampaignRun,
    ChannelChoice,
    Delivery,
    MessageTypeDefinition,
    TemplatePart,
)
from campaigns.resources import DeliveryResource
from campaigns.services import campaigns as campaign_services
from campaigns.services import message_types as message_type_services
from campaigns.services import previews as preview_services
from campaigns.services.dry_run import campaign_dry_run

MSG_APPROVED = "Campaign “%(name)s” is approved."
MSG_BACK_TO_DRAFT = "Campaign “%(name)s” was approved; your edit sent it back to draft."
MSG_RETURNED_TO_DRAFT = "Campaign “%(name)s” is a draft again."
MSG_UNPROVIDED = (
    "The templates print %(names)s, which neither the campaign context nor its recipients"
    " provide: those would render blank."
)
MSG_TEST_SENT = "Test sent to %(address)s: %(outcomes)s."
MSG_TEST_NOT_SENT = "The test was not sent to %(address)s: %(outcomes)s."
MSG_MISSING = "Missing template variables (rendered blank): %(names)s."
MSG_SYNC_FAILED = "Could not list the code-defined message types: %(error)s"

#: Recipients a dry run checks unless the operator asks for the whole audience.
DRY_RUN_SAMPLE = 5000


def _outcomes_text(outcomes: list) -> str:
    if not outcomes:
        return "no channel was tried"
    return "; ".join(
        f"{o.channel_type.value} {o.status.value}" + (f" ({o.reason})" if o.reason else "")
        for o in outcomes
    )


# ----------------------------------------------------------------------------------------------
# Message types
# ----------------------------------------------------------------------------------------------


class TemplatePartInline(admin.StackedInline):
    """The parts of one channel; subclasses pick the channel."""

    model = TemplatePart
    formset = ChannelPartsFormSet
    fields = ["channel", "filename", "language", "content"]
    extra = 0
    channel: str = ""

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).filter(channel=self.channel)

    def initial_parts(self, obj: MessageTypeDefinition | None) -> list[dict[str, str]]:
        """Blank forms for the required files when the channel has no part yet."""
        if self.channel != ChannelChoice.EMAIL:
            return []
        if obj is not None and obj.pk and obj.template_parts.filter(channel=self.channel).exists():
            return []
        return [
            {"channel": self.channel, "filename": filename, "language": ""}
            for filename in message_type_services.REQUIRED_FILES[self.channel]
        ]

    def get_extra(self, request: HttpRequest, obj=None, **kwargs: Any) -> int:
        return len(self.initial_parts(obj))


class EmailTemplatePartInline(TemplatePartInline):
    form = EmailTemplatePartForm
    channel = ChannelChoice.EMAIL
    verbose_name = "email template"
    verbose_name_plural = (
        "email templates (subject, text and HTML bodies are required for “any language”;"
        " from name and head HTML may stay empty)"
    )


class PushTemplatePartInline(TemplatePartInline):
    form = PushTemplatePartForm
    channel = ChannelChoice.PUSH
    verbose_name = "push notification template"
    verbose_name_plural = "push notification templates (title and body)"


@admin.register(MessageTypeDefinition)
class MessageTypeDefinitionAdmin(admin.ModelAdmin):
    """Message types: database ones are edited here; code-defined ones are listed read-only."""

    form = MessageTypeDefinitionForm
    list_display = ["__str__", "source", "description", "channels_display", "updated_at"]
    list_filter = ["source"]
    search_fields = ["app_label", "name", "description"]
    readonly_fields = ["source", "code_path", "template_files", "created_at", "updated_at"]
    inlines = [EmailTemplatePartInline, PushTemplatePartInline]
    change_form_template = "admin/campaigns/messagetypedefinition/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj=None):
        main = ["app_label", "name", "description", "default_language", "sample_context"]
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return [
                (None, {"fields": ["source", "code_path", *main]}),
                ("Templates (files)", {"fields": ["template_files"]}),
                ("Dates", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
            ]
        return [
            (None, {"fields": main}),
            ("Dates", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return [*self.readonly_fields, *MessageTypeDefinitionForm.Meta.fields]
        return self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj):
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return []
        return self.inlines

    def get_formset_kwargs(self, request: HttpRequest, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, TemplatePartInline):
            kwargs["initial"] = inline.initial_parts(obj)
        return kwargs

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return False  # mirrored from code; the page is view-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return False
        return super().has_delete_permission(request, obj)

    def has_test_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.test_send_messagetypedefinition")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Keep code-defined types listed (cheap, idempotent upsert).
        try:
            message_type_services.message_type_sync_code_defined()
        except Exception as exc:  # a broken plugin must not hide the list
            self.message_user(request, MSG_SYNC_FAILED % {"error": exc}, messages.ERROR)
        return super().changelist_view(request, extra_context)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        message_type_services.message_type_fill_optional_parts(message_type=form.instance)

    @admin.display(description="channels")
    def channels_display(self, obj: MessageTypeDefinition) -> str:
        return ", ".join(selectors.message_type_channels(definition=obj)) or "—"

    @admin.display(description="template files")
    def template_files(self, obj: MessageTypeDefinition) -> str:
        rows = []
        for channel in ChannelChoice.values:
            missing = set(selectors.message_type_missing_templates(definition=obj, channel=channel))
            for template_path in selectors.message_type_template_paths(
                definition=obj, channel=channel
            ):
                rows.append((template_path, "missing" if template_path in missing else "found"))
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td><code>{}</code></td><td>{}</td></tr>", rows),
        )

    # -- preview and test send -------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/test-send/",
                self.admin_site.admin_view(self.test_send_view),
                name="{}_{}_test_send".format(*info),
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_test_send"] = self.has_test_send_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = get_object_or_404(MessageTypeDefinition, pk=object_id)
        if not self.has_view_permission(request, definition):
            raise PermissionDenied
        form = PreviewForm(request.GET or None)
        preview = None
        if form.is_valid() or not request.GET:
            user = (form.cleaned_data.get("recipient") if form.is_bound else None) or request.user
            preview = preview_services.message_preview(
                definition=definition,
                recipient=preview_services.recipient_for_user(user),
                language=(form.cleaned_data.get("language") if form.is_bound else "") or "",
            )
        return _preview_response(self, request, definition, form, preview, definition)

    def test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = get_object_or_404(MessageTypeDefinition, pk=object_id)
        return _test_send_response(
            self,
            request,
            definition,
            lambda: preview_services.message_type_test_send(
                definition=definition, user=request.user, language=request.POST.get("language", "")
            ),
        )


# ----------------------------------------------------------------------------------------------
# Campaigns
# ----------------------------------------------------------------------------------------------


class CampaignRunInline(admin.TabularInline):
    """A campaign's runs with counts per status (read-only)."""

    model = CampaignRun
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    fields = [
        "due_at",
        "status",
        "progress",
        "total",
        "sent",
        "denied",
        "failed",
        "expired",
        "skipped",
        "unknown",
        "started_at",
        "finished_at",
        "deliveries_link",
    ]
    readonly_fields = fields
    ordering = ["-due_at"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, run: CampaignRun) -> str:
        return self.parent_admin.run_progress_html(run)

    @admin.display(description="log")
    def deliveries_link(self, run: CampaignRun) -> str:
        url = reverse("admin:campaigns_delivery_changelist") + f"?run__id__exact={run.pk}"
        return format_html('<a href="{}">deliveries</a>', url)

    def __init__(self, parent_model, admin_site, parent_admin=None):
        super().__init__(parent_model, admin_site)
        self.parent_admin = parent_admin


@admin.register(Campaign)
class CampaignAdmin(DispatchActionsMixin, admin.ModelAdmin):
    """Compose, preview, test, approve a campaign; its runs and their progress below."""

    form = CampaignForm
    list_display = [
        "name",
        "status",
        "message_type",
        "recipient_source",
        "schedule_display",
        "created_by",
        "approved_by",
        "updated_at",
    ]
    list_filter = ["status", "schedule_kind", "message_type"]
    search_fields = ["name"]
    list_select_related = ["message_type", "recipient_source", "created_by", "approved_by"]
    readonly_fields = [
        "status",
        "readiness",
        "created_by",
        "approved_by",
        "approved_at",
        "periodic_task",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "status", "readiness", "message_type", "recipient_source"]}),
        ("Message", {"fields": ["channels", "language", "context", "expiration_hours"]}),
        (
            "Schedule",
            {
                "fields": [
                    "schedule_kind",
                    "scheduled_at",
                    "crontab",
                    "interval_seconds",
                    "time_zone",
                    "exclude_previous_recipients",
                    "periodic_task",
                ]
            },
        ),
        (
            "Approval",
            {"fields": ["created_by", "approved_by", "approved_at", "created_at", "updated_at"]},
        ),
    ]
    actions = ["approve_selected"]
    change_form_template = "admin/campaigns/campaign/change_form.html"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related(*self.list_select_related)

    def get_inline_instances(self, request: HttpRequest, obj=None):
        if obj is None:
            return []
        return [CampaignRunInline(self.model, self.admin_site, parent_admin=self)]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is not None and obj.status not in campaign_services.EDITABLE:
            return [*self.readonly_fields, *CampaignForm.Meta.fields]
        return self.readonly_fields

    # -- permissions -----------------------------------------------------------------------

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.approve_campaign")

    def has_test_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.test_send_campaign")

    # -- saving through the services -------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Campaign, form, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in campaign_services.CONTENT_FIELDS}
        if not change:
            campaign_services.campaign_create(user=request.user, campaign=obj, **fields)
            return
        was_approved = obj.status == Campaign.Status.APPROVED
        campaign_services.campaign_update(campaign=obj, user=request.user, **fields)
        if was_approved and obj.status == Campaign.Status.DRAFT:
            self.message_user(request, MSG_BACK_TO_DRAFT % {"name": obj.name}, messages.WARNING)

    def _warn_unprovided(self, request: HttpRequest, obj: Campaign) -> None:
        names = preview_services.campaign_unprovided_variables(campaign=obj)
        if names:
            self.message_user(
                request, MSG_UNPROVIDED % {"names": ", ".join(names)}, messages.WARNING
            )

    def response_add(self, request: HttpRequest, obj: Campaign, post_url_continue=None):
        self._warn_unprovided(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Campaign):
        self._warn_unprovided(request, obj)
        return super().response_change(request, obj)

    # -- columns ---------------------------------------------------------------------------

    @admin.display(description="schedule")
    def schedule_display(self, obj: Campaign) -> str:
        kind = obj.schedule_kind
        if kind == Campaign.ScheduleKind.ONCE and obj.scheduled_at:
            return f"at {obj.scheduled_at:%Y-%m-%d %H:%M} UTC"
        if kind == Campaign.ScheduleKind.CRONTAB:
            return f"cron “{obj.crontab}” ({obj.time_zone})"
        if kind == Campaign.ScheduleKind.INTERVAL and obj.interval_seconds:
            return f"every {obj.interval_seconds} s"
        return obj.get_schedule_kind_display()

    @admin.display(description="ready to approve?")
    def readiness(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        problems = campaign_services.campaign_readiness_problems(campaign=obj)
        if not problems:
            return "Yes"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((p,) for p in problems))
        )

    # -- actions ---------------------------------------------------------------------------

    @admin.action(description="Approve selected campaigns", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset) -> None:
        approved = 0
        for campaign in queryset:
            try:
                campaign_services.campaign_approve(campaign=campaign, user=request.user)
                approved += 1
            except CampaignError as exc:
                self.message_user(request, exc.message, messages.ERROR)
        if approved:
            self.message_user(request, f"{approved} campaign(s) approved.", messages.SUCCESS)

    # -- extra views -----------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name

        def route(suffix: str, view, name: str):
            return path(
                f"<path:object_id>/{suffix}/",
                self.admin_site.admin_view(view),
                name=f"{info[0]}_{info[1]}_{name}",
            )

        return [
            *self.get_dispatch_urls(),
            route("approve", self.approve_view, "approve"),
            route("return-to-draft", self.return_to_draft_view, "return_to_draft"),
            route("preview", self.preview_view, "preview"),
            route("test-send", self.test_send_view, "test_send"),
            route("dry-run", self.dry_run_view, "dry_run"),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_approve"] = self.has_approve_permission(request)
        context["can_test_send"] = self.has_test_send_permission(request)
        context["dispatch_tools"] = self.get_dispatch_object_tools(request, obj) if obj else []
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _campaign(self, request: HttpRequest, object_id: str) -> Campaign:
        campaign = get_object_or_404(
            Campaign.objects.select_related("message_type", "recipient_source"), pk=object_id
        )
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._lifecycle_view(
            request,
            object_id,
            allowed=lambda campaign: self.has_approve_permission(request),
            service=campaign_services.campaign_approve,
            done=MSG_APPROVED,
        )

    def return_to_draft_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._lifecycle_view(
            request,
            object_id,
            allowed=lambda campaign: (
                self.has_approve_permission(request)
                or self.has_change_permission(request, campaign)
            ),
            service=campaign_services.campaign_return_to_draft,
            done=MSG_RETURNED_TO_DRAFT,
        )

    def _lifecycle_view(
        self,
        request: HttpRequest,
        object_id: str,
        *,
        allowed: Callable[[Campaign], bool],
        service: Callable[..., Any],
        done: str,
    ) -> HttpResponse:
        """POST only: check ``allowed`` on the server, call ``service``, report, go back."""
        campaign = self._campaign(request, object_id)
        if request.method == "POST":
            if not allowed(campaign):
                raise PermissionDenied
            try:
                service(campaign=campaign, user=request.user)
            except CampaignError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, done % {"name": campaign.name}, messages.SUCCESS)
        return HttpResponseRedirect(_change_url(campaign))

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        samples: list = []
        sample_error = ""
        try:
            samples = preview_services.campaign_sample_recipients(campaign=campaign, limit=10)
        except (ValidationError, CampaignError, LookupError) as exc:
            sample_error = f"The campaign's audience can't be listed: {exc}"
        by_key = {r.key: r for r in samples}
        form = PreviewForm(
            request.GET or None,
            sample_choices=[(r.key, r.email or r.key) for r in samples],
        )
        preview = None
        if form.is_valid() or not request.GET:
            cleaned = form.cleaned_data if form.is_bound else {}
            recipient = None
            if cleaned.get("recipient"):
                recipient = preview_services.recipient_for_user(cleaned["recipient"])
            elif cleaned.get("sample") in by_key:
                recipient = by_key[cleaned["sample"]]
            elif samples:
                recipient = samples[0]
            else:
                recipient = preview_services.recipient_for_user(request.user)
            preview = preview_services.campaign_preview(
                campaign=campaign, recipient=recipient, language=cleaned.get("language") or ""
            )
        return _preview_response(
            self, request, campaign, form, preview, campaign.message_type, sample_error
        )

    def test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        return _test_send_response(
            self,
            request,
            campaign,
            lambda: preview_services.campaign_test_send(
                campaign=campaign, user=request.user, language=request.POST.get("language", "")
            ),
        )

    def dry_run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        full = request.GET.get("full") == "1"
        sample_limit = None if full else DRY_RUN_SAMPLE
        report, error = None, ""
        try:
            report = campaign_dry_run(campaign=campaign, sample_limit=sample_limit)
        except (ValidationError, CampaignError) as exc:
            error = "; ".join(getattr(exc, "messages", None) or [str(exc)])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": campaign,
            "title": f"Dry run of “{campaign}”",
            "report": report,
            "error": error,
            "sample_limit": sample_limit,
            "full_url": request.path + "?full=1",
        }
        return TemplateResponse(request, "admin/campaigns/campaign/dry_run.html", context)


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def _preview_response(model_admin, request, obj, form, preview, definition, sample_error=""):
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": obj,
        "definition": definition,
        "title": f"Preview of “{obj}”",
        "form": form,
        "preview": preview,
        "sample_error": sample_error,
        "can_test_send": model_admin.has_test_send_permission(request),
        "test_send_url": reverse(
            f"admin:{obj._meta.app_label}_{obj._meta.model_name}_test_send", args=[obj.pk]
        ),
        "change_url": _change_url(obj),
    }
    return TemplateResponse(request, "admin/campaigns/preview.html", context)


def _test_send_response(model_admin, request: HttpRequest, obj, send) -> HttpResponse:
    """POST only, with the test-send permission checked here: send, report, go back."""
    if request.method == "POST":
        if not model_admin.has_test_send_permission(request):
            raise PermissionDenied
        _do_test_send(model_admin, request, send)
    return HttpResponseRedirect(_change_url(obj))


def _do_test_send(model_admin, request: HttpRequest, send) -> None:
    try:
        result = send()
    except CampaignError as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
        return
    text = {"address": result.address, "outcomes": _outcomes_text(result.outcomes)}
    if result.sent:
        model_admin.message_user(request, MSG_TEST_SENT % text, messages.SUCCESS)
    else:
        model_admin.message_user(request, MSG_TEST_NOT_SENT % text, messages.ERROR)
    if result.preview.missing:
        model_admin.message_user(
            request, MSG_MISSING % {"names": ", ".join(result.preview.missing)}, messages.WARNING
        )


# ----------------------------------------------------------------------------------------------
# Delivery log
# ----------------------------------------------------------------------------------------------


@admin.register(Delivery)
class DeliveryAdmin(ExportMixin, admin.ModelAdmin):
    """The delivery log: read-only, searchable, filterable, exportable (CSV streams)."""

    resource_classes = [DeliveryResource]
    formats = [CSV, XLSX]
    list_display = [
        "id",
        "email",
        "user_id",
        "campaign_display",
        "run",
        "channel",
        "status",
        "attempts",
        "short_reason",
        "updated_at",
    ]
    list_filter = [
        ("run__campaign", admin.RelatedFieldListFilter),
        "channel",
        "status",
        ("created_at", admin.DateFieldListFilter),
        ("run", admin.RelatedFieldListFilter),
    ]
    search_fields = ["email"]
    search_help_text = "An email address (or part of one), or a user id."
    list_select_related = ["run", "run__campaign"]
    show_full_result_count = False
    list_per_page = 100

    def get_queryset(self, request: HttpRequest):
        return selectors.delivery_log_queryset()

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(email__icontains=term)
        if term.isdigit():
            condition |= Q(user_id=int(term))
        return queryset.filter(condition), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.view_delivery")

    @admin.display(description="campaign", ordering="run__campaign__name")
    def campaign_display(self, obj: Delivery) -> str:
        return obj.run.campaign.name

    @admin.display(description="reason")
    def short_reason(self, obj: Delivery) -> str:
        return (obj.reason[:80] + "…") if len(obj.reason) > 80 else obj.reason

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        """CSV and XLSX go through :mod:`campaigns.exports` (streamed, constant memory) instead
        of tablib, which builds the whole file in memory."""
        if not isinstance(file_format, (CSV, XLSX)):
            return super()._do_file_export(file_format, request, queryset, export_form)
        if not self.has_export_permission(request):
            raise PermissionDenied
        return exports.export_response(
            resource=DeliveryResource(**self.get_export_resource_kwargs(request)),
            queryset=queryset,
            fields=self.get_export_resource_fields_from_form(export_form),
            file_format=file_format,
            filename=self.get_export_filename(request, queryset, file_format),
        )


admin.site.site_header = _("Campaigns")
admin.site.site_title = _("Campaigns admin")
