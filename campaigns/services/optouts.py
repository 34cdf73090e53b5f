"""Opt-outs: record that an address unsubscribed from one message type or from everything."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from campaigns.models import MessageTypeDefinition, OptOut

UNKNOWN_MESSAGE_TYPE = "This kind of message no longer exists."


def optout_create(
    *, email: str, message_type_id: int | None = None, user_id: int | None = None
) -> OptOut:
    """Unsubscribe ``email`` (from one message type, or from all when ``message_type_id`` is
    None). Idempotent: a second click returns the existing row instead of failing.

    The address is stored in lower case so policies can match it with an index; the row is
    linked to the user with that address when ``user_id`` is not given.
    """
    email = email.strip().lower()
    validate_email(email)
    if (
        message_type_id is not None
        and not MessageTypeDefinition.objects.filter(pk=message_type_id).exists()
    ):
        raise ValidationError(UNKNOWN_MESSAGE_TYPE, code="unknown_message_type")
    if user_id is None:
        user_id = (
            get_user_model()
            .objects.filter(email__iexact=email)
            .order_by("-is_active", "pk")
            .values_list("pk", flat=True)
            .first()
        )
    existing = OptOut.objects.filter(email=email, message_type_id=message_type_id).first()
    if existing:
        return existing
    try:
        # A concurrent click (mail clients pre-fetch and users double-click) may insert the
        # same row first; the unique constraints make that harmless.
        with transaction.atomic():
            return OptOut.objects.create(
                email=email, message_type_id=message_type_id, user_id=user_id
            )
    except IntegrityError:
        return OptOut.objects.get(email=email, message_type_id=message_type_id)
