"""Helpers for the policy tests: a message to check, and a sent delivery to count."""

from __future__ import annotations

import datetime as dt

from ace import policy as ace_policy
from ace.channel import ChannelType
from ace.message import Message
from ace.recipient import Recipient
from campaigns.models import Delivery
from tests.campaigns import factories as f

EMAIL, PUSH = ChannelType.EMAIL, ChannelType.PUSH


def message(
    *,
    user_id=None,
    email="someone@example.org",
    message_type=None,
    app_label="campaigns",
    name="newsletter",
    expiration_time=None,
    send_uuid=None,
    **options,
):
    if message_type is not None:
        app_label, name = message_type.app_label, message_type.name
        options.setdefault("campaign_message_type_id", message_type.pk)
    return Message(
        app_label=app_label,
        name=name,
        recipient=Recipient(lms_user_id=user_id, email_address=email),
        expiration_time=expiration_time,
        send_uuid=send_uuid,
        options=options,
    )


def allowed_and_reasons(msg):
    """What ACE itself decides for the message with the configured policies."""
    return ace_policy.evaluate(msg)


def sent(
    *, user_id=None, email="", hours_ago=1.0, clock, status=Delivery.Status.SENT, run=None, **kw
):
    return f.DeliveryFactory(
        user_id=user_id,
        email=email,
        recipient_key=f"user:{user_id}" if user_id else f"email:{email}",
        status=status,
        sent_at=clock.when - dt.timedelta(hours=hours_ago),
        **({"run": run} if run else {}),
        **kw,
    )
