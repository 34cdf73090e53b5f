"""Web Push subscription services: validate, register and remove a browser's subscription."""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from push_notifications.models import BROWSER_TYPES, WebPushDevice

from ace.utils import netguard

BROWSERS = {code.lower(): code for code, _ in BROWSER_TYPES}
MAX_ENDPOINT_LENGTH = 2048

NOT_AN_OBJECT = "The body must be a JSON object: PushSubscription.toJSON() plus a browser name."
ENDPOINT_REQUIRED = "endpoint is required (PushSubscription.endpoint)."
ENDPOINT_TOO_LONG = f"endpoint is longer than {MAX_ENDPOINT_LENGTH} characters."
ENDPOINT_NOT_HTTPS = "endpoint must be an https:// URL of a push service."
ENDPOINT_PRIVATE_HOST = "endpoint must not point at a private, loopback or reserved address."
ENDPOINT_CREDENTIALS = "endpoint must not contain a user name or password."
ENDPOINT_HOST_INVALID = (
    "endpoint's host is not a valid host name or IP address (push services use DNS names)."
)
ENDPOINT_UNRESOLVABLE = "endpoint's host name does not resolve to an address."
ENDPOINT_REFUSALS = {
    netguard.NOT_HTTPS: ENDPOINT_NOT_HTTPS,
    netguard.CREDENTIALS: ENDPOINT_CREDENTIALS,
    netguard.HOST_INVALID: ENDPOINT_HOST_INVALID,
    netguard.NOT_PUBLIC: ENDPOINT_PRIVATE_HOST,
    netguard.UNRESOLVABLE: ENDPOINT_UNRESOLVABLE,
}
KEYS_REQUIRED = "keys.p256dh and keys.auth are required (PushSubscription.toJSON().keys)."
P256DH_INVALID = "keys.p256dh must be a base64url P-256 public key (65 bytes, uncompressed)."
AUTH_INVALID = "keys.auth must be a base64url 16-byte authentication secret."
BROWSER_INVALID = "browser must be one of: {choices}."
NAME_TOO_LONG = "name is longer than 255 characters."

TEST_TITLE = "Test notification"
TEST_BODY = "Push notifications reach this device."
#: Seconds a push service may hold a test notification for an offline device.
TEST_TTL = 3600


@attrs.define(frozen=True)
class WebPushSubscription:
    """A validated browser push subscription (the parts a device row stores)."""

    endpoint: str
    p256dh: str
    auth: str
    browser: str
    name: str = ""


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _endpoint_errors(endpoint: Any) -> list[str]:
    if not isinstance(endpoint, str) or not endpoint.strip():
        return [ENDPOINT_REQUIRED]
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        return [ENDPOINT_TOO_LONG]
    # The server will POST to this URL: its host must be public in every spelling, and so must
    # every address it resolves to now (the channel checks again at each send: DNS can change).
    try:
        netguard.vet_url(
            endpoint,
            allow_loopback=bool(getattr(settings, "PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS", False)),
        )
    except netguard.DestinationRefused as refusal:
        return [ENDPOINT_REFUSALS[refusal.code]]
    return []


def push_subscription_parse(*, data: Any) -> WebPushSubscription:
    """Validate the JSON a browser sends (``PushSubscription.toJSON()`` + ``browser``).

    Raises:
        ValidationError: With a message per invalid field (``error_dict``).
    """
    if not isinstance(data, dict):
        raise ValidationError(NOT_AN_OBJECT)
    errors: dict[str, list[str]] = {}
    endpoint = data.get("endpoint")
    if endpoint_errors := _endpoint_errors(endpoint):
        errors["endpoint"] = endpoint_errors

    keys = data.get("keys")
    p256dh = keys.get("p256dh") if isinstance(keys, dict) else None
    auth = keys.get("auth") if isinstance(keys, dict) else None
    if not isinstance(p256dh, str) or not isinstance(auth, str) or not p256dh or not auth:
        errors["keys"] = [KEYS_REQUIRED]
    else:
        p256dh, auth = p256dh.strip().rstrip("="), auth.strip().rstrip("=")
        try:
            point = _b64url_decode(p256dh)
            if len(point) != 65:
                raise ValueError("wrong length")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except (ValueError, binascii.Error):
            errors["keys.p256dh"] = [P256DH_INVALID]
        try:
            if len(_b64url_decode(auth)) != 16:
                raise ValueError("wrong length")
        except (ValueError, binascii.Error):
            errors["keys.auth"] = [AUTH_INVALID]

    browser = data.get("browser")
    code = BROWSERS.get(browser.strip().lower()) if isinstance(browser, str) else None
    if code is None:
        errors["browser"] = [BROWSER_INVALID.format(choices=", ".join(sorted(BROWSERS)))]

    name = data.get("name") or ""
    if not isinstance(name, str) or len(name) > 255:
        errors["name"] = [NAME_TOO_LONG]

    if errors:
        raise ValidationError(errors)
    return WebPushSubscription(
        endpoint=endpoint, p256dh=p256dh, auth=auth, browser=code, name=name.strip()
    )


@transaction.atomic
def push_subscription_register(
    *, user: Any, subscription: WebPushSubscription
) -> tuple[WebPushDevice, bool]:
    """Store ``subscription`` as an active Web Push device of ``user``.

    A subscription belongs to one browser profile, so whoever registers it last owns it: rows of
    other users holding the same endpoint are removed (their notifications must not go on to a
    browser someone else now uses). Registering again refreshes the keys and reactivates it.

    Returns:
        The device, and whether it was created.
    """
    rows = list(
        WebPushDevice.objects.select_for_update()
        .filter(registration_id=subscription.endpoint)
        .order_by("id")
    )
    mine = [row for row in rows if row.user_id == user.pk]
    stale = [row.pk for row in rows if row.user_id != user.pk] + [row.pk for row in mine[1:]]
    if stale:
        WebPushDevice.objects.filter(pk__in=stale).delete()
    fields = {
        "p256dh": subscription.p256dh,
        "auth": subscription.auth,
        "browser": subscription.browser,
        "active": True,
    }
    if subscription.name:
        fields["name"] = subscription.name
    if mine:
        device = mine[0]
        for key, value in fields.items():
            setattr(device, key, value)
        device.save(update_fields=list(fields))
        return device, False
    device = WebPushDevice.objects.create(
        user=user, registration_id=subscription.endpoint, **fields
    )
    return device, True


def push_subscription_remove(*, user: Any, endpoint: str) -> int:
    """Remove ``user``'s devices with this endpoint (never another user's); the count removed."""
    deleted, _ = WebPushDevice.objects.filter(user=user, registration_id=endpoint).delete()
    return deleted


def push_test_send(*, devices: Iterable[WebPushDevice]) -> Counter[str]:
    """Send a test notification (the same JSON shape as campaign pushes) to each device.

    Goes through the push channel's session, so a device reported gone is deactivated here too.
    Returns counts by result: ``sent``, ``gone``, ``retry``, ``failed``.
    """
    from ace.channel.push_notification import PushNotificationChannel

    payload = json.dumps(
        {"title": TEST_TITLE, "body": TEST_BODY, "data": {"test": True}}, separators=(",", ":")
    ).encode()
    counts: Counter[str] = Counter()
    with PushNotificationChannel().open_session() as session:
        for device in devices:
            counts[session.send_to_device(device, payload, TEST_TTL).state] += 1
    return counts
