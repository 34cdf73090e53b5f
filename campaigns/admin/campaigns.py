"""Campaigns: compose, preview, test, dry-run, approve; the runs and their progress below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.translation import ngettext_lazy

from campaigns.admin.previews import (
    campaign_preview,
    change_url,
    preview_response,
    test_send_response,
)
from campaigns.admin.runs import CampaignRunInline, DispatchActionsMixin
from campaigns.exceptions import CampaignError
from campaigns.forms import CampaignForm, PreviewForm
from campaigns.models import Campaign
from campaigns.services import campaigns as campaign_services
from campaigns.services import previews as preview_services
from campaigns.services.dry_run import campaign_dry_run

MSG_APPROVED = "Campaign “%(name)s” is approved."
MSG_WITHDRAWN = (
    "Campaign “%(name)s” was approved; this edit of its %(what)s sent it back to draft (it needs"
    " a new approval, and a schedule it had is deleted)."
)
LOG_APPROVED = "Approved content sha256:%(digest)s (approver: %(user)s)."
LOG_WITHDRAWN = "Approval withdrawn: %(user)s edited %(what)s; the approved content changed."
LOG_RETURNED = "Returned to draft by %(user)s (the approval is withdrawn)."
MSG_BACK_TO_DRAFT = "Campaign “%(name)s” was approved; your edit sent it back to draft."
MSG_RETURNED_TO_DRAFT = "Campaign “%(name)s” is a draft again."
MSG_APPROVED_COUNT = ngettext_lazy(
    "%(count)d campaign approved.", "%(count)d campaigns approved.", "count"
)
MSG_UNPROVIDED = (
    "The templates print %(names)s, which neither the campaign context nor its recipients"
    " provide: those would render blank."
)

#: Recipients a dry run checks unless the operator asks for the whole audience.
DRY_RUN_SAMPLE = 5000


def report_withdrawn_approvals(model_admin, request: HttpRequest, campaigns, *, what: str) -> None:
    """Tell the editor which approvals their edit withdrew; log it in each campaign's history."""
    for campaign in campaigns:
        text = {"name": campaign.name, "what": what, "user": request.user}
        model_admin.log_change(request, campaign, LOG_WITHDRAWN % text)
        model_admin.message_user(request, MSG_WITHDRAWN % text, messages.WARNING)


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
        "last_edited_by",
        "approved_by",
        "approved_at",
        "approved_digest",
        "approval_state",
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
            {
                "fields": [
                    "created_by",
                    "last_edited_by",
                    "approved_by",
                    "approved_at",
                    "approved_digest",
                    "approval_state",
                    "created_at",
                    "updated_at",
                ]
            },
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

    def has_preview_permission(self, request: HttpRequest) -> bool:
        """Preview and dry run (they show recipients' addresses and context)."""
        return request.user.has_perm("campaigns.preview_campaign")

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

    @admin.display(description="content now")
    def approval_state(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        digest = campaign_services.campaign_content_digest(campaign=obj)
        if not obj.approved_digest:
            return f"sha256:{digest} (not approved)"
        if obj.approved_digest == digest:
            return f"sha256:{digest} (what was approved)"
        return f"sha256:{digest} (changed since the approval: a run will not start)"

    # -- actions ---------------------------------------------------------------------------

    @admin.action(description="Approve selected campaigns", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset) -> None:
        approved = 0
        for campaign in queryset:
            try:
                campaign_services.campaign_approve(campaign=campaign, user=request.user)
            except CampaignError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            approved += 1
            self._log_approved(request, campaign)
        if approved:
            self.message_user(request, MSG_APPROVED_COUNT % {"count": approved}, messages.SUCCESS)

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
        context["can_preview"] = self.has_preview_permission(request)
        if obj is not None and context["can_approve"] and obj.status == Campaign.Status.DRAFT:
            # The approve button sends what the approver saw; a later change is refused.
            context["content_digest"] = campaign_services.campaign_content_digest(campaign=obj)
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
        def approve(*, campaign: Campaign, user) -> None:
            campaign_services.campaign_approve(
                campaign=campaign, user=user, digest=request.POST.get("digest", "")
            )
            self._log_approved(request, campaign)

        return self._lifecycle_view(
            request,
            object_id,
            allowed=lambda campaign: self.has_approve_permission(request),
            service=approve,
            done=MSG_APPROVED,
        )

    def _log_approved(self, request: HttpRequest, campaign: Campaign) -> None:
        text = {"digest": campaign.approved_digest, "user": request.user}
        self.log_change(request, campaign, LOG_APPROVED % text)

    def return_to_draft_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def return_to_draft(*, campaign: Campaign, user) -> None:
            campaign_services.campaign_return_to_draft(campaign=campaign, user=user)
            self.log_change(request, campaign, LOG_RETURNED % {"user": user})

        return self._lifecycle_view(
            request,
            object_id,
            allowed=lambda campaign: (
                self.has_approve_permission(request)
                or self.has_change_permission(request, campaign)
            ),
            service=return_to_draft,
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
        return HttpResponseRedirect(change_url(campaign))

    def _previewable(self, request: HttpRequest, object_id: str) -> Campaign:
        """The campaign, for a user who may preview and dry-run (not Auditors)."""
        campaign = self._campaign(request, object_id)
        if not self.has_preview_permission(request):
            raise PermissionDenied
        return campaign

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._previewable(request, object_id)
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
            preview = campaign_preview(
                campaign=campaign, recipient=recipient, language=cleaned.get("language") or ""
            )
        return preview_response(
            self, request, campaign, form, preview, campaign.message_type, sample_error
        )

    def test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        return test_send_response(
            self,
            request,
            campaign,
            lambda: preview_services.campaign_test_send(
                campaign=campaign, user=request.user, language=request.POST.get("language", "")
            ),
        )

    def dry_run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._previewable(request, object_id)
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
