"""``campaigns_toggles``: the ACE policy that runs every other policy plugin whose toggle is on
for the message's type."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ace.channel import ChannelType
from ace.policy import Policy, PolicyResult
from campaigns.policies.base import CampaignPolicy, EffectiveToggle, ToggleSnapshot, current_toggles
from campaigns.policies.plugins import (
    ace_enabled_policy_names,
    installed_policy_classes,
    policy_instance,
    policy_instances,
)

if TYPE_CHECKING:
    from ace.message import Message


class PolicyToggleDenyPolicy(Policy):
    """Runs the installed policy plugins that ACE does not run itself, for which the effective
    toggle of the message's type is on; denies what any of them denies (first reason wins).

    Deferrals (``defer_until``, e.g. quiet hours) are kept: when the delegated policies only
    postpone, the result is a deferral until the latest of their times. One result cannot
    both deny some channels and postpone others, so when a channel is postponed that no
    policy denies, the denied channels are postponed too (they are checked again then, and
    denied then if the policy still says so): nothing is dropped that should have waited.
    """

    name = "campaigns_toggles"
    label = "Policy toggles"

    def delegated(
        self, message: Message, snapshot: ToggleSnapshot
    ) -> list[tuple[str, Policy, EffectiveToggle]]:
        """The (name, policy, toggle) of every policy that must run for ``message``
        (worked out once per message type in a snapshot: toggles depend on nothing else)."""
        direct = frozenset(ace_enabled_policy_names()) | {self.name}
        key = (snapshot.type_key(message), direct)
        cached = snapshot.delegated_cache.get(key)
        if cached is None:
            cached = []
            for name, cls in installed_policy_classes().items():
                if name in direct:
                    continue
                toggle = snapshot.effective(cls, name, message)
                if toggle.enabled:
                    cached.append((name, policy_instance(name), toggle))
            snapshot.delegated_cache[key] = cached
        return list(cached)

    def check_each(self, message: Message) -> list[tuple[str, PolicyResult]]:
        """Each delegated policy's own result (the dry run reports them one by one)."""
        snapshot = current_toggles()
        results = []
        for name, policy, toggle in self.delegated(message, snapshot):
            if isinstance(policy, CampaignPolicy):
                results.append((name, policy.check_with(message, toggle)))
            else:
                results.append((name, policy.check(message)))
        return results

    def check(self, message: Message) -> PolicyResult:
        denied: set[ChannelType] = set()
        deferred: set[ChannelType] = set()
        until: dt.datetime | None = None
        reasons = []
        for name, result in self.check_each(message):
            channels = set(result.deny)
            if result.defer_until is not None:
                new = channels - denied - deferred
                deferred |= channels
                until = result.defer_until if until is None else max(until, result.defer_until)
            else:
                new = channels - denied
                denied |= channels
            if new:
                reasons.append(f"{name}: {result.reason}" if result.reason else name)
        if deferred - denied:
            return PolicyResult(
                deny=denied | deferred, reason="; ".join(reasons), defer_until=until
            )
        return PolicyResult(deny=denied, reason="; ".join(reasons))

    def prefetch(self, messages: Sequence[Message]) -> None:
        """Prefetch every delegated policy that is on for at least one of the messages."""
        snapshot = current_toggles()
        names = set()
        for message in messages:
            names.update(name for name, _, _ in self.delegated(message, snapshot))
        for name in sorted(names):
            policy = policy_instance(name)
            if hasattr(policy, "prefetch"):
                policy.prefetch(messages)

    def clear_prefetch(self) -> None:
        for policy in policy_instances():
            if hasattr(policy, "clear_prefetch"):
                policy.clear_prefetch()
