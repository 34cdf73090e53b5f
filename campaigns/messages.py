"""One builder for the ACE message a recipient of a campaign gets.

Sending, the preview, the test send, the dry run and ``resolver.send`` all build messages
here, so what an operator previews is what is sent: a fresh context per recipient with the
signed unsubscribe link, the RFC 8058 headers, and the :class:`Option` keys policies read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ace.message import Message, MessageType
from campaigns import conf
from campaigns.services.message_types import message_type_instance
from campaigns.signing import unsubscribe_headers, unsubscribe_url_factory

if TYPE_CHECKING:
    from campaigns.models import Campaign, CampaignRun, MessageTypeDefinition
    from campaigns.resolvers import ResolvedRecipient


#: The email header carrying a delivery's message uuid (read by ``campaigns.feedback``).
DELIVERY_HEADER = "X-ACE-Message-UUID"


class Option:
    """The ``message.options`` keys campaigns sets (ACE's own, such as ``headers``, too)."""

    MESSAGE_TYPE_ID = "campaign_message_type_id"  # the MessageTypeDefinition (opt-outs, toggles)
    CAMPAIGN_ID = "campaign_id"
    RUN_ID = "campaign_run_id"
    CAMPAIGN_TIME_ZONE = "campaign_time_zone"  # quiet hours when the recipient has none
    RECIPIENT_KEY = "recipient_key"  # "user:<id>" or "email:<address>" (frequency cap)
    RECIPIENT_TIME_ZONE = "recipient_time_zone"
    TEST_SEND = "test_send"  # a test send: "[TEST] " subject, an unsubscribe link that does nothing
    HEADERS = "headers"  # extra email headers (ACE's EmailChannelMixin reads them)
    SUBJECT_PREFIX = "subject_prefix"  # put before the email subject (ACE's django_email)


#: The subject prefix of test sends.
TEST_SUBJECT_PREFIX = "[TEST] "


def campaign_expires_at(*, campaign: Campaign, start: dt.datetime) -> dt.datetime:
    """When the undelivered messages of a run of ``campaign`` started at ``start`` expire."""
    if campaign.expiration_hours:
        return start + dt.timedelta(hours=campaign.expiration_hours)
    return start + conf.default_expiration()


class CampaignMessageBuilder:
    """Personalizes one message type for many recipients (set up once per batch)."""

    def __init__(self, message_type: MessageType, *, language: str | None = None) -> None:
        self.message_type = message_type
        self.default_language = language or None
        type_id = message_type.options.get(Option.MESSAGE_TYPE_ID)
        # The route is reversed and the key derived once here; each link is only encrypted.
        # A test send's links are test links: the unsubscribe view says so and changes nothing.
        self._unsubscribe_url: Callable[[str], str] | None = (
            unsubscribe_url_factory(type_id, test=bool(message_type.options.get(Option.TEST_SEND)))
            if type_id is not None
            else None
        )

    def build(
        self,
        recipient: ResolvedRecipient,
        *,
        language: str | None = None,
        message_uuid: uuid.UUID | None = None,
    ) -> Message:
        """The message of ``recipient``: ``language`` wins over the recipient's own, which wins
        over the builder's default. A test send (``options[Option.TEST_SEND]``) gets the
        ``"[TEST] "`` subject prefix and a test unsubscribe link."""
        context = {**recipient.context}
        headers: dict[str, str] = {}
        if self._unsubscribe_url is not None and recipient.email and "@" in recipient.email:
            url = self._unsubscribe_url(recipient.email)
            context["unsubscribe_url"] = url
            headers = unsubscribe_headers(url)
        message = self.message_type.personalize(
            recipient.ace_recipient(),
            language or recipient.language or self.default_language,
            context,
        )
        if message_uuid is not None:
            message.uuid = message_uuid
            # Names the delivery, so ESP events and bounces find their log row.
            headers[DELIVERY_HEADER] = str(message_uuid)
        options = message.options
        message.options = {
            **options,
            Option.RECIPIENT_KEY: recipient.key,
            Option.RECIPIENT_TIME_ZONE: recipient.time_zone,
            Option.HEADERS: {**(options.get(Option.HEADERS) or {}), **headers},
        }
        if options.get(Option.TEST_SEND):
            message.options[Option.SUBJECT_PREFIX] = TEST_SUBJECT_PREFIX
        return message


def definition_message_builder(
    *,
    definition: MessageTypeDefinition,
    context: dict[str, Any],
    language: str = "",
    options: dict[str, Any] | None = None,
    expiration_time: dt.datetime | None = None,
) -> CampaignMessageBuilder:
    """A builder for a message type definition with a shared ``context``."""
    message_type = message_type_instance(
        definition=definition,
        context=context,
        options=options,
        expiration_time=expiration_time,
    )
    return CampaignMessageBuilder(
        message_type, language=language or definition.default_language or None
    )


def campaign_message_builder(
    *,
    campaign: Campaign,
    run: CampaignRun | None = None,
    options: dict[str, Any] | None = None,
    expiration_time: dt.datetime | None = None,
) -> CampaignMessageBuilder:
    """The builder of a campaign's messages: for one of its runs (its send uuid and expiry),
    or without a run for a preview, a test send or a dry run."""
    opts: dict[str, Any] = {
        Option.CAMPAIGN_ID: campaign.pk,
        Option.CAMPAIGN_TIME_ZONE: campaign.time_zone,
    }
    if run is not None:
        opts[Option.RUN_ID] = run.pk
        expiration_time = run.expires_at
    builder = definition_message_builder(
        definition=campaign.message_type,
        context=campaign.context if isinstance(campaign.context, dict) else {},
        language=campaign.language,
        options={**opts, **(options or {})},
        expiration_time=expiration_time,
    )
    if run is not None:
        builder.message_type.uuid = run.send_uuid
    return builder
