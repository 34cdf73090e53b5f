"""
:mod:`ace.policy` holds message policies, which decide the channels a message must not use.

Policies are plugins registered under the ``openedx.ace.policy`` entry point and enabled by
the ``ACE_ENABLED_POLICIES`` setting.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
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
    """

    deny: set[ChannelType] = attrs.field(factory=set)
    reason: str = attrs.field(default="", kw_only=True)

    @deny.validator
    def check_set_of_channel_types(self, attribute: attrs.Attribute, set_value: Iterable) -> None:
        """Refuse anything that is not a :class:`ChannelType`."""
        for value in set_value:
            if not isinstance(value, ChannelType):
                raise ValueError(
                    f"PolicyResult for {attribute.name} has an invalid value {value!r}."
                )


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


def evaluate(message: Message) -> tuple[set[ChannelType], dict[ChannelType, str]]:
    """
    Run every policy on the message.

    Returns:
        The allowed channel types, and for each denied type the reason (the first policy
        that denied it, with its own reason when it gave one).
    """
    allowed = set(ChannelType)
    denials: dict[ChannelType, str] = {}
    for policy in policies():
        result = policy.check(message)
        for channel_type in result.deny:
            if channel_type not in denials:
                name = type(policy).__name__
                denials[channel_type] = f"{name}: {result.reason}" if result.reason else name
        allowed -= set(result.deny)
    return allowed, denials


def channels_for(message: Message) -> set[ChannelType]:
    """
    Args:
        message: The message to apply the policies to.

    Returns: The :class:`ChannelType` values allowed by every policy.
    """
    allowed, _denials = evaluate(message)
    message.report("policy_allowed_channels", ",".join(sorted(c.value for c in allowed)))
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
