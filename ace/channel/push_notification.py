"""
:mod:`ace.channel.push_notification` delivers ``ChannelType.PUSH`` messages as Web Push
notifications to every active device of the recipient.

Devices are django-push-notifications' ``WebPushDevice`` rows (one per browser subscription, per
user, found by ``message.recipient.lms_user_id``). Each notification is encrypted for its
subscription (RFC 8291, aes128gcm) and carries a VAPID signature (RFC 8292), both made by
pywebpush, the library django-push-notifications itself sends with. The channel calls pywebpush
directly rather than ``WebPushDevice.send_message`` because that helper drops the push service's
status code and ``Retry-After`` header, which are what tell "gone" from "try later" from "broken".

What happens to one message (one recipient, all their devices):

- no active device: :class:`~ace.errors.RecipientAddressMissingError` (reported as "no address");
- a device the push service reports gone (404/410) is deactivated; if every device was gone, the
  recipient has no address any more (:class:`~ace.errors.RecipientAddressMissingError`);
- at least one device accepted it: delivered; the other devices' failures are only logged (a
  retry would notify the devices that already got it a second time);
- nothing accepted and some device's request went out but got no answer (read timeout,
  connection closed while waiting): :class:`~ace.errors.DeliveryOutcomeUnknownError` -- that
  device may have been notified, so the message is not retried automatically;
- nothing accepted and some device answered 429/5xx or could not be reached:
  :class:`~ace.errors.RecoverableChannelDeliveryError` at the latest ``Retry-After`` (or
  ``ACE_CHANNEL_PUSH_RETRY_DELAY`` seconds);
- otherwise :class:`~ace.errors.FatalChannelDeliveryError` with every device's reply.

Endpoints are URLs that browsers handed in, so the requests go through
:class:`ace.utils.http.GuardedSession`: each endpoint's host is resolved when it is sent to and
must be public (:mod:`ace.utils.netguard`; refused, the device fails at once with the reason and
nothing is connected to), the connection goes to the address that was checked, redirects are not
followed (a 3xx fails that device), and only a reply's status line is kept, never its body.
``PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS`` (tests only) also allows endpoints on loopback.

Settings: ``PUSH_NOTIFICATIONS_SETTINGS["WP_PRIVATE_KEY"]`` and ``["WP_CLAIMS"]["sub"]`` (filled
from the ``VAPID_PRIVATE_KEY`` / ``VAPID_SUBJECT`` environment variables), ``["WP_ERROR_TIMEOUT"]``
(seconds per request), ``ACE_CHANNEL_PUSH_TTL`` and ``ACE_CHANNEL_PUSH_RETRY_DELAY``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import requests
from cryptography.hazmat.primitives import serialization
from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher, WebPushException

from ace.channel import Channel, ChannelSession, ChannelType
from ace.errors import (
    ChannelError,
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.utils.http import (
    DestinationRefusedError,
    GuardedSession,
    request_may_have_arrived,
    status_line,
)
from ace.utils.netguard import DestinationRefused, check_url_form

if TYPE_CHECKING:
    from push_notifications.models import WebPushDevice

    from ace.message import Message

log = logging.getLogger(__name__)

#: RFC 8291 section 4: a push message body is at most 4096 octets, which leaves 3993 octets of
#: plaintext in one aes128gcm record.
MAX_PAYLOAD_BYTES = 3993
#: RFC 8292 section 2: a VAPID token must expire within 24 hours; sign for 12, renew after 11.
VAPID_TOKEN_LIFETIME = 12 * 3600
VAPID_TOKEN_RENEW_MARGIN = 3600

NO_DEVICE = "user {user_id} has no active push device"
NO_USER_ID = "the recipient has no lms_user_id, so no push device can be looked up"
ALL_GONE = "every push device of user {user_id} is gone ({details})"
EMPTY_TITLE = "the push notification's title is empty (check title.txt)"
PAYLOAD_TOO_LARGE = (
    "the push notification is {size} bytes of JSON; Web Push carries at most {limit} "
    "(shorten title.txt/body.txt)"
)


# Configuration
# ------------------------------------------------------------------------------


def _push_settings() -> dict[str, Any]:
    # Read at call time (not at import, as django-push-notifications does) so that settings
    # overrides and environment changes between processes are honoured.
    return dict(getattr(settings, "PUSH_NOTIFICATIONS_SETTINGS", None) or {})


def load_vapid_key(value: str) -> Vapid:
    """Parse a VAPID private key: base64url raw (32 bytes) or DER, PEM text, or a PEM file path.

    Raises:
        ValueError: If the value is none of these (the message never contains the key).
    """
    value = (value or "").strip()
    if not value:
        raise ValueError("the key is empty")
    try:
        if value.startswith("-----BEGIN"):
            return Vapid.from_pem(value.encode())
        # Only an existing file: py_vapid's from_file *creates* a key when the file is missing.
        if os.sep in value and os.path.isfile(value):
            return Vapid.from_file(private_key_file=value)
        return Vapid.from_string(private_key=value)
    except Exception as exc:  # the parsers raise binascii/ValueError/TypeError/Unsupported...
        raise ValueError(f"not a P-256 private key ({type(exc).__name__})") from None


def configuration_problem() -> str:
    """Why Web Push cannot be sent with the current settings, or ``""`` when it can."""
    if not apps.is_installed("push_notifications"):
        return "'push_notifications' is not in INSTALLED_APPS"
    conf = _push_settings()
    key = conf.get("WP_PRIVATE_KEY")
    if not key:
        return "VAPID_PRIVATE_KEY is not set (PUSH_NOTIFICATIONS_SETTINGS['WP_PRIVATE_KEY'])"
    try:
        load_vapid_key(key)
    except ValueError as exc:
        return f"VAPID_PRIVATE_KEY cannot be used: {exc}"
    subject = (conf.get("WP_CLAIMS") or {}).get("sub") or ""
    if not subject:
        return "VAPID_SUBJECT is not set (PUSH_NOTIFICATIONS_SETTINGS['WP_CLAIMS']['sub'])"
    if not subject.startswith(("mailto:", "https://")):
        return f"VAPID_SUBJECT must be a mailto: or https: URL (RFC 8292), not {subject!r}"
    return ""


def vapid_public_key() -> str:
    """The VAPID public key as browsers want it for ``applicationServerKey`` (base64url, no pad).

    Raises:
        ValueError: If the private key is missing or unreadable.
    """
    vapid = load_vapid_key(_push_settings().get("WP_PRIVATE_KEY") or "")
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Delivery
# ------------------------------------------------------------------------------


@attrs.define
class DeviceResult:
    """What the push service said for one device."""

    device_id: int
    state: str  # "sent" | "gone" | "retry" | "unknown" (sent, no answer) | "failed"
    detail: str = ""
    retry_at: datetime | None = None


def parse_retry_after(value: str | None, *, now: datetime, default: timedelta) -> datetime:
    """The time a ``Retry-After`` header (seconds or an HTTP date) asks for; ``now + default``
    when it is missing, unreadable or in the past."""
    if value:
        value = value.strip()
        if value.isdigit():
            return now + timedelta(seconds=int(value))
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when > now:
                return when
    return now + default


def build_payload(message: Message, rendered_message: Any) -> bytes:
    """The JSON a service worker receives: ``title``, ``body`` and the message's identity.

    Raises:
        FatalChannelDeliveryError: Empty title, or too large for one Web Push message.
    """
    title = str(getattr(rendered_message, "title", "") or "").strip()
    body = str(getattr(rendered_message, "body", "") or "").strip()
    if not title:
        raise FatalChannelDeliveryError(EMPTY_TITLE)
    data = {
        "app_label": message.app_label,
        "name": message.name,
        "message_uuid": str(message.uuid),
        "send_uuid": str(message.send_uuid) if message.send_uuid else None,
    }
    payload = json.dumps(
        {"title": title, "body": body, "data": data}, ensure_ascii=False, separators=(",", ":")
    ).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise FatalChannelDeliveryError(
            PAYLOAD_TOO_LARGE.format(size=len(payload), limit=MAX_PAYLOAD_BYTES)
        )
    return payload


class PushNotificationSession(ChannelSession):
    """Delivers many push messages with one HTTP connection pool and one VAPID key.

    Devices of every recipient in a ``deliver_many`` call are loaded in one query, and the
    VAPID token of each push service is signed once and reused until it nears expiry.
    """

    def __init__(self, channel: PushNotificationChannel) -> None:
        super().__init__(channel)
        conf = _push_settings()
        self.problem = configuration_problem()
        self.vapid: Vapid | None = None if self.problem else load_vapid_key(conf["WP_PRIVATE_KEY"])
        self.subject: str = (conf.get("WP_CLAIMS") or {}).get("sub") or ""
        self.timeout = float(conf.get("WP_ERROR_TIMEOUT") or 10)
        self.default_ttl = int(getattr(settings, "ACE_CHANNEL_PUSH_TTL", 24 * 3600))
        self.retry_delay = timedelta(
            seconds=int(getattr(settings, "ACE_CHANNEL_PUSH_RETRY_DELAY", 60))
        )
        # Endpoints are URLs browsers handed in: vetted and pinned at send time, no redirects,
        # no response bodies (ace.utils.http.GuardedSession).
        self.http = GuardedSession(
            allow_loopback=bool(getattr(settings, "PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS", False))
        )
        self._tokens: dict[str, tuple[float, dict[str, str]]] = {}

    def close(self) -> None:
        self.http.close()

    # --- the batch entry point ------------------------------------------------------------

    def deliver_many(self, items: Sequence[tuple[Message, Any]]) -> list[Exception | None]:
        if self.problem:
            error = FatalChannelDeliveryError(f"push is not configured: {self.problem}")
            return [error for _ in items]
        devices = self._active_devices(
            {m.recipient.lms_user_id for m, _ in items if m.recipient.lms_user_id is not None}
        )
        results: list[Exception | None] = []
        for message, rendered in items:
            try:
                self._deliver(message, rendered, devices.get(message.recipient.lms_user_id, []))
            except ChannelError as error:
                results.append(error)
            except Exception as error:  # one bad item must not lose the others' results
                log.exception("Unexpected error delivering %s by push", message.log_id)
                wrapped = FatalChannelDeliveryError(f"{type(error).__name__}: {error}")
                wrapped.__cause__ = error
                results.append(wrapped)
            else:
                results.append(None)
        return results

    # --- one message ------------------------------------------------------------------------

    def _deliver(self, message: Message, rendered: Any, devices: list[WebPushDevice]) -> None:
        user_id = message.recipient.lms_user_id
        if user_id is None:
            raise RecipientAddressMissingError(NO_USER_ID)
        devices = [device for device in devices if device.active]
        if not devices:
            log.info("Push %s skipped: %s", message.log_id, NO_DEVICE.format(user_id=user_id))
            raise RecipientAddressMissingError(NO_DEVICE.format(user_id=user_id))
        payload = build_payload(message, rendered)
        ttl = self._ttl(message)

        outcomes = [self.send_to_device(device, payload, ttl) for device in devices]
        by_state: dict[str, list[DeviceResult]] = defaultdict(list)
        for outcome in outcomes:
            by_state[outcome.state].append(outcome)
        details = "; ".join(f"device {o.device_id}: {o.detail}" for o in outcomes if o.detail)

        if by_state["sent"]:
            if len(by_state["sent"]) < len(outcomes):
                log.warning(
                    "Push %s reached %d of %d devices of user %s (%s)",
                    message.log_id,
                    len(by_state["sent"]),
                    len(outcomes),
                    user_id,
                    details,
                )
            return
        if len(by_state["gone"]) == len(outcomes):
            raise RecipientAddressMissingError(ALL_GONE.format(user_id=user_id, details=details))
        if by_state["unknown"]:  # a retry could notify that device twice
            raise DeliveryOutcomeUnknownError(
                f"push to user {user_id} may or may not have arrived: {details}"
            )
        if by_state["retry"]:
            retry_at = max(o.retry_at for o in by_state["retry"] if o.retry_at)
            raise RecoverableChannelDeliveryError(
                f"push to user {user_id} failed for now: {details}", retry_at
            )
        raise FatalChannelDeliveryError(f"push to user {user_id} failed: {details}")

    def _ttl(self, message: Message) -> int:
        ttl = self.default_ttl
        if message.expiration_time is not None:
            expires = message.expiration_time
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            ttl = min(ttl, int((expires - datetime.now(UTC)).total_seconds()))
        return max(ttl, 0)

    # --- one device -------------------------------------------------------------------------

    def send_to_device(self, device: WebPushDevice, payload: bytes, ttl: int) -> DeviceResult:
        """Push ``payload`` (JSON bytes) to one device; a gone device is deactivated.

        Never raises for what the push service answers: the result says sent / gone / retry /
        failed. Used by ``deliver_many`` and by the admin's test action.
        """
        if self.problem:
            return DeviceResult(device.pk, "failed", f"push is not configured: {self.problem}")
        subscription = {
            "endpoint": device.registration_id,
            "keys": {"p256dh": device.p256dh, "auth": device.auth},
        }
        try:
            # Before signing for it: py_vapid cannot even name some hosts (IPv6 literals).
            check_url_form(device.registration_id, allow_loopback=self.http.allow_loopback)
            pusher = WebPusher(subscription, requests_session=self.http)
            response = pusher.send(
                payload,
                headers=self._vapid_headers(device.registration_id),
                ttl=ttl,
                timeout=self.timeout,
            )
        except (DestinationRefused, DestinationRefusedError) as exc:
            # Permanent, and nothing was connected to: the endpoint points inside the network.
            return DeviceResult(device.pk, "failed", f"endpoint refused, not sent ({exc.reason})")
        except (WebPushException, VapidException, ValueError, TypeError, KeyError) as exc:
            # Raised before any request: the stored subscription keys are unusable.
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            return DeviceResult(device.pk, "failed", f"invalid subscription ({message})")
        except requests.RequestException as exc:
            if request_may_have_arrived(exc):
                return DeviceResult(
                    device.pk,
                    "unknown",
                    f"no answer from the push service after the request was sent "
                    f"({type(exc).__name__}); not retried",
                )
            return DeviceResult(
                device.pk,
                "retry",
                f"push service unreachable ({type(exc).__name__})",
                datetime.now(UTC) + self.retry_delay,
            )
        return self._interpret(device, response)

    def _interpret(self, device: WebPushDevice, response: requests.Response) -> DeviceResult:
        status = response.status_code
        reply = status_line(response)  # never the body: it could be an internal service's
        if 200 <= status <= 202:
            return DeviceResult(device.pk, "sent")
        if status in (404, 410):
            self._deactivate(device)
            return DeviceResult(device.pk, "gone", f"gone ({reply}), deactivated")
        if status == 429 or status >= 500:
            retry_at = parse_retry_after(
                response.headers.get("Retry-After"),
                now=datetime.now(UTC),
                default=self.retry_delay,
            )
            return DeviceResult(device.pk, "retry", reply, retry_at)
        if 300 <= status < 400:
            return DeviceResult(device.pk, "failed", f"{reply} (redirects are not followed)")
        return DeviceResult(device.pk, "failed", reply)

    def _deactivate(self, device: WebPushDevice) -> None:
        from push_notifications.models import WebPushDevice

        # Every row holding this subscription is gone (the same browser may appear twice).
        WebPushDevice.objects.filter(registration_id=device.registration_id, active=True).update(
            active=False
        )
        device.active = False
        log.info("Push device %s of user %s is gone; deactivated", device.pk, device.user_id)

    def _vapid_headers(self, endpoint: str) -> dict[str, str]:
        assert self.vapid is not None
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is None or cached[0] - VAPID_TOKEN_RENEW_MARGIN < now:
            expires = int(now) + VAPID_TOKEN_LIFETIME
            claims = {"aud": audience, "exp": expires, "sub": self.subject}
            cached = (expires, dict(self.vapid.sign(claims)))
            self._tokens[audience] = cached
        return dict(cached[1])

    @staticmethod
    def _active_devices(user_ids: set[int]) -> dict[int, list[WebPushDevice]]:
        from push_notifications.models import WebPushDevice

        devices: dict[int, list[WebPushDevice]] = defaultdict(list)
        if not user_ids:
            return devices
        rows = (
            WebPushDevice.objects.filter(user_id__in=user_ids, active=True)
            .only("id", "user_id", "registration_id", "p256dh", "auth", "active")
            .order_by("user_id", "id")
        )
        for device in rows:
            devices[device.user_id].append(device)
        return devices


class PushNotificationChannel(Channel):
    """Web Push to every active device of the recipient (django-push-notifications devices).

    Enabled only when VAPID is configured (see :func:`configuration_problem`); otherwise
    :meth:`enabled` is false and says why in the log, so listing this channel in
    ``ACE_ENABLED_CHANNELS`` is harmless where push is not set up.
    """

    channel_type = ChannelType.PUSH

    @classmethod
    def enabled(cls) -> bool:
        problem = configuration_problem()
        if problem:
            log.info("ACE channel push_notification is disabled: %s", problem)
            return False
        return True

    @classmethod
    def disabled_reason(cls) -> str:
        """Why :meth:`enabled` is false (read by ace's plugin loader for its log line)."""
        return configuration_problem()

    def open_session(self) -> PushNotificationSession:
        return PushNotificationSession(self)

    def deliver(self, message: Message, rendered_message: Any) -> None:
        with self.open_session() as session:
            error = session.deliver_many([(message, rendered_message)])[0]
        if error is not None:
            raise error


def _reset_channels_on_push_settings(*, setting: str, **kwargs: Any) -> None:
    # ace.channel resets its cached channel map on ACE_* changes; VAPID settings decide
    # whether this channel is enabled, so they must reset it too.
    if setting == "PUSH_NOTIFICATIONS_SETTINGS":
        from ace.channel import channels

        channels.reset()


setting_changed.connect(
    _reset_channels_on_push_settings, dispatch_uid="ace.channel.push_notification.reset"
)
