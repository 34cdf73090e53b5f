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
from typing import Any

import attrs
from django.template import TemplateDoesNotExist

from ace import delivery, policy, presentation
from ace.channel import Channel, ChannelMap, ChannelType, channels, get_channel_for_message
from ace.errors import ChannelError, TemplateNotFoundError, UnsupportedChannelError
from ace.message import Message
from ace.outcome import DeliveryOutcome, OutcomeStatus
from ace.utils.signals import send_ace_message_failed_signal

log = logging.getLogger(__name__)

#: What ``msg.report('template_error', ...)`` says before the missing template's name (as in
#: the reference, so monitoring built on it keeps working).
TEMPLATE_ERROR_PREFIX = "Unable to send message because template not found\n"
#: The reason given for a channel type that a replaced ``policy.channels_for`` left out.
DENIED_BY_POLICY = "denied by policy"


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


def decision_from(allowed: Iterable[ChannelType]) -> policy.PolicyDecision:
    """
    The policy decision behind what ``policy.channels_for`` returned.

    The real ``channels_for`` attaches its :class:`~ace.policy.PolicyDecision` (reasons,
    deferrals). A replacement (a test's patch, a wrapper) may return any iterable of channel
    types: what it leaves out counts as denied, with :data:`DENIED_BY_POLICY` as the reason
    unless the attached decision has a better one.
    """
    allowed_set = set(allowed)
    base = getattr(allowed, "decision", None)
    if not isinstance(base, policy.PolicyDecision):
        base = policy.PolicyDecision(allowed=allowed_set)
    deferrals = {c: d for c, d in base.deferrals.items() if c not in allowed_set}
    denials = {c: r for c, r in base.denials.items() if c not in allowed_set}
    for channel_type in ChannelType:
        if channel_type not in allowed_set and channel_type not in deferrals:
            denials.setdefault(channel_type, DENIED_BY_POLICY)
    return policy.PolicyDecision(allowed=allowed_set, denials=denials, deferrals=deferrals)


def _message_logger(msg: Any) -> Any:
    """The message's own logger adapter, or the module's for a message-like object without one."""
    get_logger = getattr(msg, "get_message_specific_logger", None)
    return get_logger(log) if callable(get_logger) else log


def _missing_template(error: Exception) -> TemplateDoesNotExist | None:
    """Django's TemplateDoesNotExist behind ``error`` (a render failure), if that is what it is."""
    if isinstance(error, TemplateDoesNotExist):
        return error
    if isinstance(error, TemplateNotFoundError) and isinstance(
        error.__cause__, TemplateDoesNotExist
    ):
        return error.__cause__
    return None


def send(
    msg: Message, limit_to_channels: Iterable[ChannelType] | None = None
) -> list[DeliveryOutcome]:
    """
    Send a message to its recipient.

    The message goes through the enabled policies (``policy.channels_for(msg)``, called once),
    then over each allowed channel type that has a channel: it is rendered and delivered.
    Channel errors are reported and logged, not raised (as in the reference); recoverable
    errors are retried in-process until the message expires (for a few minutes at most).
    A missing template is reported as ``msg.report('template_error', ...)`` and fails that
    channel type only. Any object with the attributes of a :class:`~ace.message.Message`
    will do (``app_label``, ``name``, ``recipient``, ``context``, ``options``, ``report``...).

    A channel a policy postponed (``PolicyResult.defer_until``, e.g. quiet hours) is not
    waited for: its outcome is RETRY with ``next_attempt_time`` set to the policy's time and
    ``deferred`` true (EXPIRED if the message expires before then). Sending it then is the
    caller's job: call ``send`` again at that time (the campaign dispatcher re-enqueues it).
    A delivery whose result cannot be known (connection lost after the message went out) is
    UNKNOWN and is not retried, so it is never sent twice.

    Args:
        msg: The message to send.
        limit_to_channels: If given, only these channel types are used (an empty list sends
            nothing); each allowed type left out is logged as ``Skipping channel <type>`` at
            DEBUG. The reference logged the skip but still sent.

    Returns:
        One :class:`~ace.outcome.DeliveryOutcome` per channel type considered: SENT, DENIED
        (with the policy), RETRY (postponed by a policy), FAILED (with the reason), EXPIRED,
        NO_ADDRESS or UNKNOWN.
    """
    report_basics = getattr(msg, "report_basics", None)
    if callable(report_basics):
        report_basics()
    logger = _message_logger(msg)
    limit = normalize_channel_types(limit_to_channels)
    allowed = policy.channels_for(msg)
    decision = decision_from(allowed)
    if limit is not None:
        for channel_type in ChannelType:
            if channel_type in decision.allowed and channel_type not in limit:
                log.debug("Skipping channel %s", channel_type)
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
            try:
                rendered_message = presentation.render(channel, msg)
            except TemplateDoesNotExist as error:
                raise TemplateNotFoundError(f"Template {error} does not exist") from error
            outcome = delivery.deliver(channel, rendered_message, msg)
            if isinstance(outcome, DeliveryOutcome) and outcome.channel_name is None:
                outcome = attrs.evolve(outcome, channel_name=channel_name)
        except ChannelError as error:
            missing = _missing_template(error)
            if missing is not None:
                msg.report("template_error", TEMPLATE_ERROR_PREFIX + str(missing))
            else:
                msg.report(f"{channel_type}_error", str(error))
            logger.warning("Delivery on %s (%s) failed: %s", channel_type, channel_name, error)
            outcome = DeliveryOutcome.from_error(msg, channel_type, error, channel_name)
        if outcome.status is not OutcomeStatus.SENT:
            send_ace_message_failed_signal(channel, msg, outcome)
        outcomes.append(outcome)
    return outcomes
