"""Tests for ace.policy: PolicyResult, Policy, channels_for, policies()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ace_stubs import DeferPolicy, make_message
from django.core.exceptions import ImproperlyConfigured

from ace.channel import ChannelType
from ace.policy import Deferral, Policy, PolicyResult, channels_for, decide, evaluate, policies
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


def test_policy_result_defer_until_is_optional_keyword_only_and_aware():
    assert PolicyResult(deny={ChannelType.EMAIL}).defer_until is None
    assert not PolicyResult(deny={ChannelType.EMAIL}).deferred
    later = datetime(2030, 6, 1, 5, 0, tzinfo=UTC)
    result = PolicyResult(deny={ChannelType.EMAIL}, reason="quiet", defer_until=later)
    assert (result.deny, result.reason, result.defer_until) == ({ChannelType.EMAIL}, "quiet", later)
    assert result.deferred
    assert not PolicyResult(defer_until=later).deferred  # nothing to postpone
    with pytest.raises(TypeError):
        PolicyResult({ChannelType.EMAIL}, "quiet", later)
    with pytest.raises(ValueError, match="timezone-aware"):
        PolicyResult(deny={ChannelType.EMAIL}, defer_until=datetime(2030, 6, 1, 5, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        PolicyResult(deny={ChannelType.EMAIL}, defer_until="2030-06-01T05:00Z")


def test_decide_tells_postponed_channels_from_denied_ones(request):
    soon = datetime.now(UTC) + timedelta(hours=1)
    later = soon + timedelta(hours=2)
    patch_policies(
        request,
        [
            DeferPolicy(soon, [ChannelType.EMAIL, ChannelType.PUSH], "quiet"),
            DeferPolicy(later, [ChannelType.EMAIL], "maintenance"),
            StubPolicy([ChannelType.PUSH]),
        ],
    )
    decision = decide(make_message())
    assert decision.allowed == set()
    # A denial wins over a deferral; several deferrals wait for the latest.
    assert decision.denials == {ChannelType.PUSH: "StubPolicy"}
    assert decision.deferrals == {
        ChannelType.EMAIL: Deferral(later, "DeferPolicy: quiet; DeferPolicy: maintenance")
    }
    # Spec-level views still see the postponed channel as not allowed now.
    assert channels_for(make_message()) == set()
    allowed, reasons = evaluate(make_message())
    assert allowed == set()
    assert reasons[ChannelType.EMAIL].startswith("DeferPolicy: quiet")


def test_policies_from_settings(settings):
    settings.ACE_ENABLED_POLICIES = []
    assert policies() == []
    assert policies() is policies()


def test_unknown_policy_name_is_an_error_naming_it(settings):
    settings.ACE_ENABLED_POLICIES = ["no_such_policy"]
    with pytest.raises(ImproperlyConfigured, match="no_such_policy"):
        policies()
