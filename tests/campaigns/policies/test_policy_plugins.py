"""The policy plugins ACE loads, and the entry-point name each one knows (policies/plugins.py)."""

from __future__ import annotations

import pytest

from ace import policy as ace_policy
from campaigns import policies
from campaigns.policies import OptOutPolicy, PolicyToggleDenyPolicy

pytestmark = pytest.mark.django_db


def test_ace_loads_the_configured_campaign_policies(settings):
    assert settings.ACE_ENABLED_POLICIES == ["campaigns_optout", "campaigns_toggles"]
    loaded = ace_policy.policies()
    assert [type(p) for p in loaded] == [OptOutPolicy, PolicyToggleDenyPolicy]
    for name, cls in policies.installed_policy_classes().items():
        assert cls.name == name  # a policy knows its own entry-point name
