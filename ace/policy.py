"""
:mod:`ace.policy` holds message policies, which decide the channels a message must not use.

Policies are plugins registered under the ``openedx.ace.policy`` entry point and enabled by
the ``ACE_ENABLED_POLICIES`` setting.

Beyond the reference, a policy can say "not now, try again at T" instead of "never":
``PolicyResult(deny={...}, defer_until=T)``. Code that only reads ``deny`` (as written for
the reference) still sees those channels as not allowed now; :func:`decide` tells the two
apart, and :func:`ace.ace.send` / :class:`ace.batch.BatchSender` report a deferral as a RETRY
outcome at ``T`` (EXPIRED if ``T`` is past the message's expiration) instead of DENIED.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from django.conf import settings
from django.core.signals import setting_changed

from ace.channel import ChannelType
from ace.utils.once import once
from ace.utils.plugins import get_plugins

if TYPE_CHECKING:
    from ace.message import Message

POLICY_PLUGIN_NAMESPACE = "openedx.ace.policy"


@attrs.define
class PolicyResult:
    """
    Args:
        deny (set): The :class:`ChannelType` values the message must not be sent over.
        reason (str): Why (keyword-only, optional; reported in the delivery outcome).
        defer_until (datetime): Keyword-only, optional, timezone-aware. When set, the
            ``deny`` channels are only refused *until* then (e.g. quiet hours): the message
            should be tried again at that time rather than dropped.
    """

    deny: set[ChannelType] = attrs.field(factory=set)
    reason: str = attrs.field(default="", kw_only=True)
    defer_until: datetime | None = attrs.field(default=None, kw_only=True)

    @deny.validator
    def check_set_of_channel_types(self, attribute: attrs.Attribute, set_value: Iterable) -> None:
        """Refuse anything that is not a :class:`ChannelType`."""
        for value in set_value:
            if not isinstance(value, ChannelType):
                raise ValueError(
                    f"PolicyResult for {attribute.name} has an invalid value {value!r}."
                )

    @defer_until.validator
    def check_aware_datetime(self, attribute: attrs.Attribute, value: Any) -> None:
        """Refuse anything but ``None`` or a timezone-aware datetime."""
        if value is None:
            return
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(
                f"PolicyResult.{attribute.name} must be a timezone-aware datetime or None, "
                f"got {value!r}."
            )

    @property
    def deferred(self) -> bool:
        """True if the denied channels are only postponed (``defer_until`` is set)."""
        return self.defer_until is not None and bool(self.deny)


@attrs.define(frozen=True)
class Deferral:
    """A channel postponed by policies: try again at ``until``, because of ``reason``."""

    until: datetime
    reason: str


@attrs.define
class PolicyDecision:
    """What every enabled policy decided for one message, per channel type."""

    allowed: set[ChannelType]
    #: Refused for good, with the reason (the first policy that denied the channel).
    denials: dict[ChannelType, str] = attrs.field(factory=dict)
    #: Postponed: the latest ``defer_until`` of the policies that deferred the channel, and
    #: their reasons. A channel denied by any policy is in ``denials`` only.
    deferrals: dict[ChannelType, Deferral] = attrs.field(factory=dict)


class Policy(metaclass=abc.ABCMeta):
    """
    Decides which channels a message must not be sent over; one of ACE's main extension
    points, registered under the ``openedx.ace.policy`` entry point.
    """

    @classmethod
    def enabled(cls) -> bool:
        """Check the settings to decide whether this policy is used."""
        return True

    @abc.abstractmethod
    def check(self, message: Message) -> PolicyResult:
        """
        Check the message against this policy.

        Args:
            message: The message to check.

        Returns: The channels the message must not be delivered over.
        """
        raise NotImplementedError


def decide(message: Message) -> PolicyDecision:
    """
    Run every policy on the message; tell refusals from postponements.

    A denial wins over a deferral of the same channel. Several deferrals of one channel
    wait for the latest ``defer_until``, with every deferring policy's reason.
    """
    allowed = set(ChannelType)
    denials: dict[ChannelType, str] = {}
    deferred: dict[ChannelType, tuple[datetime, list[str]]] = {}
    for policy in policies():
        result = policy.check(message)
        if not result.deny:
            continue
        name = type(policy).__name__
        reason = f"{name}: {result.reason}" if result.reason else name
        for channel_type in result.deny:
            if result.defer_until is None:
                denials.setdefault(channel_type, reason)
            else:
                until, reasons = deferred.get(channel_type, (result.defer_until, []))
                deferred[channel_type] = (max(until, result.defer_until), [*reasons, reason])
        allowed -= set(result.deny)
    deferrals = {
        channel_type: Deferral(until=until, reason="; ".join(reasons))
        for channel_type, (until, reasons) in deferred.items()
        if channel_type not in denials
    }
    return PolicyDecision(allowed=allowed, denials=denials, deferrals=deferrals)


def evaluate(message: Message) -> tuple[set[ChannelType], dict[ChannelType, str]]:
    """
    Run every policy on the message.

    Returns:
        The allowed channel types, and for each type not allowed the reason (the first policy
        that denied it, with its own reason when it gave one; for a channel only postponed,
        the reasons of the policies that deferred it). See :func:`decide` for the difference.
    """
    decision = decide(message)
    reasons = {channel_type: d.reason for channel_type, d in decision.deferrals.items()}
    reasons.update(decision.denials)
    return decision.allowed, reasons


class AllowedChannels(set):
    """The set :func:`channels_for` returns, with the :class:`PolicyDecision` it came from.

    It is a plain ``set`` of :class:`ChannelType` to code written for the reference;
    :func:`ace.ace.send` reads :attr:`decision` for the denial reasons and deferrals, so the
    policies run once per message.
    """

    decision: PolicyDecision | None = None


def channels_for(message: Message) -> set[ChannelType]:
    """
    Args:
        message: The message to apply the policies to.

    Returns: The :class:`ChannelType` values allowed by every policy (an
        :class:`AllowedChannels` carrying the full :class:`PolicyDecision`).
    """
    decision = decide(message)
    message.report("policy_allowed_channels", ",".join(sorted(c.value for c in decision.allowed)))
    allowed = AllowedChannels(decision.allowed)
    allowed.decision = decision
    return allowed


@once
def policies() -> list[Policy]:
    """The enabled policies (``ACE_ENABLED_POLICIES``), loaded once."""
    return [
        extension.obj
        for extension in get_plugins(
            namespace=POLICY_PLUGIN_NAMESPACE,
            names=getattr(settings, "ACE_ENABLED_POLICIES", []),
        )
    ]


def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("ACE_"):
        policies.reset()


setting_changed.connect(_reset_on_setting_change, dispatch_uid="ace.policy.reset_policies")
