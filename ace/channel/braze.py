"""
:mod:`ace.channel.braze` delivers ACE email through Braze's REST API (plugin name
``braze_email``).

Two kinds of send, chosen per message:

- **Campaign sends.** A message whose name is mapped in ``ACE_CHANNEL_BRAZE_CAMPAIGNS`` (also as
  ``"<name>:<language>"``, which wins for that language) is sent through
  ``POST /campaigns/trigger/send`` to that API-triggered campaign: the content lives in Braze,
  and the rendered parts are passed along as trigger properties (``ace_template_subject``,
  ``ace_template_from_name``, ``ace_template_head_html``, ``ace_template_body_html``,
  ``ace_template_body``) for the campaign's template to use. For such a message
  :meth:`~BrazeEmailChannel.overrides_delivery_for_message` is true, so Braze takes it even
  when another channel would (e.g. a transactional message; see
  :func:`ace.channel.get_channel_for_message`).
- **Regular sends.** Any other message is sent through ``POST /messages/send`` with an email
  message object built from the rendered parts. Transactional messages
  (``options['transactional']``) go to every user (``recipient_subscription_state: all``), the
  others to subscribed users only.

The recipient is the Braze user whose external id is the message's ``lms_user_id`` (Braze has the
address). Settings (the reference's names)::

    ACE_CHANNEL_BRAZE_API_KEY = "..."                   # required; sent as "Bearer <key>"
    ACE_CHANNEL_BRAZE_APP_ID = "..."                    # required
    ACE_CHANNEL_BRAZE_REST_ENDPOINT = "rest.iad-01.braze.com"  # required; https:// is implied
    ACE_CHANNEL_BRAZE_CAMPAIGNS = {"welcome": "campaign id", "welcome:es": "Spanish campaign id"}
    ACE_CHANNEL_BRAZE_FROM_EMAIL = "Platform <noreply@example.org>"  # else options/DEFAULT_FROM
    # Beyond the reference:
    ACE_CHANNEL_BRAZE_TIMEOUT = 10                      # seconds per HTTP request

The endpoint may be given with a scheme; plain ``http://`` is only accepted for a loopback host
(a local fake), so the API key never crosses a network in clear.

Errors, by HTTP status: 2xx is accepted (which, as Braze says, does not mean delivered); 429 and
5xx raise :class:`~ace.errors.RecoverableChannelDeliveryError` at ``X-RateLimit-Reset`` or
``Retry-After`` when Braze gives one in the future, else in :data:`DEFAULT_RETRY_DELAY`; any
other status raises :class:`~ace.errors.FatalChannelDeliveryError`. A connection that could not
be made (refused, DNS, connect timeout) is recoverable; a request that went out without an answer
(read timeout, connection dropped) raises :class:`~ace.errors.DeliveryOutcomeUnknownError`, since
Braze may have sent it. Nothing here sleeps. Errors API: https://www.braze.com/docs/api/errors/
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils.translation import gettext

from ace.channel import Channel, ChannelSession, ChannelType, message_options
from ace.channel.mixins import EmailChannelMixin
from ace.errors import (
    ChannelError,
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    InvalidMessageError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.utils.date import get_current_time
from ace.utils.http import request_may_have_arrived, status_line

if TYPE_CHECKING:
    from ace.message import Message

LOG = logging.getLogger(__name__)

#: The settings that must all be non-empty for the channel to be enabled.
REQUIRED_SETTINGS = (
    "ACE_CHANNEL_BRAZE_API_KEY",
    "ACE_CHANNEL_BRAZE_APP_ID",
    "ACE_CHANNEL_BRAZE_REST_ENDPOINT",
)
CAMPAIGNS_SETTING = "ACE_CHANNEL_BRAZE_CAMPAIGNS"
FROM_EMAIL_SETTING = "ACE_CHANNEL_BRAZE_FROM_EMAIL"
TIMEOUT_SETTING = "ACE_CHANNEL_BRAZE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 10
#: When Braze gives no usable time to retry at, retry after this.
DEFAULT_RETRY_DELAY = datetime.timedelta(seconds=30)

CAMPAIGN_SEND_PATH = "/campaigns/trigger/send"
MESSAGE_SEND_PATH = "/messages/send"
#: The rendered parts passed to campaign sends, each as trigger property ``ace_template_<part>``.
RENDERED_PARTS = ("from_name", "subject", "head_html", "body_html", "body")
#: Braze's per-recipient unsubscribe link (Liquid, filled in by Braze when it sends).
UNSUBSCRIBE_URL = "{{${unsubscribe_url}}}"

MISSING_SETTINGS_REASON = "required settings are empty: {names}"
NOT_HTTPS_REASON = (
    "ACE_CHANNEL_BRAZE_REST_ENDPOINT must be https:// (http:// only for a loopback host): {url}"
)
NO_BRAZE_USER = "No Braze user (lms_user_id) for the recipient of message {log_id}"
#: Characters of Braze's error message kept in a channel error.
MAX_ERROR_TEXT = 200


class NoBrazeUserError(RecipientAddressMissingError, InvalidMessageError):
    """The recipient has no ``lms_user_id``, the Braze external user id (NO_ADDRESS outcome)."""


class BrazeAPIError(Exception):
    """Braze refused a request; the cause attached to the channel error raised."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"Braze refused the request: {text}" if text else "Braze refused it")
        self.status = status
        self.text = text


def endpoint_url() -> str:
    """The base URL of the REST API, from ``ACE_CHANNEL_BRAZE_REST_ENDPOINT``."""
    endpoint = str(getattr(settings, "ACE_CHANNEL_BRAZE_REST_ENDPOINT", "") or "").strip()
    if "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    return endpoint.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_scheme(url: str) -> bool:
    """https, or http to a loopback host only (the API key is in every request)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and _is_loopback(parts.hostname or "")


def _display_name(name: str) -> str:
    """A display name for ``Name <address>``: quoted when it holds a special character."""
    if any(c in name for c in '",;:<>@()[]\\'):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


class BrazeEmailChannel(EmailChannelMixin, Channel):
    """An email channel that hands rendered messages to Braze (see the module docstring)."""

    channel_type = ChannelType.EMAIL

    @classmethod
    def disabled_reason(cls) -> str | None:
        """Why :meth:`enabled` is false, for the log line ``channels()`` writes; None if enabled."""
        missing = [name for name in REQUIRED_SETTINGS if not getattr(settings, name, None)]
        if missing:
            return MISSING_SETTINGS_REASON.format(names=", ".join(missing))
        if not _safe_scheme(endpoint_url()):
            return NOT_HTTPS_REASON.format(url=endpoint_url())
        return None

    @classmethod
    def enabled(cls) -> bool:
        """True iff the API key, app id and REST endpoint are set (and the endpoint is https)."""
        return cls.disabled_reason() is None

    @property
    def action_links(self) -> list[tuple[str, str]]:
        """(url, label) pairs for the templates: Braze's own unsubscribe link."""
        return [(UNSUBSCRIBE_URL, gettext("Unsubscribe from this list"))]

    def get_action_links(self, omit_unsubscribe_link: bool = False, **kwargs: Any) -> list:
        """:attr:`action_links`, or none when the unsubscribe link is omitted."""
        return [] if omit_unsubscribe_link else self.action_links

    @property
    def tracker_image_sources(self) -> list[str]:
        """None: Braze adds its own open tracking."""
        return []

    @staticmethod
    def campaign_id(message: Message) -> str | None:
        """The Braze campaign mapped to this message (``"<name>:<language>"`` first), if any."""
        campaigns = getattr(settings, CAMPAIGNS_SETTING, None) or {}
        name = getattr(message, "name", None)
        language = getattr(message, "language", None)
        keys = [f"{name}:{language}", name] if language else [name]
        for key in keys:
            campaign = campaigns.get(key)
            if campaign:
                return str(campaign)
        return None

    def overrides_delivery_for_message(self, message: Message) -> bool:
        """True for a message mapped to a Braze campaign: Braze must send those."""
        return self.campaign_id(message) is not None

    def deliver(self, message: Message, rendered_message: Any) -> None:
        """Send one rendered message through Braze, or raise a channel error saying why not."""
        with requests.Session() as http:
            self.send_with(http, message, rendered_message)

    def open_session(self) -> BrazeChannelSession:
        """A batch session: one HTTP connection, and no more requests once rate-limited."""
        return BrazeChannelSession(self)

    # -- building the request --------------------------------------------------------------
    @staticmethod
    def external_user_id(message: Message) -> str:
        """The recipient's Braze external user id (its ``lms_user_id``)."""
        user_id = getattr(getattr(message, "recipient", None), "lms_user_id", None)
        if user_id is None or str(user_id) == "":
            raise NoBrazeUserError(NO_BRAZE_USER.format(log_id=getattr(message, "log_id", None)))
        return str(user_id)

    def from_address(self, message: Message, rendered_message: Any) -> str:
        """``ACE_CHANNEL_BRAZE_FROM_EMAIL`` (Braze only sends from verified domains), else the
        message's ``from_address`` / ``DEFAULT_FROM_EMAIL``, named by the rendered from name when
        the address carries none."""
        address = getattr(settings, FROM_EMAIL_SETTING, None) or self.get_from_address(message)
        self.check_header_value("From", address)
        name = self.get_from_name(rendered_message)
        if name and not parseaddr(address)[0]:
            return f"{_display_name(name)} <{address.strip()}>"
        return address

    def request_for(self, message: Message, rendered_message: Any) -> tuple[str, dict[str, Any]]:
        """The API path and JSON body that send this message."""
        user_id = self.external_user_id(message)
        campaign = self.campaign_id(message)
        if campaign is not None:
            properties = {
                f"ace_template_{part}": str(value).strip()
                for part in RENDERED_PARTS
                if (value := getattr(rendered_message, part, None)) is not None
            }
            recipient = {"external_user_id": user_id, "trigger_properties": properties}
            return CAMPAIGN_SEND_PATH, {"campaign_id": campaign, "recipients": [recipient]}

        email: dict[str, Any] = {
            "app_id": str(settings.ACE_CHANNEL_BRAZE_APP_ID),
            "subject": self.get_subject(rendered_message),
            "from": self.from_address(message, rendered_message),
            "body": self.make_simple_html_template(
                getattr(rendered_message, "head_html", None) or "",
                getattr(rendered_message, "body_html", None) or "",
            ),
            "plaintext_body": getattr(rendered_message, "body", None) or "",
        }
        reply_to = self.get_reply_to(message)
        if reply_to:
            email["reply_to"] = reply_to[0]
        headers = self.get_headers(message)
        if headers:
            email["headers"] = headers
        transactional = bool(message_options(message).get("transactional"))
        body = {
            "external_user_ids": [user_id],
            "recipient_subscription_state": "all" if transactional else "subscribed",
            "messages": {"email": email},
        }
        return MESSAGE_SEND_PATH, body

    # -- sending -----------------------------------------------------------------------------
    def send_with(
        self, http: requests.Session, message: Message, rendered_message: Any
    ) -> requests.Response:
        """POST the message through ``http``; return Braze's (2xx) response.

        Raises:
            NoBrazeUserError: The recipient has no ``lms_user_id`` (nothing is sent).
            RecoverableChannelDeliveryError: 429, 5xx, or Braze could not be reached.
            DeliveryOutcomeUnknownError: The request went out and no answer came back.
            FatalChannelDeliveryError: Any other refusal.
        """
        logger = message.get_message_specific_logger(LOG)
        path, body = self.request_for(message, rendered_message)
        url = endpoint_url() + path
        if not _safe_scheme(url):
            raise FatalChannelDeliveryError(NOT_HTTPS_REASON.format(url=endpoint_url()))
        headers = {"Authorization": f"Bearer {getattr(settings, 'ACE_CHANNEL_BRAZE_API_KEY', '')}"}
        timeout = float(getattr(settings, TIMEOUT_SETTING, None) or DEFAULT_TIMEOUT_SECONDS)
        try:
            response = http.post(
                url, json=body, headers=headers, timeout=timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            _raise_transport_error(exc)
        if 200 <= response.status_code < 300:
            reply = _json(response)
            logger.info(
                "Braze accepted the message (%s): dispatch_id=%s",
                path,
                reply.get("dispatch_id") or reply.get("send_id"),
            )
            if reply.get("errors"):
                logger.warning("Braze accepted the message with errors: %s", _text(reply))
            return response
        _raise_response_error(response, logger)


class BrazeChannelSession(ChannelSession):
    """Delivers a batch through one HTTP session (one kept-alive connection to Braze).

    Once Braze says the rate limit is reached, cannot be reached, or leaves a request
    unanswered, the rest of the batch is not sent: each remaining item gets a recoverable
    error and retry time without a request.
    """

    channel: BrazeEmailChannel

    def __init__(self, channel: BrazeEmailChannel) -> None:
        super().__init__(channel)
        self.http = requests.Session()
        self.paused_until: datetime.datetime | None = None
        self._pause_reason = ""

    def deliver_one(self, message: Message, rendered: Any) -> Exception | None:
        if self.paused_until is not None:
            if get_current_time() < self.paused_until:
                return RecoverableChannelDeliveryError(
                    f"Not sent: {self._pause_reason} earlier in this batch", self.paused_until
                )
            self.paused_until = None
        try:
            self.channel.send_with(self.http, message, rendered)
        except RecoverableChannelDeliveryError as error:
            cause = error.__cause__
            if not isinstance(cause, BrazeAPIError) or cause.status == 429:
                self.paused_until = error.next_attempt_time  # rate limit, or unreachable
                self._pause_reason = error.message
            return error
        except DeliveryOutcomeUnknownError as error:
            self.paused_until = get_current_time() + DEFAULT_RETRY_DELAY
            self._pause_reason = "Braze left a request unanswered"
            return error
        except ChannelError as error:
            return error
        except Exception as error:  # one bad item must not lose the batch's other results
            LOG.exception("Unexpected error delivering %s through Braze", message.log_id)
            wrapped = FatalChannelDeliveryError(f"{type(error).__name__}: {error}")
            wrapped.__cause__ = error
            return wrapped
        return None

    def close(self) -> None:
        self.http.close()


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        reply = response.json()
    except ValueError:
        return {}
    return reply if isinstance(reply, dict) else {}


def _text(reply: dict[str, Any]) -> str:
    """Braze's ``message`` and ``errors``, printable and cut to :data:`MAX_ERROR_TEXT`."""
    parts = [str(reply.get("message") or "")]
    if reply.get("errors"):
        parts.append(f"errors: {reply['errors']}")
    text = "; ".join(p for p in parts if p)
    return "".join(c for c in text if c.isprintable())[:MAX_ERROR_TEXT]


def _raise_transport_error(exc: requests.RequestException) -> NoReturn:
    if request_may_have_arrived(exc):
        raise DeliveryOutcomeUnknownError(
            f"No answer from Braze after the request was sent ({type(exc).__name__}); it may "
            "have been accepted, so it is not retried automatically"
        ) from exc
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        raise RecoverableChannelDeliveryError(
            f"Could not reach Braze: {type(exc).__name__}", next_attempt_time(None)
        ) from exc
    raise FatalChannelDeliveryError(f"Braze request failed: {exc}") from exc


def _raise_response_error(response: requests.Response, logger: Any) -> NoReturn:
    status = response.status_code
    api_error = BrazeAPIError(status, _text(_json(response)))
    text = f"{status_line(response)} from Braze"
    if api_error.text:
        text = f"{text}: {api_error.text}"
    if status == 429 or 500 <= status < 600:
        when = next_attempt_time(response)
        logger.info("Braze asked us to retry at %s: %s", when.isoformat(), text)
        raise RecoverableChannelDeliveryError(text, when) from api_error
    logger.warning("Braze refused the message: %s", text)
    raise FatalChannelDeliveryError(text) from api_error


def next_attempt_time(response: requests.Response | None) -> datetime.datetime:
    """When to try again: Braze's ``X-RateLimit-Reset`` (epoch seconds) or ``Retry-After``
    (seconds) if usable and in the future, else now + :data:`DEFAULT_RETRY_DELAY`."""
    now = get_current_time()
    fallback = now + DEFAULT_RETRY_DELAY
    if response is None:
        return fallback
    candidates = []
    try:
        reset = int(str(response.headers.get("X-RateLimit-Reset")).strip())
        candidates.append(datetime.datetime.fromtimestamp(reset, tz=datetime.UTC))
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    try:
        delay = int(str(response.headers.get("Retry-After")).strip())
        candidates.append(now + datetime.timedelta(seconds=delay))
    except (TypeError, ValueError, OverflowError):
        pass
    future = [when for when in candidates if when > now]
    return max(future) if future else fallback
