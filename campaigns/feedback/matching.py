"""Which delivery an event is about.

The delivery log knows each message by its ACE ``message_uuid``. An event finds it through
what it carries (in this order; the first that names a delivery wins):

1. ``header``: an ``X-ACE-Message-UUID`` header (in a bounce's returned headers, or in the
   headers an ESP echoes in its event);
2. ``metadata``: ``ace_message_uuid`` in the ESP's metadata (anymail's ``pre_send`` receiver
   copies the header there for ESPs that echo metadata in their webhooks);
3. ``message_id``: a Message-ID of the form ``<uuid@host>``;
4. ``esp_message_id``: the ESP's own message id, recorded at send time
   (:class:`~campaigns.feedback.models.EspMessageId`);
5. ``verp``: a return address ``local+<uuid hex>@domain``;
6. ``recipient``: the address alone, when exactly one email delivery to it was sent within
   ``CAMPAIGNS_FEEDBACK_RECIPIENT_MATCH_HOURS`` before the event (never a guess between two).

Anything else stays unmatched (kept, listed in the admin, never an error).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from django.utils import timezone

from campaigns import conf
from campaigns.feedback.models import DeliveryEvent, EspMessageId
from campaigns.models import ChannelChoice, Delivery

#: The header that names the ACE message (``campaigns/messages.py`` should set it; see README).
UUID_HEADER = "X-ACE-Message-UUID"
#: The ESP metadata key the ``pre_send`` receiver sets.
METADATA_KEY = "ace_message_uuid"

MatchedBy = DeliveryEvent.MatchedBy

_UUID = re.compile(
    r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE
)
_UUID_IN_TEXT = re.compile(
    r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.IGNORECASE
)
#: Delivery statuses after which a message may have reached the recipient.
SENT_STATUSES = (Delivery.Status.SENT, Delivery.Status.UNKNOWN)


def parse_uuid(value: Any) -> uuid.UUID | None:
    """A UUID written with or without dashes (surrounding space and ``<>`` ignored)."""
    if value is None:
        return None
    text = str(value).strip().strip("<>").strip()
    if not _UUID.match(text):
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def uuid_from_message_id(value: Any) -> uuid.UUID | None:
    """The UUID of a Message-ID ``<uuid@host>`` (a bare UUID is accepted too)."""
    if not value:
        return None
    local = str(value).strip().strip("<>").split("@", 1)[0]
    return parse_uuid(local)


def uuid_from_verp(address: Any) -> uuid.UUID | None:
    """The UUID in a VERP return address ``local+<uuid>@domain`` (``+`` or ``=`` separated)."""
    if not address:
        return None
    local = str(address).strip().strip("<>").rsplit("@", 1)[0]
    for separator in ("+", "="):
        if separator in local:
            found = _UUID_IN_TEXT.search(local.split(separator, 1)[1])
            if found:
                return parse_uuid(found.group(0))
    return None


@attrs.define
class Clues:
    """What an event says about the message it is about."""

    header_uuids: list[str] = attrs.field(factory=list)
    metadata_uuids: list[str] = attrs.field(factory=list)
    message_ids: list[str] = attrs.field(factory=list)
    esp_message_ids: list[str] = attrs.field(factory=list)
    verp_addresses: list[str] = attrs.field(factory=list)
    recipient: str = ""
    when: dt.datetime | None = None

    def candidates(self) -> list[tuple[str, uuid.UUID]]:
        """(how, uuid) pairs from what the event carries, best first, without repeats."""
        found: list[tuple[str, uuid.UUID]] = []
        for how, values, parse in (
            (MatchedBy.HEADER, self.header_uuids, parse_uuid),
            (MatchedBy.METADATA, self.metadata_uuids, parse_uuid),
            (MatchedBy.MESSAGE_ID, self.message_ids, uuid_from_message_id),
            (MatchedBy.VERP, self.verp_addresses, uuid_from_verp),
        ):
            for value in values:
                parsed = parse(value)
                if parsed is not None and parsed not in {u for _, u in found}:
                    found.append((how, parsed))
        return found


def address_variants(address: str) -> list[str]:
    """The address as given and in lower case (the log keeps addresses as the resolver gave
    them; the indexed column is compared exactly)."""
    address = (address or "").strip()
    return list(dict.fromkeys([address, address.lower()])) if address else []


def _by_uuid(message_uuid: uuid.UUID, recipient: str) -> Delivery | None:
    email = Delivery.objects.filter(message_uuid=message_uuid, channel=ChannelChoice.EMAIL)
    variants = address_variants(recipient)
    if variants:  # through the email index first (message_uuid has none)
        found = email.filter(email__in=variants).order_by("-id").first()
        if found is not None:
            return found
    return email.order_by("-id").first()


def _by_recipient(recipient: str, when: dt.datetime | None) -> Delivery | None:
    window = conf.feedback_recipient_match_window()
    variants = address_variants(recipient)
    if window is None or not variants:
        return None
    when = when or timezone.now()
    rows = list(
        Delivery.objects.filter(
            email__in=variants,
            channel=ChannelChoice.EMAIL,
            status__in=SENT_STATUSES,
            sent_at__gte=when - window,
            sent_at__lte=when + dt.timedelta(minutes=5),  # clocks differ a little
        )
        .order_by("-sent_at")
        .values_list("pk", flat=True)[:2]
    )
    if len(rows) != 1:
        return None
    return Delivery.objects.get(pk=rows[0])


def match_delivery(clues: Clues) -> tuple[Delivery | None, str]:
    """The delivery the event is about and how it was found, or ``(None, "")``."""
    candidates = clues.candidates()
    for how, message_uuid in candidates:
        delivery = _by_uuid(message_uuid, clues.recipient)
        if delivery is not None:
            return delivery, how
    if clues.esp_message_ids:
        recorded = (
            EspMessageId.objects.filter(message_id__in=clues.esp_message_ids[:10])
            .values_list("message_uuid", flat=True)
            .first()
        )
        if recorded is not None:
            delivery = _by_uuid(recorded, clues.recipient)
            if delivery is not None:
                return delivery, MatchedBy.ESP_MESSAGE_ID
    delivery = _by_recipient(clues.recipient, clues.when)
    if delivery is not None:
        return delivery, MatchedBy.RECIPIENT
    return None, MatchedBy.NONE


def header_values(headers: Any, name: str) -> list[str]:
    """Every value of header ``name`` (any case) in a mapping, a list of ``{"name", "value"}``
    objects (Amazon SES), or a list of ``[name, value]`` pairs (Mailgun's message-headers)."""
    wanted = name.lower()
    found: list[str] = []
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if str(key).lower() != wanted or not value:
                continue
            if isinstance(value, list):
                found.extend(str(v) for v in value)
            else:
                found.append(str(value))
    elif isinstance(headers, Iterable) and not isinstance(headers, str | bytes):
        for item in headers:
            if isinstance(item, Mapping) and str(item.get("name", "")).lower() == wanted:
                found.append(str(item.get("value", "")))
            elif (
                isinstance(item, list | tuple) and len(item) == 2 and str(item[0]).lower() == wanted
            ):
                found.append(str(item[1]))
    return [value for value in found if value]


def find_in_raw(raw: Any, names: Iterable[str], *, depth: int = 0) -> dict[str, list[str]]:
    """Values of the keys (or header names) ``names`` anywhere in an ESP's raw event (nested
    dicts and lists, header lists included), case-insensitively; at most 8 levels deep."""
    wanted = {name.lower() for name in names}
    found: dict[str, list[str]] = {name: [] for name in wanted}
    if depth > 8:
        return found
    if isinstance(raw, Mapping):
        items = list(raw.items())
        for key, value in items:
            key_l = str(key).lower()
            if key_l in wanted and isinstance(value, str | int) and not isinstance(value, bool):
                found[key_l].append(str(value))
            elif key_l == "headers" or key_l.endswith("headers"):
                for name in wanted:
                    found[name].extend(header_values(value, name))
            if isinstance(value, Mapping | list):
                for name, values in find_in_raw(value, wanted, depth=depth + 1).items():
                    found[name].extend(values)
    elif isinstance(raw, list):
        for value in raw[:200]:
            if isinstance(value, Mapping | list):
                for name, values in find_in_raw(value, wanted, depth=depth + 1).items():
                    found[name].extend(values)
    return {name: list(dict.fromkeys(values)) for name, values in found.items()}
