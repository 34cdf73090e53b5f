"""Tests for ace.policy: PolicyResult, Policy, channels_for, policies()."""

from __future__ import annotations

import pytest
from ace_stubs import make_message
from django.core.exceptions import ImproperlyConfigured

from ace.channel import ChannelType
from ace.policy import Policy, PolicyResult, channels_for, evaluate, policies
from ace.test_utils import StubPolicy, patch_policies


def test_policy_result_defaults_to_denying_nothing():
    assert PolicyResult().deny == set()
    assert PolicyResult().reason == ""
    assert PolicyResult(deny={ChannelType.PUSH}).deny == {ChannelType.PUSH}
    assert PolicyResult().deny is not PolicyResult().deny


@pytest.mark.parametrize("bad", [{"email"}, {None}, [ChannelType.EMAIL, 3]])
def test_policy_result_validator_refuses_non_channel_types(bad):
    with pytest.raises(ValueError, match="invalid value"):
        PolicyResult(deny=bad)


def test_policy_result_validator_runs_on_assignment():
    result = PolicyResult()
    with pytest.raises(ValueError):
        result.deny = {"push"}
    with pytest.raises(ValueError):
        PolicyResult().check_set_of_channel_types(PolicyResult.__attrs_attrs__.deny, {"x"})


def test_policy_is_abstract_and_enabled_by_default():
    with pytest.raises(TypeError):
        Policy()
    assert StubPolicy.enabled() is True


def test_channels_for_removes_what_any_policy_denies(request):
    patch_policies(request, [StubPolicy([ChannelType.PUSH]), StubPolicy([])])
    assert channels_for(make_message()) == {ChannelType.EMAIL}
    patch_policies(request, [StubPolicy([ChannelType.PUSH]), StubPolicy([ChannelType.EMAIL])])
    assert channels_for(make_message()) == set()


def test_channels_for_reports_the_allowed_channels(request, monkeypatch):
    reported = []
    monkeypatch.setattr("ace.message.monitoring_report", lambda k, v: reported.append((k, v)))
    patch_policies(request, [StubPolicy([ChannelType.PUSH])])
    channels_for(make_message())
    assert ("policy_allowed_channels", "email") in reported


def test_evaluate_names_the_first_denying_policy_and_its_reason(request):
    class OptOut(Policy):
        def check(self, message):
            return PolicyResult(deny={ChannelType.EMAIL}, reason="unsubscribed")

    patch_policies(request, [StubPolicy([ChannelType.PUSH]), OptOut(), StubPolicy(ChannelType)])
    allowed, denials = evaluate(make_message())
    assert allowed == set()
    assert denials == {ChannelType.PUSH: "StubPolicy", ChannelType.EMAIL: "OptOut: unsubscribed"}


def test_policies_from_settings(settings):
    settings.ACE_ENABLED_POLICIES = []
    assert policies() == []
    assert policies() is policies()


def test_unknown_policy_name_is_an_error_naming_it(settings):
    settings.ACE_ENABLED_POLICIES = ["no_such_policy"]
    with pytest.raises(ImproperlyConfigured, match="no_such_policy"):
        policies()
