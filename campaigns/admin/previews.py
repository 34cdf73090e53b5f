"""The preview and test-send pages shared by the message type and campaign admins."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from campaigns.exceptions import CampaignError

MSG_TEST_SENT = "Test sent to %(address)s: %(outcomes)s."
MSG_TEST_NOT_SENT = "The test was not sent to %(address)s: %(outcomes)s."
MSG_MISSING = "Missing template variables (rendered blank): %(names)s."


def outcomes_text(outcomes: list) -> str:
    if not outcomes:
        return "no channel was tried"
    return "; ".join(
        f"{o.channel_type.value} {o.status.value}" + (f" ({o.reason})" if o.reason else "")
        for o in outcomes
    )


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def preview_response(model_admin, request, obj, form, preview, definition, sample_error=""):
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
        "change_url": change_url(obj),
    }
    return TemplateResponse(request, "admin/campaigns/preview.html", context)


def test_send_response(model_admin, request: HttpRequest, obj, send) -> HttpResponse:
    """POST only, with the test-send permission checked here: send, report, go back."""
    if request.method == "POST":
        if not model_admin.has_test_send_permission(request):
            raise PermissionDenied
        _do_test_send(model_admin, request, send)
    return HttpResponseRedirect(change_url(obj))


def _do_test_send(model_admin, request: HttpRequest, send) -> None:
    try:
        result = send()
    except CampaignError as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
        return
    text = {"address": result.address, "outcomes": outcomes_text(result.outcomes)}
    if result.sent:
        model_admin.message_user(request, MSG_TEST_SENT % text, messages.SUCCESS)
    else:
        model_admin.message_user(request, MSG_TEST_NOT_SENT % text, messages.ERROR)
    if result.preview.missing:
        model_admin.message_user(
            request, MSG_MISSING % {"names": ", ".join(result.preview.missing)}, messages.WARNING
        )
