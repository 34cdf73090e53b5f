"""The preview and test-send pages shared by the message type and campaign admins.

A preview shows any chosen user's address and context, so it needs a preview permission
(Operators and Approvers have it, Auditors don't), and it never carries a working unsubscribe
link: :class:`PlaceholderLinks` puts :func:`placeholder_unsubscribe_url` where each recipient's
signed link would be (a real send, and a test send to oneself, still sign theirs).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ace.message import Message
from campaigns.exceptions import CampaignError
from campaigns.messages import (
    CampaignMessageBuilder,
    Option,
    campaign_message_builder,
    definition_message_builder,
)
from campaigns.models import Campaign
from campaigns.resolvers import ResolvedRecipient
from campaigns.services import previews as preview_services
from campaigns.signing import unsubscribe_headers

MSG_TEST_SENT = "Test sent to %(address)s: %(outcomes)s."
MSG_TEST_NOT_SENT = "The test was not sent to %(address)s: %(outcomes)s."
MSG_MISSING = "Missing template variables (rendered blank): %(names)s."
#: The token of the placeholder link: not a signature, so the unsubscribe page refuses it.
PLACEHOLDER_TOKEN = "preview-placeholder"


def placeholder_unsubscribe_url() -> str:
    """Where a preview's unsubscribe link points: the real page, with a token that is invalid."""
    path = reverse("campaigns:unsubscribe", kwargs={"token": PLACEHOLDER_TOKEN})
    return settings.SITE_URL.rstrip("/") + path


class PlaceholderLinks:
    """Wraps a message builder: the same messages, with the placeholder unsubscribe link (in
    the context and the ``List-Unsubscribe`` headers) instead of the recipient's signed one."""

    def __init__(self, builder: CampaignMessageBuilder) -> None:
        self.builder = builder

    def build(self, recipient: ResolvedRecipient, **kwargs: Any) -> Message:
        message = self.builder.build(recipient, **kwargs)
        url = placeholder_unsubscribe_url()
        if "unsubscribe_url" in message.context:
            message.context = {**message.context, "unsubscribe_url": url}
        headers = dict(message.options.get(Option.HEADERS) or {})
        if "List-Unsubscribe" in headers:
            headers.update(unsubscribe_headers(url))
            message.options = {**message.options, Option.HEADERS: headers}
        return message


def campaign_preview(
    *, campaign: Campaign, recipient: ResolvedRecipient, language: str = ""
) -> preview_services.Preview:
    """``services.previews.campaign_preview`` with the placeholder unsubscribe link."""
    return preview_services.message_preview(
        definition=campaign.message_type,
        recipient=recipient,
        context=dict(campaign.context or {}),
        language=language or recipient.language or campaign.language,
        channels=campaign.channels,
        builder=PlaceholderLinks(campaign_message_builder(campaign=campaign)),  # type: ignore[arg-type]
    )


def message_type_preview(*, definition, recipient: ResolvedRecipient, language: str = ""):
    """``services.previews.message_preview`` (sample context) with the placeholder link."""
    builder = definition_message_builder(
        definition=definition, context=dict(definition.sample_context or {})
    )
    return preview_services.message_preview(
        definition=definition,
        recipient=recipient,
        language=language,
        builder=PlaceholderLinks(builder),  # type: ignore[arg-type]
    )


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
        "placeholder_unsubscribe_url": placeholder_unsubscribe_url(),
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
