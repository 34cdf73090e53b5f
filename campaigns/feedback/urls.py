"""django-anymail's tracking webhooks under ``/anymail/`` (``/anymail/<esp>/tracking/``, e.g.
``/anymail/postmark/tracking/``, and ``/anymail/mandrill/``), as in ``include("anymail.urls")``
but with two differences:

* only the **tracking** webhooks are mounted (nothing listens to inbound mail);
* a webhook is refused (403, nothing recorded) while ``ANYMAIL["WEBHOOK_SECRET"]`` is not set.
  Anymail itself only warns then and accepts anyone's posts, and a forged bounce would put any
  address on the suppression list. With the secret set, anymail checks the basic auth (and the
  ESP's signature where it has one) and refuses a bad one with 400.

Importing this module also connects the signal receivers (:mod:`campaigns.feedback.webhooks`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from anymail import urls as anymail_urls
from anymail.utils import get_anymail_setting
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import URLPattern, include, path
from django.views.decorators.csrf import csrf_exempt

from campaigns.feedback import webhooks  # noqa: F401  (connects the receivers)

NO_SECRET = (
    "Webhooks are off: set ANYMAIL_WEBHOOK_SECRET (user:password, also given to the ESP) "
    "to turn them on."
)


def webhook_secret_configured() -> bool:
    secret = get_anymail_setting("webhook_secret", default=[])
    if isinstance(secret, str):
        secret = [secret]
    return any(s for s in secret or [])


def require_webhook_secret(view: Callable) -> Callable:
    @functools.wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not webhook_secret_configured():
            return HttpResponseForbidden(NO_SECRET, content_type="text/plain")
        return view(request, *args, **kwargs)

    return csrf_exempt(guarded)


def _tracking_patterns() -> list[URLPattern]:
    patterns = []
    for pattern in anymail_urls.urlpatterns:
        name = pattern.name or ""
        if not name.endswith("_tracking_webhook"):
            continue
        patterns.append(
            URLPattern(
                pattern.pattern,
                require_webhook_secret(pattern.callback),
                pattern.default_args,
                pattern.name,
            )
        )
    return patterns


urlpatterns = [path("anymail/", include((_tracking_patterns(), "anymail")))]
