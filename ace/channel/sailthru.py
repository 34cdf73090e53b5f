"""
:mod:`ace.channel.sailthru` delivers ACE email through Sailthru's REST ``send`` API.

ACE renders the whole message; Sailthru only gets one minimal template, named by
``ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME``, that pastes the rendered parts in from the template
variables ``ace_template_from_name``, ``ace_template_subject``, ``ace_template_head_html`` and
``ace_template_body_html`` (plus ``ace_template_body``, the plain-text part). The sample template
code is in the API spec (section ``edx_ace.channel.sailthru``).

Settings (same flat names as the reference library)::

    ACE_CHANNEL_SAILTHRU_DEBUG = False           # True: log what would be sent, send nothing
    ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME = "..."   # the Sailthru template described above
    ACE_CHANNEL_SAILTHRU_API_KEY = "..."
    ACE_CHANNEL_SAILTHRU_API_SECRET = "..."
    # Beyond the reference: where the API lives (tests point it at a loopback fake) and how long
    # one HTTP request may take.
    ACE_CHANNEL_SAILTHRU_API_URL = None          # None: https://api.sailthru.com
    ACE_CHANNEL_SAILTHRU_TIMEOUT = 10            # seconds

``options['from_address']`` (else ``options['reply_to']``) is passed as Sailthru's
``behalf_email`` send option. :meth:`~SailthruEmailChannel.deliver` does not check the settings
again: :meth:`~SailthruEmailChannel.enabled` does, so ``channels()`` leaves a channel that is not
configured out (and says why).

Delivery is "at most once" in the reference's sense: a success only means Sailthru accepted the
request. Error codes 9 (internal error) and 43 (rate limit) and failures to reach the API
(connection refused, connect timeout) raise :class:`~ace.errors.RecoverableChannelDeliveryError`
with the time given by the ``X-Rate-Limit-Reset`` header (never in the past); every other refusal
raises :class:`~ace.errors.FatalChannelDeliveryError`. A request that was sent but got no answer
(read timeout, connection closed while waiting) raises
:class:`~ace.errors.DeliveryOutcomeUnknownError`: Sailthru may have accepted it, so it is not
retried (a batch session then holds its remaining messages back as recoverable). Nothing here
sleeps: the caller decides when to retry.
Error codes: https://getstarted.sailthru.com/developers/api/errors/
"""

from __future__ import annotations

import datetime
import enum
import logging
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings
from django.utils.translation import gettext

from ace.channel import Channel, ChannelSession, ChannelType, message_options
from ace.channel.mixins import EmailChannelMixin
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    InvalidMessageError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.utils.date import get_current_time
from ace.utils.http import request_may_have_arrived

if TYPE_CHECKING:
    from ace.message import Message

try:
    from sailthru.sailthru_client import SailthruClient
    from sailthru.sailthru_error import SailthruClientError
except ImportError:  # the channel reports itself disabled, with this as the reason
    SailthruClient = None
    SailthruClientError = None

LOG = logging.getLogger(__name__)

#: The settings that must all be non-empty for the channel to be enabled.
REQUIRED_SETTINGS = (
    "ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME",
    "ACE_CHANNEL_SAILTHRU_API_KEY",
    "ACE_CHANNEL_SAILTHRU_API_SECRET",
)

#: The rendered parts passed to Sailthru, each as template variable ``ace_template_<part>``.
RENDERED_PARTS = ("from_name", "subject", "head_html", "body_html", "body")

DEFAULT_TIMEOUT_SECONDS = 10

#: When Sailthru gives no usable reset time (missing, garbled, or already past), retry after this.
DEFAULT_RETRY_DELAY = datetime.timedelta(seconds=30)

# Module-level so tests and callers can match them.
LIBRARY_MISSING_REASON = (
    "the Sailthru client library is not installed (pip install sailthru-client)"
)
MISSING_SETTINGS_REASON = "required settings are empty: {names}"

# HTTP statuses that, with a body that is not Sailthru's JSON, mean a proxy in front of the API
# turned the request away before Sailthru saw it, so trying again later is safe.
_RETRYABLE_NON_JSON_STATUSES = frozenset({429, 502, 503})


class RecoverableErrorCodes(enum.IntEnum):
    """Sailthru error codes for requests that can (and should) be retried after a wait."""

    #: Something went wrong on Sailthru's side; the request was probably not saved.
    INTERNAL_ERROR = 9
    #: Too many requests this minute for this endpoint and HTTP method.
    RATE_LIMIT = 43


class ResponseHeaders(enum.Enum):
    """Headers Sailthru adds to every REST API response."""

    RATE_LIMIT_REMAINING = "X-Rate-Limit-Remaining"
    #: Epoch seconds at which the per-minute request budget is refilled.
    RATE_LIMIT_RESET = "X-Rate-Limit-Reset"


class NoEmailAddressError(RecipientAddressMissingError, InvalidMessageError):
    """The recipient has no email address: the reference's ``InvalidMessageError``, and this
    library's :class:`~ace.errors.RecipientAddressMissingError` (fatal; NO_ADDRESS outcome)."""


#: The text of :class:`NoEmailAddressError`.
NO_EMAIL_ADDRESS = "No email address for the recipient (lms_user_id={user_id}) of message {log_id}"


class SailthruAPIError(Exception):
    """Sailthru answered with an error; the cause attached to the channel error we raise."""

    def __init__(self, code: int, message: str, status: int) -> None:
        super().__init__(f"Sailthru error {code}: {message} (HTTP {status})")
        self.code = code
        self.message = message
        self.status = status


class SailthruEmailChannel(EmailChannelMixin, Channel):
    """An email channel that hands rendered messages to Sailthru's ``send`` API.

    It only confirms that Sailthru accepted the request, not that the mail reached the
    recipient. See the module docstring for the settings and the error mapping.
    """

    channel_type = ChannelType.EMAIL

    @classmethod
    def disabled_reason(cls) -> str | None:
        """Why :meth:`enabled` is false, for the log line ``channels()`` writes; None if enabled."""
        if SailthruClient is None:
            return LIBRARY_MISSING_REASON
        missing = [name for name in REQUIRED_SETTINGS if not getattr(settings, name, None)]
        if missing:
            return MISSING_SETTINGS_REASON.format(names=", ".join(missing))
        return None

    @classmethod
    def enabled(cls) -> bool:
        """True iff all required settings are non-empty and the Sailthru client is installed."""
        return cls.disabled_reason() is None

    @property
    def action_links(self) -> list[tuple[str, str]]:
        """(url, label) pairs the email templates render as links: view in browser, then
        unsubscribe.

        The URLs are Sailthru placeholders that the Sailthru template code from the spec
        substitutes with the per-recipient values when it sends.
        """
        return [
            ("{view_url}", gettext("View on Web")),
            ("{optout_confirm_url}", gettext("Unsubscribe from this list")),
        ]

    def get_action_links(self, omit_unsubscribe_link: bool = False, **kwargs: Any) -> list:
        """:attr:`action_links`, without the unsubscribe link (the last) if asked to."""
        links = self.action_links
        return links[:1] if omit_unsubscribe_link else links

    @property
    def tracker_image_sources(self) -> list[str]:
        """Image URLs the email templates embed to track opens (Sailthru's beacon)."""
        return ["{beacon_src}"]

    def deliver(self, message: Message, rendered_message: Any) -> None:
        """Send one rendered message through Sailthru, or raise a channel error saying why not."""
        self.send_with(self._make_client(), message, rendered_message)

    def open_session(self) -> SailthruChannelSession:
        """A batch session that stops calling Sailthru once it is rate-limited or unreachable."""
        return SailthruChannelSession(self)

    # -- internals, shared with batch sessions ----------------------------------------------
    def template_vars(self, rendered_message: Any) -> dict[str, str]:
        """The ``ace_template_*`` variables for Sailthru; parts that were not rendered are left
        out so the Sailthru template can fall back on its own defaults. Values are stripped:
        Sailthru silently drops a send whose from name or subject starts or ends with a
        newline."""
        template_vars = {}
        for part in RENDERED_PARTS:
            value = getattr(rendered_message, part, None)
            if value is not None:
                template_vars[f"ace_template_{part}"] = str(value).strip()
        return template_vars

    @staticmethod
    def send_options(message: Message) -> dict[str, str]:
        """Sailthru send options: ``behalf_email`` from ``options['from_address']``, else
        ``options['reply_to']`` (its first address), when one is given."""
        options = message_options(message)
        behalf = options.get("from_address") or options.get("reply_to")
        if behalf and not isinstance(behalf, str):
            behalf = next(iter(behalf), None)
        if not behalf:
            return {}
        EmailChannelMixin.check_header_value("behalf_email", behalf)
        return {"behalf_email": str(behalf)}

    @staticmethod
    def check_recipient(message: Message) -> str:
        """The recipient's email address.

        Raises:
            NoEmailAddressError: There is none ("No email address ...").
            FatalChannelDeliveryError: It contains a newline.
        """
        recipient = getattr(message, "recipient", None)
        address = getattr(recipient, "email_address", None)
        if not address:
            raise NoEmailAddressError(
                NO_EMAIL_ADDRESS.format(
                    user_id=getattr(recipient, "lms_user_id", None),
                    log_id=getattr(message, "log_id", None),
                )
            )
        EmailChannelMixin.check_header_value("To", address)
        return address

    def _make_client(self) -> Any:
        """A client built from the current settings (cheap: it holds no connection)."""
        if SailthruClient is None:
            raise FatalChannelDeliveryError(f"Sailthru is unavailable: {LIBRARY_MISSING_REASON}")
        return SailthruClient(
            getattr(settings, "ACE_CHANNEL_SAILTHRU_API_KEY", None),
            getattr(settings, "ACE_CHANNEL_SAILTHRU_API_SECRET", None),
            api_url=getattr(settings, "ACE_CHANNEL_SAILTHRU_API_URL", None) or None,
            request_timeout=getattr(
                settings, "ACE_CHANNEL_SAILTHRU_TIMEOUT", DEFAULT_TIMEOUT_SECONDS
            ),
        )

    def send_with(self, client: Any, message: Message, rendered_message: Any) -> Any:
        """Send through ``client``; return the Sailthru response (None in debug mode).

        Raises:
            NoEmailAddressError: The recipient has no email address (nothing is sent).
            RecoverableChannelDeliveryError: Rate limit, Sailthru internal error, unreachable.
            DeliveryOutcomeUnknownError: The request went out and no answer came back.
            FatalChannelDeliveryError: Any other refusal (a channel that is not configured
                is refused by Sailthru itself: ``enabled()`` is where the settings are checked).
        """
        logger = message.get_message_specific_logger(LOG)
        email = self.check_recipient(message)
        template_name = getattr(settings, "ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME", None)
        template_vars = self.template_vars(rendered_message)
        options = self.send_options(message)

        if getattr(settings, "ACE_CHANNEL_SAILTHRU_DEBUG", False):
            logger.info(
                "ACE_CHANNEL_SAILTHRU_DEBUG is on, so nothing was sent to Sailthru. "
                "Would have sent template %r to %s with vars %r",
                template_name,
                email,
                template_vars,
            )
            return None

        try:
            response = client.send(
                template=template_name, email=email, _vars=template_vars, options=options
            )
        except SailthruClientError as exc:
            self._raise_transport_error(exc)
        except ValueError as exc:
            # The client library parses the X-Rate-Limit-* headers itself and lets a garbled one
            # escape as ValueError, losing the reply. Sailthru may have accepted the send, so
            # retrying could send twice: fatal, like any reply we cannot read.
            raise FatalChannelDeliveryError(f"Unreadable reply from Sailthru: {exc}") from exc

        if response.is_ok():
            body = response.get_body()
            logger.info(
                "Sailthru accepted the message: send_id=%s, %s=%s",
                body.get("send_id") if isinstance(body, dict) else None,
                ResponseHeaders.RATE_LIMIT_REMAINING.value,
                _header(response, ResponseHeaders.RATE_LIMIT_REMAINING),
            )
            return response
        self._raise_response_error(response, logger)

    def _raise_transport_error(self, exc: Exception) -> None:
        """Map a failure to talk to the API. The client library wraps the ``requests`` exception
        in SailthruClientError without ``from``, so the original is only in ``__context__``."""
        cause = exc.__context__
        if request_may_have_arrived(cause):
            raise DeliveryOutcomeUnknownError(
                f"No answer from Sailthru after the request was sent ({exc}); it may have been "
                "accepted, so it is not retried automatically"
            ) from exc
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            raise RecoverableChannelDeliveryError(
                f"Could not reach Sailthru: {exc}", next_attempt_time(None)
            ) from exc
        raise FatalChannelDeliveryError(f"Sailthru request failed: {exc}") from exc

    def _raise_response_error(self, response: Any, logger: Any) -> None:
        """Map Sailthru's error reply to a recoverable or fatal channel error.

        Reads the body itself: the library's ``get_error()`` raises KeyError on a JSON reply
        that is neither a success nor ``{"error", "errormsg"}`` (e.g. ``{}``).
        """
        status = response.get_status_code()
        body = response.get_body()
        sailthru_json = isinstance(body, dict) and "error" in body
        if sailthru_json:
            try:
                code = int(body["error"])
            except (TypeError, ValueError):
                code = 0
            text = str(body.get("errormsg", ""))
        else:
            code = 0
            text = f"unexpected reply {response.get_body(as_dictionary=False)[:200]!r}"
        api_error = SailthruAPIError(code, text, status)
        recoverable = (
            api_error.code in set(RecoverableErrorCodes)
            if sailthru_json
            else status in _RETRYABLE_NON_JSON_STATUSES
        )
        if recoverable:
            when = next_attempt_time(response)
            logger.info("Sailthru asked us to retry at %s: %s", when.isoformat(), api_error)
            raise RecoverableChannelDeliveryError(str(api_error), when) from api_error
        logger.warning("Sailthru refused the message: %s", api_error)
        raise FatalChannelDeliveryError(str(api_error)) from api_error


class SailthruChannelSession(ChannelSession):
    """Delivers a batch through Sailthru, one request per message (the client library opens a
    new HTTP connection per request; it offers no way to reuse one).

    Once Sailthru says the rate limit is reached, cannot be reached at all, or leaves a request
    unanswered, the rest of the batch is not sent: each remaining item gets a recoverable error
    and retry time without a request, instead of burning requests on certain refusals or
    waiting one timeout per message (the unanswered one itself is UNKNOWN, never retried).
    """

    channel: SailthruEmailChannel

    def __init__(self, channel: SailthruEmailChannel) -> None:
        super().__init__(channel)
        self.paused_until: datetime.datetime | None = None
        self._pause_reason = ""

    def deliver_one(self, message: Message, rendered: Any) -> Exception | None:
        if self.paused_until is not None:
            if get_current_time() < self.paused_until:
                return RecoverableChannelDeliveryError(
                    f"Not sent: {self._pause_reason} earlier in this batch", self.paused_until
                )
            self.paused_until = None
        error = super().deliver_one(message, rendered)
        if isinstance(error, RecoverableChannelDeliveryError) and _pauses_batch(error):
            self.paused_until = error.next_attempt_time
            self._pause_reason = error.message
        elif isinstance(error, DeliveryOutcomeUnknownError):
            self.paused_until = next_attempt_time(None)
            self._pause_reason = "Sailthru left a request unanswered"
        return error


def _pauses_batch(error: RecoverableChannelDeliveryError) -> bool:
    """Rate limits and an unreachable API affect every following request, not just this one."""
    cause = error.__cause__
    if isinstance(cause, SailthruAPIError):
        return cause.code == RecoverableErrorCodes.RATE_LIMIT or cause.status == 429
    return SailthruClientError is not None and isinstance(cause, SailthruClientError)


def _header(response: Any, header: ResponseHeaders) -> str | None:
    return response.get_response().headers.get(header.value)


def next_attempt_time(response: Any | None) -> datetime.datetime:
    """When to try again: Sailthru's ``X-Rate-Limit-Reset`` (epoch seconds) if it is usable and
    in the future, else now + :data:`DEFAULT_RETRY_DELAY`. Never in the past."""
    now = get_current_time()
    fallback = now + DEFAULT_RETRY_DELAY
    if response is None:
        return fallback
    raw = _header(response, ResponseHeaders.RATE_LIMIT_RESET)
    try:
        reset = datetime.datetime.fromtimestamp(int(str(raw).strip()), tz=datetime.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback
    return reset if reset > now else fallback
