"""Policy toggles (switch a policy plugin on/off, globally or per message type) and the
per-batch preloading that makes policy checks cost O(1) queries per batch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from ace import policy as ace_policy
from campaigns import policies as campaign_policies
from campaigns.models import MessageTypeDefinition, PolicyToggle
from campaigns.policies import (
    UNKNOWN_POLICY,
    CampaignPolicy,
    PolicyToggleDenyPolicy,
    ToggleSnapshot,
    ace_enabled_policy_names,
    clean_parameters_with,
    set_batch_toggles,
)

NOT_TOGGLEABLE_SELF = "campaigns_toggles runs the toggles; it cannot be toggled itself."
ALWAYS_ON = (
    "{name} is listed in ACE_ENABLED_POLICIES and is not a campaigns policy, so ACE runs it for "
    "every message; remove it from ACE_ENABLED_POLICIES to control it with toggles."
)
TOGGLES_DISABLED = (
    "campaigns_toggles is not in ACE_ENABLED_POLICIES, so a toggle for {name} would have no effect."
)


def policy_parameters_clean(*, policy: str, parameters: Any) -> dict:
    """Check that ``policy`` can be toggled here and validate its parameters with the form the
    policy declares; returns the parameters to store (defaults filled in)."""
    classes = campaign_policies.installed_policy_classes()
    cls = classes.get(policy)
    if cls is None:
        raise ValidationError(
            UNKNOWN_POLICY.format(name=policy, installed=", ".join(classes) or "none"),
            code="unknown_policy",
        )
    if policy == PolicyToggleDenyPolicy.name:
        raise ValidationError(NOT_TOGGLEABLE_SELF, code="not_toggleable")
    enabled_in_ace = ace_enabled_policy_names()
    is_campaign_policy = isinstance(cls, type) and issubclass(cls, CampaignPolicy)
    if policy in enabled_in_ace and not is_campaign_policy:
        raise ValidationError(ALWAYS_ON.format(name=policy), code="always_on")
    if policy not in enabled_in_ace and PolicyToggleDenyPolicy.name not in enabled_in_ace:
        raise ValidationError(TOGGLES_DISABLED.format(name=policy), code="toggles_disabled")
    return clean_parameters_with(getattr(cls, "parameters_form", None), parameters)


def policy_toggle_set(
    *,
    policy: str,
    enabled: bool,
    message_type: MessageTypeDefinition | None = None,
    parameters: dict | None = None,
) -> PolicyToggle:
    """Switch ``policy`` on or off for one message type (or globally when ``message_type`` is
    None), with validated parameters; creates or updates the one toggle of that scope."""
    cleaned = policy_parameters_clean(policy=policy, parameters=parameters or {})
    toggle, _ = PolicyToggle.objects.update_or_create(
        policy=policy,
        message_type=message_type,
        defaults={"enabled": enabled, "parameters": cleaned},
    )
    return toggle


def _prefetchers(policies: Sequence[Any] | None) -> list[Any]:
    if policies is None:
        policies = ace_policy.policies()
    return [p for p in policies if hasattr(p, "prefetch")]


@contextlib.contextmanager
def policies_prefetched(
    messages: Sequence[Any], *, policies: Sequence[Any] | None = None
) -> Iterator[None]:
    """Inside this block, ``check()`` of the campaign policies answers from memory for these
    messages: the toggles, opt-outs and recent delivery counts of the whole batch are loaded
    once (one query each). Wrap the batch's policy step with it, e.g.::

        with policies_prefetched(messages):
            prepared, decided = sender.prepare(messages)

    ``policies`` defaults to ACE's enabled policies (``ace.policy.policies()``).
    """
    set_batch_toggles(ToggleSnapshot.load())
    active = _prefetchers(policies)
    try:
        for policy in active:
            policy.prefetch(messages)
        yield
    finally:
        for policy in active:
            if hasattr(policy, "clear_prefetch"):
                policy.clear_prefetch()
        set_batch_toggles(None)
