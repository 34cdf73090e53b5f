"""Device admin: django-push-notifications' device lists, listed and filterable per user.

The library registers its own ModelAdmins (``push_notifications`` comes before this app in
INSTALLED_APPS, so they exist when this module runs); they filter only by active/browser, so
each is replaced by a subclass that adds the user column and filter and searches by email.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from push_notifications.admin import DeviceAdmin, GCMDeviceAdmin, WebPushDeviceAdmin
from push_notifications.models import APNSDevice, GCMDevice, WebPushDevice, WNSDevice

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

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebPushDevice]:
        return super().get_queryset(request).select_related("user")

    @admin.display(description="push service")
    def push_service(self, obj: WebPushDevice) -> str:
        """The push service's host: which browser vendor delivers to this device."""
        return urlsplit(obj.registration_id or "").netloc


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
