"""Public views: the one-click unsubscribe endpoint (RFC 8058)."""

from __future__ import annotations

import functools

from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import engines
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from campaigns.models import MessageTypeDefinition
from campaigns.services.optouts import optout_create
from campaigns.signing import UnsubscribeRequest, read_unsubscribe_token

INVALID_LINK = "This unsubscribe link is invalid or was altered."
EXPIRED_TITLE = "Link expired"
EXPIRED_LINK = (
    "This unsubscribe link has expired. Please use the link in a more recent message, "
    "or contact us to stop receiving messages."
)
TEST_TITLE = "Test message"
TEST_LINK = "This was a test message: nothing was changed, nobody was unsubscribed."

# A page with a title and one paragraph, in the look of the other unsubscribe pages.
_NOTICE = (
    '{% extends "campaigns/unsubscribe/base.html" %}'
    "{% block title %}{{ title }}{% endblock %}"
    "{% block content %}<h1>{{ title }}</h1><p>{{ text }}</p>{% endblock %}"
)


@functools.cache
def _notice_template():
    return engines["django"].from_string(_NOTICE)


def _notice(request: HttpRequest, title: str, text: str, *, status: int) -> HttpResponse:
    """The page, or plain text for a mail client's one-click POST."""
    if request.method == "POST" and request.POST.get("List-Unsubscribe") == "One-Click":
        return HttpResponse(f"{text}\n", content_type="text/plain; charset=utf-8", status=status)
    html = _notice_template().render({"title": title, "text": text}, request)
    return HttpResponse(html, status=status)


@method_decorator([csrf_exempt, never_cache], name="dispatch")
class UnsubscribeView(View):
    """GET shows a confirmation page (link scanners must not unsubscribe anyone); POST
    unsubscribes, from a mail client's one-click request or from the confirmation form.

    CSRF-exempt because RFC 8058 one-click POSTs come from mail providers without a token;
    the authenticated token is what proves the request is legitimate.

    An expired link (``CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS``) answers 410 with a page saying
    so; the link of a test send answers that it was a test, and changes nothing.
    """

    http_method_names = ["get", "post"]

    def _read(self, request: HttpRequest, token: str) -> UnsubscribeRequest | HttpResponse:
        try:
            unsub = read_unsubscribe_token(token)
        except signing.SignatureExpired:
            return _notice(request, EXPIRED_TITLE, EXPIRED_LINK, status=410)
        except signing.BadSignature:
            return render(
                request, "campaigns/unsubscribe/invalid.html", {"error": INVALID_LINK}, status=400
            )
        if unsub.test:
            return _notice(request, TEST_TITLE, TEST_LINK, status=200)
        return unsub

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        unsub = self._read(request, token)
        if isinstance(unsub, HttpResponse):
            return unsub
        message_type = _message_type(unsub)
        return render(
            request,
            "campaigns/unsubscribe/confirm.html",
            {"email": unsub.email, "message_type": message_type, "unsub": unsub},
        )

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        unsub = self._read(request, token)
        if isinstance(unsub, HttpResponse):
            return unsub
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        everything = request.POST.get("scope") == "all" or unsub.message_type_id is None
        type_id = None if everything else unsub.message_type_id
        try:
            optout_create(email=unsub.email, message_type_id=type_id)
        except ValidationError as exc:
            # The message type was deleted since the mail went out: offer "everything".
            return render(
                request,
                "campaigns/unsubscribe/confirm.html",
                {
                    "email": unsub.email,
                    "message_type": None,
                    "unsub": unsub,
                    "error": exc.messages[0],
                },
                status=404,
            )
        if one_click:
            return HttpResponse("Unsubscribed.\n", content_type="text/plain; charset=utf-8")
        return render(
            request,
            "campaigns/unsubscribe/done.html",
            {"email": unsub.email, "message_type": _message_type(unsub) if type_id else None},
        )


def _message_type(unsub: UnsubscribeRequest) -> MessageTypeDefinition | None:
    if unsub.message_type_id is None:
        return None
    return MessageTypeDefinition.objects.filter(pk=unsub.message_type_id).first()
