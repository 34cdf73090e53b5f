"""Device admin: django-push-notifications' device lists, listed and filterable per user.

The library registers its own ModelAdmins (``push_notifications`` comes before this app in
INSTALLED_APPS, so they exist when this module runs); they filter only by active/browser, so
each is replaced by a subclass that adds the user column and filter and searches by email.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from push_notifications.admin import DeviceAdmin, GCMDeviceAdmin, WebPushDeviceAdmin
from push_notifications.models import APNSDevice, GCMDevice, WebPushDevice, WNSDevice

from ace.channel.push_notification import configuration_problem
from campaigns.push.services import push_test_send

#: Sending a test notification reaches real people's devices: operators' test-send right.
TEST_SEND_PERMISSION = "campaigns.test_send_messagetypedefinition"
#: Lists only the users who have a device of that kind, not every user of the site.
USER_FILTER = ("user", admin.RelatedOnlyFieldListFilter)
USER_SEARCH = ("user__username", "user__email")


def _replace(model: type, admin_class: type[admin.ModelAdmin]) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


class PushWebPushDeviceAdmin(WebPushDeviceAdmin):
    """Web Push subscriptions (one per browser), grouped and filterable by user."""

    list_display = ("__str__", "user", "browser", "push_service", "active", "date_created")
    list_filter = (USER_FILTER, "active", "browser")
    search_fields = ("name", "registration_id", *USER_SEARCH)
    ordering = ("user", "-date_created")
    list_select_related = ("user",)
    # The library's "send test message" pushes plain text through its own sender; this one
    # sends the campaign JSON through the push channel (and deactivates gone devices).
    actions = ("send_test_notification", "enable", "disable")

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebPushDevice]:
        return super().get_queryset(request).select_related("user")

    @admin.display(description="push service")
    def push_service(self, obj: WebPushDevice) -> str:
        """The push service's host: which browser vendor delivers to this device."""
        return urlsplit(obj.registration_id or "").netloc

    def has_test_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(TEST_SEND_PERMISSION)

    @admin.action(description="Send a test notification", permissions=["test_send"])
    def send_test_notification(self, request: HttpRequest, queryset: QuerySet) -> None:
        problem = configuration_problem()
        if problem:
            self.message_user(request, f"Web Push is not configured: {problem}", messages.ERROR)
            return
        counts = push_test_send(devices=queryset.filter(active=True))
        summary = ", ".join(f"{state}: {count}" for state, count in sorted(counts.items()))
        level = messages.SUCCESS if counts["sent"] and len(counts) == 1 else messages.WARNING
        self.message_user(request, f"Test notification: {summary or 'no active device'}.", level)


class PushGCMDeviceAdmin(GCMDeviceAdmin):
    """FCM devices, filterable by user."""

    list_filter = (USER_FILTER, "active", "cloud_message_type")
    search_fields = ("name", "device_id", *USER_SEARCH)
    list_select_related = ("user",)


class PushDeviceAdmin(DeviceAdmin):
    """APNs and WNS devices, filterable by user."""

    list_filter = (USER_FILTER, "active")
    search_fields = ("name", "device_id", *USER_SEARCH)
    list_select_related = ("user",)


_replace(WebPushDevice, PushWebPushDeviceAdmin)
_replace(GCMDevice, PushGCMDeviceAdmin)
_replace(APNSDevice, PushDeviceAdmin)
_replace(WNSDevice, PushDeviceAdmin)
