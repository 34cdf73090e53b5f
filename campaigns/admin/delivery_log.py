"""The delivery log: read-only, searchable, filterable, exportable (CSV and XLSX stream)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from campaigns import exports, selectors
from campaigns.models import Delivery
from campaigns.resources import DeliveryResource


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
