"""Tests for ace.test_utils (StubPolicy, patch_policies, patch_channels)."""

from __future__ import annotations

import unittest

from ace_stubs import StubEmailChannel, make_message

import ace.channel
from ace import policy
from ace.channel import ChannelMap, ChannelType
from ace.test_utils import StubPolicy, patch_channels, patch_policies


def test_stub_policy_denies_what_it_was_given():
    result = StubPolicy([ChannelType.EMAIL]).check(make_message())
    assert result.deny == {ChannelType.EMAIL}
    assert StubPolicy([]).check(make_message()).deny == set()


def test_patch_policies_with_a_pytest_request(request):
    stub = StubPolicy([ChannelType.PUSH])
    patch_policies(request, [stub])
    assert policy.policies() == [stub]


def test_patch_policies_with_a_unittest_test_case():
    stub = StubPolicy([])
    original = policy.policies

    class Case(unittest.TestCase):
        def test_it(self):
            patch_policies(self, [stub])
            assert policy.policies() == [stub]

    result = unittest.TestResult()
    Case("test_it").run(result)
    assert result.wasSuccessful(), result.failures + result.errors
    assert policy.policies is original  # restored by the test case's cleanup


def test_patch_channels(request):
    channel = StubEmailChannel()
    channel_map = patch_channels(request, {"only": channel})
    assert isinstance(channel_map, ChannelMap)
    assert ace.channel.channels() is channel_map
    assert channel_map.get_default_channel(ChannelType.EMAIL) is channel
