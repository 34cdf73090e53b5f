"""Policies: toggles that switch policy plugins on or off (globally or per message type), and
the opt-outs the opt-out policy reads."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import ngettext_lazy

from campaigns.forms import PolicyToggleForm
from campaigns.models import OptOut, PolicyToggle
from campaigns.services.optouts import optout_create
from campaigns.services.policies import policy_toggle_set

MSG_ENABLED = ngettext_lazy("%(count)d toggle enabled.", "%(count)d toggles enabled.", "count")
MSG_DISABLED = ngettext_lazy("%(count)d toggle disabled.", "%(count)d toggles disabled.", "count")

# Policy toggles -----------------------------------------------------------------------------


@admin.register(PolicyToggle)
class PolicyToggleAdmin(admin.ModelAdmin):
    """Switch policies on or off, globally or for one message type."""

    form = PolicyToggleForm
    list_display = ("policy", "scope", "enabled", "parameters_summary", "updated_at")
    list_filter = ("enabled", "policy", "message_type")
    search_fields = ("policy", "message_type__name")
    list_select_related = ("message_type",)
    actions = ("enable_toggles", "disable_toggles")

    @admin.display(description="Applies to", ordering="message_type")
    def scope(self, obj: PolicyToggle) -> str:
        return str(obj.message_type) if obj.message_type_id else "All message types"

    @admin.display(description="Parameters")
    def parameters_summary(self, obj: PolicyToggle) -> str:
        return json.dumps(obj.parameters, sort_keys=True) if obj.parameters else "—"

    def _set(self, request: HttpRequest, queryset: QuerySet, enabled: bool) -> None:
        changed, refused = 0, []
        for toggle in queryset.select_related("message_type"):
            try:
                policy_toggle_set(
                    policy=toggle.policy,
                    message_type=toggle.message_type,
                    enabled=enabled,
                    parameters=toggle.parameters,
                )
                changed += 1
            except ValidationError as exc:
                refused.append(f"{toggle}: {'; '.join(exc.messages)}")
        done = MSG_ENABLED if enabled else MSG_DISABLED
        self.message_user(request, done % {"count": changed}, messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description="Enable selected toggles", permissions=["change"])
    def enable_toggles(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, True)

    @admin.action(description="Disable selected toggles", permissions=["change"])
    def disable_toggles(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, False)


# Opt-outs -----------------------------------------------------------------------------------


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    """Unsubscribes; adding one by hand goes through the same service as the link."""

    list_display = ("email", "scope", "user", "created_at")
    list_filter = ("message_type",)
    search_fields = ("email", "user__username")
    list_select_related = ("message_type", "user")
    raw_id_fields = ("user",)
    fields = ("email", "message_type", "user", "created_at")
    readonly_fields = ("created_at",)

    @admin.display(description="From", ordering="message_type")
    def scope(self, obj: OptOut) -> str:
        return str(obj.message_type) if obj.message_type_id else "Everything"

    def get_readonly_fields(self, request: HttpRequest, obj: OptOut | None = None):
        # An opt-out is a record of the recipient's wish: delete it, don't rewrite it.
        if obj is not None:
            return ("email", "message_type", "user", "created_at")
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: OptOut, form: Any, change: bool) -> None:
        if change:
            return
        saved = optout_create(
            email=obj.email, message_type_id=obj.message_type_id, user_id=obj.user_id
        )
        obj.pk = saved.pk
        obj.email = saved.email
