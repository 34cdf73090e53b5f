"""Dry run of a campaign: how many recipients each channel would reach and how many each
policy would deny or postpone, computed over the audience in chunks (bounded memory, nothing
sent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ace import policy as ace_policy
from ace.channel import ChannelType
from campaigns import policies as campaign_policies
from campaigns.messages import campaign_expires_at, campaign_message_builder
from campaigns.models import Campaign
from campaigns.resolvers import DEFAULT_CHUNK_SIZE, ResolvedRecipient, resolver_for_source
from campaigns.services.policies import policies_prefetched

if TYPE_CHECKING:
    from ace.message import Message

MAX_SAMPLE_REASONS = 5


@attrs.define
class ChannelReach:
    """One channel of the campaign: recipients it would reach, deny, postpone (a policy's
    ``defer_until``, e.g. quiet hours: sent later, not dropped), or has no address for."""

    reachable: int = 0
    denied: int = 0
    no_address: int = 0
    postponed: int = 0


@attrs.define
class PolicyDenials:
    """What one policy would deny (or postpone): recipients hit on at least one of the
    campaign's channels, per channel, and a few distinct reasons as examples."""

    denied: int = 0
    by_channel: dict[str, int] = attrs.field(factory=dict)
    sample_reasons: list[str] = attrs.field(factory=list)


@attrs.define
class DryRunReport:
    """The outcome of :func:`campaign_dry_run`."""

    audience: int  # recipients the source has now
    checked: int  # recipients the policies were run on (fewer when sample_limit applies)
    channels: dict[str, ChannelReach]
    policies: dict[str, PolicyDenials]  # denials, by policy
    postponements: dict[str, PolicyDenials] = attrs.field(factory=dict)  # deferrals, by policy

    @property
    def sampled(self) -> bool:
        return self.checked < self.audience


def _has_address(recipient: ResolvedRecipient, channel: ChannelType) -> bool:
    if channel is ChannelType.EMAIL:
        return bool(recipient.email)
    return recipient.user_id is not None  # push goes to a user's devices


def _policy_results(policies: list[Any], message: Message) -> list[tuple[str, Any]]:
    results = []
    for policy in policies:
        if isinstance(policy, campaign_policies.PolicyToggleDenyPolicy):
            results.extend(policy.check_each(message))
        else:
            results.append(
                (getattr(policy, "name", "") or type(policy).__name__, policy.check(message))
            )
    return results


def _count(entry: PolicyDenials, hit: set[ChannelType], reason: str) -> None:
    entry.denied += 1
    for channel in hit:
        entry.by_channel[channel.value] = entry.by_channel.get(channel.value, 0) + 1
    reasons = entry.sample_reasons
    if reason and reason not in reasons and len(reasons) < MAX_SAMPLE_REASONS:
        reasons.append(reason)


def campaign_dry_run(
    *, campaign: Campaign, sample_limit: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> DryRunReport:
    """Run ACE's enabled policies over the campaign's audience (or its first ``sample_limit``
    recipients), one chunk at a time with the batch prefetch, as if it were sent now.

    A policy result with ``defer_until`` (quiet hours) postpones rather than denies: it is
    counted in ``postponements`` and ``ChannelReach.postponed``, and a denial by any other
    policy wins over it, as when sending (:func:`ace.policy.decide`).

    Raises ``ValidationError`` when the audience cannot be resolved (e.g. its group was deleted).
    """
    resolver = resolver_for_source(campaign.recipient_source)
    channels = [ChannelType(c) for c in campaign.channels]
    policies = list(ace_policy.policies())
    builder = campaign_message_builder(
        campaign=campaign,
        expiration_time=campaign_expires_at(campaign=campaign, start=campaign_policies.clock.now()),
    )
    reach = {c.value: ChannelReach() for c in channels}
    denials: dict[str, PolicyDenials] = {}
    postponements: dict[str, PolicyDenials] = {}
    checked = 0
    if sample_limit is not None:
        chunk_size = max(1, min(chunk_size, sample_limit))

    for ids in resolver.iter_id_chunks(chunk_size=chunk_size):
        recipients = resolver.recipients_for_ids(ids)
        if sample_limit is not None:
            recipients = recipients[: max(0, sample_limit - checked)]
        messages = [builder.build(recipient) for recipient in recipients]
        with policies_prefetched(messages, policies=policies):
            for recipient, message in zip(recipients, messages, strict=True):
                denied_here: set[ChannelType] = set()
                postponed_here: set[ChannelType] = set()
                for name, result in _policy_results(policies, message):
                    hit = set(result.deny) & set(channels)
                    if not hit:
                        continue
                    if result.deferred:
                        _count(postponements.setdefault(name, PolicyDenials()), hit, result.reason)
                        postponed_here |= hit
                    else:
                        _count(denials.setdefault(name, PolicyDenials()), hit, result.reason)
                        denied_here |= hit
                for channel in channels:
                    counts = reach[channel.value]
                    if not _has_address(recipient, channel):
                        counts.no_address += 1
                    elif channel in denied_here:
                        counts.denied += 1
                    elif channel in postponed_here:
                        counts.postponed += 1
                    else:
                        counts.reachable += 1
        checked += len(recipients)
        if sample_limit is not None and checked >= sample_limit:
            break

    return DryRunReport(
        audience=resolver.count(),
        checked=checked,
        channels=reach,
        policies=denials,
        postponements=postponements,
    )
