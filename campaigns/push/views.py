"""JSON endpoints: a logged-in user registers/removes a Web Push subscription; the VAPID key.

The browser side is a few lines of JavaScript (see the README's Push section): fetch the VAPID
public key, ``registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey})``,
then POST ``{...subscription.toJSON(), browser: "firefox"}`` here with the ``X-CSRFToken``
header. CSRF protection is Django's middleware (these views are not exempt).
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods

from ace.channel.push_notification import configuration_problem, vapid_public_key
from campaigns.push.services import (
    push_subscription_parse,
    push_subscription_register,
    push_subscription_remove,
)

MAX_BODY_BYTES = 8 * 1024

LOGIN_REQUIRED = "Log in to manage your push subscriptions."
BODY_TOO_LARGE = f"The body is larger than {MAX_BODY_BYTES} bytes."
INVALID_JSON = "The body is not valid JSON."
ENDPOINT_REQUIRED = 'Send {"endpoint": "..."}: the subscription to remove.'
NOT_FOUND = "You have no push subscription with this endpoint."
NOT_CONFIGURED = "Web Push is not configured on this server."


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_http_methods(["POST", "DELETE"])
def subscriptions(request: HttpRequest) -> HttpResponse:
    """POST registers the browser's subscription for the user; DELETE removes one of theirs."""
    if not request.user.is_authenticated:
        return _error(LOGIN_REQUIRED, 401)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES or len(request.body) > MAX_BODY_BYTES:
        return _error(BODY_TOO_LARGE, 413)
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error(INVALID_JSON, 400)

    if request.method == "DELETE":
        endpoint = data.get("endpoint") if isinstance(data, dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            return _error(ENDPOINT_REQUIRED, 400)
        if push_subscription_remove(user=request.user, endpoint=endpoint):
            return HttpResponse(status=204)
        return _error(NOT_FOUND, 404)

    try:
        subscription = push_subscription_parse(data=data)
    except ValidationError as error:
        errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
        return JsonResponse({"errors": errors}, status=400)
    device, created = push_subscription_register(user=request.user, subscription=subscription)
    body = {
        "id": device.pk,
        "endpoint": device.registration_id,
        "browser": device.browser,
        "active": device.active,
    }
    return JsonResponse(body, status=201 if created else 200)


@require_GET
@cache_control(max_age=300)
def vapid_key(request: HttpRequest) -> JsonResponse:
    """The ``applicationServerKey`` browsers subscribe with (public, no login needed)."""
    if configuration_problem():
        return _error(NOT_CONFIGURED, 503)
    return JsonResponse({"publicKey": vapid_public_key()})
