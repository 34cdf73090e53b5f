"""
:mod:`ace.test_utils` holds helpers for testing code that uses ACE.

They live in the package (not under ``tests/``) so projects using ACE can import them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from unittest.mock import patch

from ace import policy
from ace.channel import ChannelType


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
    add_cleanup = getattr(test_case, "addCleanup", None) or test_case.addfinalizer
    add_cleanup(patcher.stop)
