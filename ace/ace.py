"""
:mod:`ace.ace` is the main entry point for sending messages with ACE.

Usage::

    from ace import ace
    from ace.message import Message
    from ace.recipient import Recipient

    msg = Message(
        name="test_message",
        app_label="my_app",
        recipient=Recipient(lms_user_id=123456, email_address="a_user@example.com"),
        language="en",
        context={"stuff": "to personalize the message"},
    )
    outcomes = ace.send(msg)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from ace import delivery, policy, presentation
from ace.channel import Channel, ChannelMap, ChannelType, channels, get_channel_for_message
from ace.errors import ChannelError, UnsupportedChannelError
from ace.message import Message
from ace.outcome import DeliveryOutcome, OutcomeStatus
from ace.utils.signals import send_ace_message_failed_signal

log = logging.getLogger(__name__)


def normalize_channel_types(
    limit_to_channels: Iterable[ChannelType | str] | None,
) -> set[ChannelType] | None:
    """``limit_to_channels`` as a set of :class:`ChannelType` (values like ``"email"`` accepted).

    Raises:
        ValueError: For a value that is not a channel type.
    """
    if limit_to_channels is None:
        return None
    if isinstance(limit_to_channels, ChannelType | str):
        limit_to_channels = [limit_to_channels]
    return {c if isinstance(c, ChannelType) else ChannelType(c) for c in limit_to_channels}


def channel_types_to_try(
    limit: set[ChannelType] | None, channel_map: ChannelMap
) -> list[ChannelType]:
    """The channel types a send considers: those within ``limit`` that an enabled channel serves."""
    return [
        channel_type
        for channel_type in ChannelType
        if (limit is None or channel_type in limit) and channel_map.has_channel_type(channel_type)
    ]


def route(
    msg: Message,
    channel_types: Iterable[ChannelType],
    decision: policy.PolicyDecision,
    *,
    tag: object = None,
) -> Iterator[tuple[ChannelType, Channel | DeliveryOutcome]]:
    """
    Where each channel type goes after the policies: the channel that delivers ``msg``, or
    the outcome the policies already decided (RETRY at the policy's time, or EXPIRED, when
    postponed; DENIED when refused), carrying ``tag``. Channel types no channel supports for
    ``msg`` are left out. :func:`send` and :meth:`ace.batch.BatchSender.prepare` both choose
    through here.
    """
    for channel_type in channel_types:
        deferral = decision.deferrals.get(channel_type)
        if deferral is not None:
            outcome = DeliveryOutcome.for_deferral(
                msg, channel_type, deferral.until, deferral.reason, tag=tag
            )
            if outcome.status is OutcomeStatus.EXPIRED:
                send_ace_message_failed_signal(None, msg, outcome)
            yield channel_type, outcome
        elif channel_type not in decision.allowed:
            yield (
                channel_type,
                DeliveryOutcome(
                    message=msg,
                    channel_type=channel_type,
                    status=OutcomeStatus.DENIED,
                    reason=decision.denials.get(channel_type, "denied by policy"),
                    tag=tag,
                ),
            )
        else:
            try:
                channel = get_channel_for_message(channel_type, msg)
            except UnsupportedChannelError:
                continue
            yield channel_type, channel


def send(
    msg: Message, limit_to_channels: Iterable[ChannelType] | None = None
) -> list[DeliveryOutcome]:
    """
    Send a message to its recipient.

    The message goes through the enabled policies, then over each allowed channel type that
    has a channel: it is rendered and delivered. Channel errors are reported and logged, not
    raised (as in the reference); recoverable errors are retried in-process until the message
    expires (for a few minutes at most).

    A channel a policy postponed (``PolicyResult.defer_until``, e.g. quiet hours) is not
    waited for: its outcome is RETRY with ``next_attempt_time`` set to the policy's time and
    ``deferred`` true (EXPIRED if the message expires before then). Sending it then is the
    caller's job: call ``send`` again at that time (the campaign dispatcher re-enqueues it).
    A delivery whose result cannot be known (connection lost after the message went out) is
    UNKNOWN and is not retried, so it is never sent twice.

    Args:
        msg: The message to send.
        limit_to_channels: If given, only these channel types are used (an empty list sends
            nothing). The reference logged the skip but still sent.

    Returns:
        One :class:`~ace.outcome.DeliveryOutcome` per channel type considered: SENT, DENIED
        (with the policy), RETRY (postponed by a policy), FAILED (with the reason), EXPIRED,
        NO_ADDRESS or UNKNOWN.
    """
    msg.report_basics()
    logger = msg.get_message_specific_logger(log)
    limit = normalize_channel_types(limit_to_channels)
    decision = policy.decide(msg)
    msg.report("policy_allowed_channels", ",".join(sorted(c.value for c in decision.allowed)))
    channel_map = channels()

    outcomes: list[DeliveryOutcome] = []
    for channel_type, target in route(msg, channel_types_to_try(limit, channel_map), decision):
        if isinstance(target, DeliveryOutcome):
            if channel_type in decision.deferrals:
                logger.info("Delivery on %s postponed: %s", channel_type, target.reason)
            outcomes.append(target)
            continue
        channel = target
        channel_name = channel_map.name_of(channel)

        try:
            rendered_message = presentation.render(channel, msg)
            outcome = delivery.deliver(channel, rendered_message, msg, channel_name=channel_name)
        except ChannelError as error:
            msg.report(f"{channel_type}_error", str(error))
            logger.warning("Delivery on %s (%s) failed: %s", channel_type, channel_name, error)
            outcome = DeliveryOutcome.from_error(msg, channel_type, error, channel_name)
        if outcome.status is not OutcomeStatus.SENT:
            send_ace_message_failed_signal(channel, msg, outcome)
        outcomes.append(outcome)
    return outcomes
