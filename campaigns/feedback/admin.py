"""Delivery feedback in the admin: the suppression list (search, export, add by hand, lift),
the events (read-only, unmatched ones included), bounces kept for review, and the statistics
pages (``admin/campaigns/deliveryevent/stats/`` and ``…/stats/campaign/<id>/``).

Registered by ``campaigns/admin/__init__.py`` importing this module.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template import engines
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import ngettext
from import_export import fields, resources
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from campaigns import exports
from campaigns.feedback import selectors, services
from campaigns.feedback.models import DeliveryEvent, Suppression, UnparsedBounce
from campaigns.models import Campaign, CampaignRun

TEMPLATE = Path(__file__).with_name("templates") / "stats.html"
RUNS_PER_PAGE = 50


def _short(text: str, size: int = 80) -> str:
    return (text[:size] + "…") if len(text) > size else text


# Suppressions -----------------------------------------------------------------------------


class SuppressionResource(resources.ModelResource):
    """The suppression list as exported (CSV/XLSX through campaigns.exports)."""

    created_by = fields.Field(attribute="created_by__username", column_name="created_by")
    lifted_by = fields.Field(attribute="lifted_by__username", column_name="lifted_by")
    source = fields.Field(attribute="source_event__source", column_name="source")

    class Meta:
        model = Suppression
        fields = (
            "address",
            "reason",
            "detail",
            "source",
            "created_at",
            "created_by",
            "lifted_at",
            "lifted_by",
            "lift_note",
        )
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("created_by", "lifted_by", "source_event")


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("lifted", "Lifted")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


class SuppressionAddForm(forms.ModelForm):
    """Suppress an address by hand (reason "manual")."""

    class Meta:
        model = Suppression
        fields = ("address", "detail")
        help_texts = {"detail": "Why (shown in the delivery log of every email denied)."}

    def clean_address(self) -> str:
        address = services.normalize_address(self.cleaned_data["address"])
        try:
            forms.EmailField().clean(address)
        except ValidationError:
            raise ValidationError(services.BAD_ADDRESS.format(address=address)) from None
        active = Suppression.objects.filter(address=address, lifted_at__isnull=True).first()
        if active is not None:
            raise ValidationError(f"Already suppressed: {active.get_reason_display()}.")
        return address


@admin.register(Suppression)
class SuppressionAdmin(ExportMixin, admin.ModelAdmin):
    """Addresses nothing is emailed to; lifting needs ``campaigns.lift_suppression``."""

    resource_classes = [SuppressionResource]
    formats = [CSV, XLSX]
    list_display = (
        "address",
        "reason",
        "short_detail",
        "state",
        "created_at",
        "lifted_at",
        "lifted_by",
    )
    list_filter = (ActiveFilter, "reason", ("created_at", admin.DateFieldListFilter))
    search_fields = ("address",)
    search_help_text = "An address, or part of one."
    list_select_related = ("lifted_by", "source_event")
    actions = ("lift_suppressions",)
    readonly_fields = (
        "address",
        "reason",
        "detail",
        "source_event_link",
        "created_at",
        "created_by",
        "lifted_at",
        "lifted_by",
        "lift_note",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SuppressionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_fields(self, request, obj=None):
        return ("address", "detail") if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        created, _ = services.suppression_add(
            address=form.cleaned_data["address"],
            reason=Suppression.Reason.MANUAL,
            detail=form.cleaned_data.get("detail", ""),
            by=request.user,
        )
        obj.pk = created.pk
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # lift instead: the record stays

    def has_lift_permission(self, request) -> bool:
        return request.user.has_perm(services.LIFT_PERMISSION)

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.view_suppression")

    @admin.display(description="detail")
    def short_detail(self, obj: Suppression) -> str:
        return _short(obj.detail)

    @admin.display(description="state", boolean=False, ordering="lifted_at")
    def state(self, obj: Suppression) -> str:
        return "active" if obj.active else "lifted"

    @admin.display(description="source event")
    def source_event_link(self, obj: Suppression) -> str:
        if obj.source_event_id is None:
            return "—"
        url = reverse("admin:campaigns_deliveryevent_change", args=[obj.source_event_id])
        return format_html('<a href="{}">{}</a>', url, obj.source_event)

    @admin.action(description="Lift selected suppressions", permissions=["lift"])
    def lift_suppressions(self, request: HttpRequest, queryset: QuerySet) -> None:
        try:
            count = services.suppressions_lift(
                queryset, by=request.user, note=f"lifted in the admin by {request.user}"
            )
        except PermissionDenied as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        text = ngettext("%d suppression lifted.", "%d suppressions lifted.", count) % count
        self.message_user(request, text, messages.SUCCESS)

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        """Streamed CSV/XLSX through :mod:`campaigns.exports` (constant memory)."""
        if not isinstance(file_format, CSV | XLSX):
            return super()._do_file_export(file_format, request, queryset, export_form)
        if not self.has_export_permission(request):
            raise PermissionDenied
        return exports.export_response(
            resource=SuppressionResource(**self.get_export_resource_kwargs(request)),
            queryset=queryset,
            fields=self.get_export_resource_fields_from_form(export_form),
            file_format=file_format,
            filename=self.get_export_filename(request, queryset, file_format),
            sheet="suppressions",
        )


# Events ------------------------------------------------------------------------------------


class MatchedFilter(admin.SimpleListFilter):
    title = "matched to a delivery"
    parameter_name = "matched"

    def lookups(self, request, model_admin):
        return [("yes", "Matched"), ("no", "Unmatched")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(delivery__isnull=False)
        if self.value() == "no":
            return queryset.filter(delivery__isnull=True)
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    """What ESPs and bounces reported, matched to deliveries or not."""

    list_display = (
        "received_at",
        "kind",
        "bounce_type",
        "recipient",
        "source",
        "delivery_link",
        "matched_by",
        "status_code",
        "short_description",
    )
    list_filter = (
        "kind",
        "bounce_type",
        MatchedFilter,
        "matched_by",
        "source",
        ("received_at", admin.DateFieldListFilter),
    )
    search_fields = ("recipient", "message_id")
    search_help_text = "An address (or part of one), or a message id."
    list_select_related = ("delivery",)
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = (
        "kind",
        "bounce_type",
        "recipient",
        "source",
        "delivery_link",
        "matched_by",
        "message_id",
        "esp_event_id",
        "status_code",
        "description",
        "reject_reason",
        "click_url",
        "user_agent",
        "occurred_at",
        "received_at",
        "raw_json",
    )
    fields = readonly_fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(recipient__icontains=term) | Q(message_id=term)), False

    @admin.display(description="delivery")
    def delivery_link(self, obj: DeliveryEvent) -> str:
        if obj.delivery_id is None:
            return "unmatched"
        url = reverse("admin:campaigns_delivery_change", args=[obj.delivery_id])
        return format_html('<a href="{}">#{}</a>', url, obj.delivery_id)

    @admin.display(description="description")
    def short_description(self, obj: DeliveryEvent) -> str:
        return _short(obj.description)

    @admin.display(description="raw event")
    def raw_json(self, obj: DeliveryEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.raw, indent=2, sort_keys=True))

    # Statistics pages --------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("stats/", wrap(self.stats_view), name="campaigns_feedback_stats"),
            path(
                "stats/campaign/<int:campaign_id>/",
                wrap(self.campaign_stats_view),
                name="campaigns_feedback_campaign_stats",
            ),
            *super().get_urls(),
        ]

    @staticmethod
    def can_see_stats(request: HttpRequest) -> bool:
        user = request.user
        return user.has_perm("campaigns.view_campaign") or user.has_perm(
            "campaigns.view_deliveryevent"
        )

    def _render(self, request: HttpRequest, **context: Any) -> HttpResponse:
        labels = [row["label"] for row in selectors.FeedbackStats(sent=0, counts={}).rows()]
        for line in context.get("lines", []):
            line["rows"] = [
                {**row, "percent": f"{row['rate']:.1%}" if row["rate"] is not None else ""}
                for row in line["stats"].rows()
            ]
        context = {
            **self.admin_site.each_context(request),
            "labels": labels,
            "overview": selectors.feedback_overview(),
            **context,
        }
        return HttpResponse(_stats_template().render(context, request))

    def stats_view(self, request: HttpRequest) -> HttpResponse:
        """Every campaign with its statistics, most recent first."""
        if not self.can_see_stats(request):
            raise PermissionDenied
        campaigns = Campaign.objects.order_by("-id").only("id", "name")
        page = Paginator(campaigns, RUNS_PER_PAGE).get_page(request.GET.get("page"))
        stats = selectors.campaigns_feedback_stats([c.pk for c in page])
        lines = [
            {
                "id": c.pk,
                "name": c.name,
                "url": reverse("admin:campaigns_feedback_campaign_stats", args=[c.pk]),
                "stats": stats[c.pk],
            }
            for c in page
        ]
        return self._render(request, title="Delivery feedback statistics", lines=lines, page=page)

    def campaign_stats_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        """One campaign: all its runs together, then each run."""
        if not self.can_see_stats(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        runs = CampaignRun.objects.filter(campaign=campaign).order_by("-due_at")
        page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
        stats = selectors.runs_feedback_stats([run.pk for run in page])
        lines = [
            {
                "id": "all",
                "name": "All runs",
                "url": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
                "stats": selectors.campaign_feedback_stats(campaign.pk),
            }
        ]
        lines += [
            {
                "id": run.pk,
                "name": f"{run.due_at:%Y-%m-%d %H:%M} ({run.get_status_display()})",
                "url": reverse("admin:campaigns_delivery_changelist") + f"?run__id__exact={run.pk}",
                "stats": stats[run.pk],
            }
            for run in page
        ]
        return self._render(
            request,
            title=f"Delivery feedback: {campaign.name}",
            campaign=campaign,
            lines=lines,
            page=page,
        )


@functools.cache
def _stats_template():
    return engines["django"].from_string(TEMPLATE.read_text(encoding="utf-8"))


# Bounces kept for review ------------------------------------------------------------------


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("no", "To review"), ("yes", "Reviewed")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(reviewed_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(reviewed_at__isnull=False)
        return queryset


@admin.register(UnparsedBounce)
class UnparsedBounceAdmin(ReadOnlyAdmin):
    """Messages of the bounce mailbox that were not understood, with the raw message."""

    list_display = ("received_at", "sender", "subject", "short_error", "mailbox", "reviewed_at")
    list_filter = (ReviewedFilter, ("received_at", admin.DateFieldListFilter))
    search_fields = ("sender", "subject", "message_id")
    actions = ("mark_reviewed",)
    fields = readonly_fields = (
        "received_at",
        "mailbox",
        "message_id",
        "sender",
        "subject",
        "error",
        "reviewed_at",
        "reviewed_by",
        "raw_message",
    )

    @admin.display(description="why")
    def short_error(self, obj: UnparsedBounce) -> str:
        return _short(obj.error)

    @admin.display(description="raw message")
    def raw_message(self, obj: UnparsedBounce) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.raw)

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.change_unparsedbounce")

    @admin.action(description="Mark selected as reviewed", permissions=["review"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = services.unparsed_bounce_review(queryset, by=request.user)
        self.message_user(request, f"{count} marked as reviewed.", messages.SUCCESS)
