"""Sending a campaign from the admin: schedule, pause, resume, cancel, resend unknown, and the
runs with their live progress.

``CampaignAdmin(DispatchActionsMixin, admin.ModelAdmin)`` (campaigns/admin/campaigns.py) gets
from here:

* admin actions on the change list, each checking its permission on the server
  (``campaigns.schedule_campaign`` for schedule/pause/resume/cancel,
  ``campaigns.resend_unknown_campaign`` for resending deliveries left unknown by a crash);
* the same operations as buttons on a campaign's page (``get_dispatch_object_tools``), posted
  to views from ``get_dispatch_urls``;
* a JSON progress endpoint (``<id>/progress/``, needs ``view_campaign``) polled every two
  seconds by ``static/campaigns/admin/dispatch_progress.js``, which updates each run's
  progress bar, messages per minute and ETA in the runs table while a run is unfinished;
* schedule clean-up when a campaign is deleted;
* :class:`CampaignRunInline`, the runs table with a progress cell per run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import ngettext_lazy

from campaigns import services
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignRun, Delivery

MSG_SCHEDULED = "“%(name)s” is scheduled."
MSG_STARTED = "“%(name)s” is being sent now."
# The plural form follows the number named last (e.g. MSG_PAUSED % {"name": ..., "runs": 3}).
MSG_PAUSED = ngettext_lazy(
    "“%(name)s” is paused (%(runs)d run paused).",
    "“%(name)s” is paused (%(runs)d runs paused).",
    "runs",
)
MSG_RESUMED = ngettext_lazy(
    "“%(name)s” is resumed (%(runs)d run resumed).",
    "“%(name)s” is resumed (%(runs)d runs resumed).",
    "runs",
)
MSG_CANCELLED = ngettext_lazy(
    "“%(name)s” is cancelled (%(runs)d run cancelled).",
    "“%(name)s” is cancelled (%(runs)d runs cancelled).",
    "runs",
)
MSG_RESENT = ngettext_lazy(
    "%(count)d unknown delivery of “%(name)s” will be resent.",
    "%(count)d unknown deliveries of “%(name)s” will be resent.",
    "count",
)
MSG_NOTHING_TO_RESEND = "“%(name)s” has no unknown deliveries in a finished run."
MSG_COUNT = ngettext_lazy(
    "%(count)d of %(total)d campaign: %(what)s.",
    "%(count)d of %(total)d campaigns: %(what)s.",
    "total",
)

#: How often the change page polls the progress endpoint (milliseconds).
PROGRESS_POLL_MS = 2000

UNFINISHED_RUN = Q(status__in=CampaignRun.UNFINISHED)


def _errors(exc: ValidationError | CampaignError) -> str:
    if isinstance(exc, CampaignError):
        return exc.message
    return "; ".join(exc.messages)


def _schedule(campaign: Campaign, user: Any) -> str:
    services.campaign_schedule(campaign=campaign)
    now = campaign.schedule_kind == Campaign.ScheduleKind.NOW
    return (MSG_STARTED if now else MSG_SCHEDULED) % {"name": campaign.name}


def _pause(campaign: Campaign, user: Any) -> str:
    runs = services.campaign_pause(campaign=campaign)
    return MSG_PAUSED % {"name": campaign.name, "runs": runs}


def _resume(campaign: Campaign, user: Any) -> str:
    runs = services.campaign_resume(campaign=campaign)
    return MSG_RESUMED % {"name": campaign.name, "runs": runs}


def _cancel(campaign: Campaign, user: Any) -> str:
    runs = services.campaign_cancel(campaign=campaign)
    return MSG_CANCELLED % {"name": campaign.name, "runs": runs}


def _resend_unknown(campaign: Campaign, user: Any) -> str:
    count = 0
    for run in campaign.runs.filter(unknown__gt=0).exclude(UNFINISHED_RUN):
        count += services.run_resend_unknown(run=run, user=user)
    if not count:
        raise CampaignError(MSG_NOTHING_TO_RESEND % {"name": campaign.name})
    return MSG_RESENT % {"count": count, "name": campaign.name}


#: Operation name -> (label, permission, service call). The permission is a ``has_<name>_
#: permission`` method below; every view and action checks it before calling the service.
OPERATIONS: dict[str, tuple[str, str, Callable[[Campaign, Any], str]]] = {
    "schedule": ("Schedule", "schedule", _schedule),
    "pause": ("Pause", "schedule", _pause),
    "resume": ("Resume", "schedule", _resume),
    "cancel": ("Cancel", "schedule", _cancel),
    "resend_unknown": ("Resend unknown", "resend_unknown", _resend_unknown),
}
#: Campaign states in which each operation's button is shown.
OFFERED: dict[str, tuple[str, ...]] = {
    "schedule": (Campaign.Status.APPROVED,),
    "pause": (Campaign.Status.SCHEDULED, Campaign.Status.RUNNING),
    "resume": (Campaign.Status.PAUSED,),
    "cancel": (
        Campaign.Status.APPROVED,
        Campaign.Status.SCHEDULED,
        Campaign.Status.RUNNING,
        Campaign.Status.PAUSED,
    ),
}


def eta_text(seconds: int | None) -> str:
    """``None`` -> "—", 75 -> "1 min 15 s" (the script formats the same way)."""
    if seconds is None:
        return "—"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


class DispatchActionsMixin:
    """Admin actions, buttons, views and live progress for sending campaigns."""

    dispatch_actions: tuple = ()  # added by get_actions below, filtered by permission

    # -- permissions -------------------------------------------------------------------------

    def has_schedule_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.schedule_campaign")

    def has_resend_unknown_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.resend_unknown_campaign")

    def _allowed(self, request: HttpRequest, operation: str) -> bool:
        return getattr(self, f"has_{OPERATIONS[operation][1]}_permission")(request)

    # -- actions on the change list ----------------------------------------------------------

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)  # type: ignore[misc]
        popup = IS_POPUP_VAR in request.POST or IS_POPUP_VAR in request.GET
        if self.actions is None or popup:  # type: ignore[attr-defined]
            return actions
        for name in OPERATIONS:
            func = getattr(type(self), f"{name}_selected")
            if all(
                getattr(self, f"has_{perm}_permission")(request)
                for perm in getattr(func, "allowed_permissions", ())
            ):
                actions[f"{name}_selected"] = (
                    func,
                    f"{name}_selected",
                    func.short_description,
                )
        return actions

    def _run_action(self, request: HttpRequest, queryset: QuerySet, operation: str) -> None:
        if not self._allowed(request, operation):
            raise PermissionDenied
        done = 0
        campaigns = list(queryset)
        for campaign in campaigns:
            try:
                OPERATIONS[operation][2](campaign, request.user)
                done += 1
            except (CampaignError, ValidationError) as exc:
                self.message_user(request, f"{campaign}: {_errors(exc)}", messages.ERROR)  # type: ignore[attr-defined]
        if done:
            what = OPERATIONS[operation][0].lower()
            self.message_user(  # type: ignore[attr-defined]
                request,
                MSG_COUNT % {"count": done, "total": len(campaigns), "what": what},
                messages.SUCCESS,
            )

    @admin.action(description="Schedule selected campaigns", permissions=["schedule"])
    def schedule_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_action(request, queryset, "schedule")

    @admin.action(description="Pause selected campaigns", permissions=["schedule"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_action(request, queryset, "pause")

    @admin.action(description="Resume selected campaigns", permissions=["schedule"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_action(request, queryset, "resume")

    @admin.action(description="Cancel selected campaigns", permissions=["schedule"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_action(request, queryset, "cancel")

    @admin.action(
        description="Resend deliveries left unknown by a crash", permissions=["resend_unknown"]
    )
    def resend_unknown_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_action(request, queryset, "resend_unknown")

    # -- views and buttons on the campaign page ----------------------------------------------

    def get_dispatch_urls(self) -> list:
        info = f"{self.opts.app_label}_{self.opts.model_name}"  # type: ignore[attr-defined]
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/progress/",
                wrap(self.dispatch_progress_view),
                name=f"{info}_progress",
            ),
            path(
                "<path:object_id>/dispatch/<str:operation>/",
                wrap(self.dispatch_operation_view),
                name=f"{info}_dispatch",
            ),
        ]

    def get_dispatch_object_tools(self, request: HttpRequest, obj: Campaign) -> list[dict]:
        info = f"admin:{obj._meta.app_label}_{obj._meta.model_name}_dispatch"
        tools = []
        for operation, (label, _perm, _call) in OPERATIONS.items():
            if not self._allowed(request, operation):
                continue
            if operation == "resend_unknown":
                offered = obj.runs.filter(unknown__gt=0).exclude(UNFINISHED_RUN).exists()
            else:
                offered = obj.status in OFFERED[operation]
            if offered:
                url = reverse(info, args=[obj.pk, operation])
                tools.append({"url": url, "label": label, "method": "post"})
        return tools

    def dispatch_operation_view(
        self, request: HttpRequest, object_id: str, operation: str
    ) -> HttpResponse:
        """POST: run one operation on one campaign, then back to its page."""
        campaign = get_object_or_404(Campaign, pk=object_id)
        change_url = reverse(
            f"admin:{campaign._meta.app_label}_{campaign._meta.model_name}_change",
            args=[campaign.pk],
        )
        if operation not in OPERATIONS:
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(change_url)
        if not self._allowed(request, operation):
            raise PermissionDenied
        try:
            message = OPERATIONS[operation][2](campaign, request.user)
        except (CampaignError, ValidationError) as exc:
            self.message_user(request, _errors(exc), messages.ERROR)  # type: ignore[attr-defined]
        else:
            self.message_user(request, message, messages.SUCCESS)  # type: ignore[attr-defined]
        return HttpResponseRedirect(change_url)

    def dispatch_progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The campaign's status and its runs' progress (JSON; needs view permission)."""
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.has_view_permission(request, campaign):  # type: ignore[attr-defined]
            raise PermissionDenied
        runs = campaign.runs.order_by("-due_at")[:20]
        return JsonResponse(
            {
                "campaign": {"id": campaign.pk, "status": campaign.status},
                "runs": [services.run_progress(run=run) for run in runs],
                "poll_ms": PROGRESS_POLL_MS,
            }
        )

    def run_progress_html(self, run: CampaignRun) -> str:
        """A run's progress cell: a bar, counts, messages per minute and an ETA, refreshed by
        the change page's script while the run is unfinished."""
        progress = services.run_progress(run=run)
        url = reverse(
            f"admin:{Campaign._meta.app_label}_{Campaign._meta.model_name}_progress",
            args=[run.campaign_id],
        )
        eta = progress["eta_seconds"]
        return format_html(
            '<span class="dispatch-progress" data-run="{}" data-url="{}" data-finished="{}">'
            '<progress value="{}" max="100" style="width: 10em"></progress> '
            '<span class="dispatch-progress-text">{}% ({} / {}) · {} sent/min · ETA {}</span>'
            "</span>",
            run.pk,
            url,
            "1" if progress["finished"] else "0",
            progress["percent"],
            progress["percent"],
            progress["done"],
            progress["total"],
            progress["sent_per_minute"],
            eta_text(eta),
        )

    @property
    def media(self) -> forms.Media:
        return super().media + forms.Media(js=["campaigns/admin/dispatch_progress.js"])  # type: ignore[misc]

    # -- deleting a campaign removes its schedule --------------------------------------------

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        services.campaign_schedule_delete(campaign=obj)
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for campaign in queryset:
            services.campaign_schedule_delete(campaign=campaign)
        super().delete_queryset(request, queryset)  # type: ignore[misc]


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
        *(status.value for status in Delivery.TERMINAL),  # the run's counter of each
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
