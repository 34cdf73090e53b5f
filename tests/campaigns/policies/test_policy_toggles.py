"""Toggles: global vs per message type, what can be toggled, third-party plugins, and how
campaigns_toggles combines the delegated results (campaigns/policies/base.py, toggle_deny.py,
campaigns/services/policies.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from stevedore import ExtensionManager
from stevedore.extension import Extension

from ace.policy import POLICY_PLUGIN_NAMESPACE, Policy, PolicyResult
from campaigns import policies
from campaigns.policies import PolicyToggleDenyPolicy
from campaigns.services.policies import policy_toggle_set
from tests.campaigns import factories as f
from tests.campaigns.policies.helpers import EMAIL, PUSH, allowed_and_reasons, message, sent

pytestmark = pytest.mark.django_db


def test_per_type_toggle_overrides_the_global_one(clock):
    digest = f.MessageTypeDefinitionFactory(name="digest")
    alert = f.MessageTypeDefinitionFactory(name="alert")
    promo = f.MessageTypeDefinitionFactory(name="promo")
    for _ in range(2):
        sent(user_id=9, clock=clock)
    policy_toggle_set(
        policy="campaigns_frequency_cap", enabled=True, parameters={"max_messages": 2}
    )
    policy_toggle_set(policy="campaigns_frequency_cap", message_type=alert, enabled=False)
    policy_toggle_set(
        policy="campaigns_frequency_cap",
        message_type=promo,
        enabled=True,
        parameters={"max_messages": 5},
    )
    assert allowed_and_reasons(message(user_id=9, message_type=digest))[0] == set()
    assert allowed_and_reasons(message(user_id=9, message_type=alert))[0] == {EMAIL, PUSH}
    assert allowed_and_reasons(message(user_id=9, message_type=promo))[0] == {EMAIL, PUSH}
    # Per-type toggles match by app_label/name too (messages sent outside campaigns).
    assert allowed_and_reasons(message(user_id=9, name="alert"))[0] == {EMAIL, PUSH}


def test_toggle_set_updates_the_one_row_of_its_scope():
    first = policy_toggle_set(policy="campaigns_expiry", enabled=False)
    second = policy_toggle_set(policy="campaigns_expiry", enabled=True)
    assert first.pk == second.pk and second.enabled


def test_a_toggle_with_parameters_that_no_longer_validate_denies_with_the_reason():
    f.PolicyToggleFactory(
        policy="campaigns_frequency_cap", parameters={"max_messages": 0, "period_hours": 1}
    )
    allowed, reasons = allowed_and_reasons(message(user_id=1))
    assert allowed == set()
    assert "campaigns_frequency_cap is misconfigured (max_messages:" in reasons[EMAIL]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("nope", "Unknown policy 'nope'"),
        ("campaigns_toggles", "cannot be toggled itself"),
    ],
)
def test_toggle_set_refuses_unknown_or_meta_policies(name, fragment):
    with pytest.raises(ValidationError, match=fragment):
        policy_toggle_set(policy=name, enabled=True)


def test_toggles_have_no_effect_without_campaigns_toggles(settings):
    settings.ACE_ENABLED_POLICIES = ["campaigns_optout"]
    with pytest.raises(ValidationError, match="would have no effect"):
        policy_toggle_set(policy="campaigns_quiet_hours", enabled=True)
    policy_toggle_set(policy="campaigns_optout", enabled=False)  # runs directly: fine


class DenyPushPolicy(Policy):
    """A third-party plugin without parameters."""

    def check(self, message):
        return PolicyResult(deny={PUSH}, reason="no push here")


@contextlib.contextmanager
def _with_third_party_plugin():
    """The installed policy plugins plus ``acme_no_push``, as stevedore would find them."""
    classes = policies.installed_policy_classes()
    installed = [Extension(name, None, cls, None) for name, cls in classes.items()]
    extra = Extension("acme_no_push", None, DenyPushPolicy, None)
    manager = ExtensionManager.make_test_instance(
        [*installed, extra], namespace=POLICY_PLUGIN_NAMESPACE
    )
    policies.reset_plugin_caches()
    try:
        with mock.patch.object(policies.plugins, "ExtensionManager", return_value=manager):
            yield
    finally:
        policies.reset_plugin_caches()


def test_a_third_party_policy_runs_only_where_toggled_on():
    promo = f.MessageTypeDefinitionFactory(name="promo")
    with _with_third_party_plugin():
        assert allowed_and_reasons(message(message_type=promo))[0] == {EMAIL, PUSH}
        policy_toggle_set(policy="acme_no_push", message_type=promo, enabled=True)
        allowed, reasons = allowed_and_reasons(message(message_type=promo))
        assert allowed == {EMAIL}
        assert reasons[PUSH] == "PolicyToggleDenyPolicy: acme_no_push: no push here"
        assert allowed_and_reasons(message(name="other"))[0] == {EMAIL, PUSH}
        with pytest.raises(ValidationError, match="takes no parameters"):
            policy_toggle_set(policy="acme_no_push", enabled=True, parameters={"x": 1})


def test_a_third_party_policy_enabled_in_ace_cannot_be_toggled(settings):
    with _with_third_party_plugin():
        settings.ACE_ENABLED_POLICIES = ["campaigns_optout", "campaigns_toggles", "acme_no_push"]
        with pytest.raises(ValidationError, match="ACE runs it for every message"):
            policy_toggle_set(policy="acme_no_push", enabled=False)


def test_a_deferral_and_a_denial_from_delegated_policies(clock, quiet_hours):
    tokyo = message(recipient_time_zone="Asia/Tokyo")
    with _with_third_party_plugin():
        # Quiet hours postpone both channels, a plugin denies push: push is postponed too
        # (checked again then, when the plugin still denies it), email is not dropped.
        policy_toggle_set(policy="acme_no_push", enabled=True)
        result = PolicyToggleDenyPolicy().check(tokyo)
        assert result.deny == {EMAIL, PUSH}
        assert result.defer_until == dt.datetime(2030, 6, 1, 23, 0, tzinfo=dt.UTC)
        assert "campaigns_quiet_hours" in result.reason and "acme_no_push" in result.reason
        # When the deferral covers only denied channels, the denial stands.
        policy_toggle_set(
            policy="campaigns_quiet_hours",
            enabled=True,
            parameters={"start_hour": 21, "end_hour": 8, "channels": ["push"]},
        )
        result = PolicyToggleDenyPolicy().check(tokyo)
        assert (result.deny, result.defer_until) == ({PUSH}, None)
