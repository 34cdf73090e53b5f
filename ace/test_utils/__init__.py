"""
:mod:`ace.test_utils` holds helpers for testing code that uses ACE.

They live in the package (not under ``tests/``) so projects using ACE can import them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from unittest.mock import patch

from ace import policy
from ace.channel import Channel, ChannelMap, ChannelType


class StubPolicy(policy.Policy):
    """A policy that always denies the given channel types."""

    def __init__(self, deny_value: Iterable[ChannelType]) -> None:
        self.deny_value = frozenset(deny_value)

    def check(self, message: Any) -> policy.PolicyResult:
        return policy.PolicyResult(deny=set(self.deny_value))


def patch_policies(test_case: Any, policies: list[policy.Policy]) -> None:
    """
    Make :func:`ace.policy.policies` return ``policies`` for the duration of a test.

    Args:
        test_case: A :class:`unittest.TestCase` (cleanup through ``addCleanup``) or a pytest
            ``request`` (cleanup through ``addfinalizer``).
        policies: The active policies.
    """
    patcher = patch("ace.policy.policies", return_value=policies)
    patcher.start()
    _add_cleanup(test_case, patcher.stop)


def patch_channels(test_case: Any, channels: dict[str, Channel] | ChannelMap) -> ChannelMap:
    """
    Make :func:`ace.channel.channels` return these channels for the duration of a test.

    Args:
        test_case: A :class:`unittest.TestCase` or a pytest ``request``.
        channels: ``{plugin name: channel instance}`` (in order), or a ready ChannelMap.

    Returns:
        The active :class:`~ace.channel.ChannelMap`.
    """
    channel_map = (
        channels if isinstance(channels, ChannelMap) else ChannelMap(list(channels.items()))
    )
    # Every module that imported the function by name is patched too.
    for target in ("ace.channel.channels", "ace.ace.channels", "ace.batch.channels"):
        patcher = patch(target, return_value=channel_map)
        patcher.start()
        _add_cleanup(test_case, patcher.stop)
    return channel_map


def _add_cleanup(test_case: Any, func: Any) -> None:
    add_cleanup = getattr(test_case, "addCleanup", None) or test_case.addfinalizer
    add_cleanup(func)
